"""model.attention_heads: look-back attention over the LSTM's outputs. Reading a sequence at once,
in chunks or word by word gives the same logits, so training, evaluation and generation agree."""

import pytest
import torch

from deeporb.data.datamodule import SessionDataModule
from deeporb.generation.loop import generate
from deeporb.model import LSTMGenerator, State


def attention_model(vocab, window: int) -> LSTMGenerator:
    torch.manual_seed(0)
    model = LSTMGenerator(vocab, embed_dim=16, hidden_size=24, num_layers=1, dropout=0.0,
                          attention_heads=3, attention_window=window, attention_dim=12)
    return model.eval()


@pytest.fixture(scope="module")
def data(chorale_sessions_dir):
    dm = SessionDataModule("chorales", str(chorale_sessions_dir), seq_len=256, batch_size=2, fill_share=0)
    dm.prepare_data()
    return dm


@pytest.mark.parametrize("window", [7, 64, 1024])
def test_one_pass_chunks_and_steps_read_alike(data, window):
    model = attention_model(data.vocab.to_dict(), window)
    tokens = next(iter(data.val_dataloader()))["tokens"][:, :150]
    with torch.no_grad():
        whole, _ = model(tokens)
        chunks, state = [], None
        for part in tokens.split(40, dim=1):
            logits, state = model(part, state)
            chunks.append(logits)
        steps, state = [], None
        for t in range(tokens.shape[1]):
            logits, state = model.step(tokens[:, t], state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(chunks, 1), whole, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.stack(steps, 1), whole, atol=1e-4, rtol=1e-4)


def test_the_window_bounds_what_a_word_sees(data):
    """A word farther back than the window changes nothing the attention reads (the LSTM is
    bypassed by comparing two models that differ only in the window)."""
    vocab = data.vocab.to_dict()
    tokens = next(iter(data.val_dataloader()))["tokens"][:1, :120]
    narrow, wide = attention_model(vocab, 8), attention_model(vocab, 1024)
    with torch.no_grad():
        a, _ = narrow(tokens)
        b, _ = wide(tokens)
    assert torch.allclose(a[:, :8], b[:, :8], atol=1e-5)  # the first 8 words see everything in both
    assert not torch.allclose(a[:, 8:], b[:, 8:], atol=1e-3)


def test_rows_of_a_state_are_selected_repeated_and_joined(data):
    model = attention_model(data.vocab.to_dict(), 16)
    tokens = next(iter(data.val_dataloader()))["tokens"][:2, :30]
    with torch.no_grad():
        _, one = model.read(tokens[:1, :20])
        _, two = model.read(tokens[1:2, :25])  # rows of different lengths join
        joined = State.cat([one, two]).rows(torch.tensor([1, 0, 1]))
        logits, _ = model.step(torch.tensor([5, 5, 5]), joined)
        alone, _ = model.step(torch.tensor([5]), two)
    torch.testing.assert_close(logits[0], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[2], alone[0], atol=1e-5, rtol=1e-5)


def test_a_model_with_attention_trains_saves_and_generates_words_that_decode(data, tmp_path):
    import pytorch_lightning as pl

    from deeporb.checkpoints import load_generator
    from deeporb.encoding.grammar import View

    pl.seed_everything(0, verbose=False)
    model = LSTMGenerator(data.vocab.to_dict(), embed_dim=16, hidden_size=24, num_layers=1, dropout=0.1,
                          attention_heads=2, attention_window=64, session=data.session_info())
    trainer = pl.Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, limit_val_batches=1)
    trainer.fit(model, datamodule=data)
    path = tmp_path / "attention.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_generator(path)
    assert loaded.lookback is not None and loaded.lookback.window == 64
    vocab = loaded.vocab
    prompt = [vocab.index["<bos>"], *[vocab.index[f"inst_{k}"] for k in vocab.instruments], vocab.index["bar"]]
    rows = generate(loaded, [prompt], num_samples=3, bars=3, top_k=8, view=View.SCORE)
    assert all(len(r[0]) > 10 for r in rows)


@pytest.mark.parametrize(("settings", "says"), [
    ({"attention_heads": 5}, "must divide model.attention_dim"),
    ({"attention_heads": 4, "attention_window": 1}, "at least 2 words"),
])
def test_attention_settings_are_checked_in_one_line(settings, says):
    from omegaconf import OmegaConf

    from deeporb.errors import UserError
    from deeporb.stages.train import check_attention

    with pytest.raises(UserError, match=says):
        check_attention(OmegaConf.create({"hidden_size": 192, **settings}), carry_state=False)
    with pytest.raises(UserError, match="carry_state"):
        check_attention(OmegaConf.create({"hidden_size": 192, "attention_heads": 4}), carry_state=True)
