"""data.carry_state: pieces read in order, lane by lane, the LSTM state carried between steps."""

import numpy as np
import pytorch_lightning as pl
import torch

from deeporb.data.datamodule import SessionDataModule
from deeporb.model import LSTMGenerator, State


def chorales(sessions_dir, **kw) -> SessionDataModule:
    dm = SessionDataModule("chorales", str(sessions_dir), seq_len=40, batch_size=3, carry_state=True, fill_share=0, **kw)
    dm.prepare_data()
    return dm


def test_each_lane_reads_whole_rows_in_order_and_marks_where_a_row_begins(chorale_sessions_dir):
    dm = chorales(chorale_sessions_dir, transpose=0)
    loader = dm.train_dataloader()
    chunks = loader.dataset
    rows = {r: chunks.row(r) for r in range(len(chunks.chunks))}
    read: list[list[np.ndarray]] = [[] for _ in range(3)]
    done = []
    for batch in loader:
        for lane in range(3):
            ids = batch["tokens"][lane].numpy()
            if batch["first"][lane]:
                if read[lane]:
                    done.append(read[lane])
                read[lane] = [ids]
            else:
                assert read[lane] and ids[0] == read[lane][-1][-1]  # one word of overlap: it continues
                read[lane].append(ids)
    assert len(loader) == len(chunks) // 3 and done
    for pieces in done:  # a finished row, chunk by chunk, is the row itself
        whole = np.concatenate([pieces[0]] + [p[1:] for p in pieces[1:]])
        whole = whole[: np.flatnonzero(whole != dm.pad_id)[-1] + 1]
        assert any(len(r) == len(whole) and np.array_equal(r, whole) for r in rows.values())


def test_a_row_is_transposed_by_one_amount_in_all_its_chunks(chorale_sessions_dir):
    dm = chorales(chorale_sessions_dir, transpose=5)
    chunks = dm.row_chunks("train")
    first = np.cumsum(chunks.chunks) - chunks.chunks
    r = int(np.argmax(chunks.chunks))  # the row with the most chunks
    plain = chunks.row(r)
    pitch = (plain >= chunks.pitch0) & (plain < chunks.pitch0 + 128)
    for epoch in range(3):
        got = np.concatenate([chunks[epoch * len(chunks) + int(first[r]) + c]["tokens"].numpy()[: chunks.seq_len]
                              for c in range(int(chunks.chunks[r]))])[: len(plain)]
        moved = np.unique(got[pitch] - plain[pitch])
        assert len(moved) == 1 and abs(int(moved[0])) <= 5
        assert np.array_equal(got[~pitch], plain[~pitch])


def test_training_carries_the_state_from_step_to_step(chorale_sessions_dir):
    dm = chorales(chorale_sessions_dir)
    pl.seed_everything(0, verbose=False)
    model = LSTMGenerator(dm.vocab.to_dict(), embed_dim=16, hidden_size=32, num_layers=1, dropout=0.0,
                          session=dm.session_info())
    trainer = pl.Trainer(max_steps=12, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, val_check_interval=6,
                         check_val_every_n_epoch=None)
    trainer.fit(model, datamodule=dm)
    assert model._carry is not None and model._carry.lstm[0].shape == (1, 3, 32)
    batch = next(iter(dm.train_dataloader()))
    assert batch["first"].all()  # an epoch begins with a new row in every lane
    model._carry = State(tuple(torch.ones_like(s) for s in model._carry.lstm))
    h, _ = model._carried_state(torch.tensor([True, False, True])).lstm
    assert h[0, 0].abs().sum() == 0 and h[0, 1].abs().sum() > 0
