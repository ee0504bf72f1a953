"""A whole piece's last bar says ``final`` (issue 19: endings are learned): lossless, only where
a piece really ends, kept by the sampler (bar ``bars`` is final; the model may end from
``min_bars`` on), and learned: a model trained briefly on pieces of many lengths that all end
on a held tonic chord ends its samples on it, where it ends them and where ``bars`` does."""

import numpy as np
import pytest
import torch
from midi_factory import make_midi
from test_repeats import parts_of
from trained import train_briefly

from deeporb.encoding.fills import Gap, encode_fill
from deeporb.encoding.score import decode_score, encode_score
from deeporb.encoding.words import BAR, EOS, FINAL, EncodingConfig, Meter, Vocabulary
from deeporb.evaluation.form import form_piece, piece_form
from deeporb.generation.compose import Settings, compose
from deeporb.generation.loop import generate
from deeporb.generation.prompts import score_prompt
from deeporb.model import LSTMGenerator

BAR_TICKS = 4 * 480
KEYS = ("flute", "acoustic_bass")
SCALE = np.array([62, 64, 65, 67, 69, 71])  # no C: only the last bar has one


def cadence_piece(path, seed: int):
    """Flute quarter notes over a bass in whole notes, 5 to 11 bars of D to B; the last bar is
    one held C chord (C5 over C2), as no other bar is."""
    rng = np.random.default_rng(seed)
    bars = int(rng.integers(5, 12))
    melody, bass = [], []
    for b in range(bars - 1):
        melody += [(b * BAR_TICKS + i * 480, b * BAR_TICKS + (i + 1) * 480, int(p), 80)
                   for i, p in enumerate(rng.choice(SCALE, 4))]
        bass.append((b * BAR_TICKS, (b + 1) * BAR_TICKS, int(rng.choice(SCALE - 24)), 70))
    end = (bars - 1) * BAR_TICKS
    melody.append((end, end + BAR_TICKS, 72, 80))
    bass.append((end, end + BAR_TICKS, 36, 70))
    return make_midi(path, [{"name": "flute", "program": 73, "notes": melody},
                            {"name": "bass", "program": 32, "notes": bass}])


def opens_last_bar(words: list[str]) -> bool:
    """``final`` stands once, right after the last ``bar`` (and its ``ts_``, if any)."""
    last = len(words) - 1 - words[::-1].index(BAR)
    at = last + 1 + words[last + 1].startswith("ts_")
    return words.count(FINAL) == 1 and words[at] == FINAL


def test_only_a_whole_piece_marks_its_last_bar_and_the_mark_loses_nothing(tmp_path):
    vocab = Vocabulary(EncodingConfig(), KEYS, repeat_bars=16, fills=True, final_bar=True)
    parts, meter = parts_of(cadence_piece(tmp_path / "p.mid", seed=3), vocab)
    words = vocab.decode_ids(encode_score(parts, meter, vocab))
    bars = words.count(BAR)
    assert opens_last_bar(words) and words[-1] == EOS
    assert decode_score(words, vocab, strict=True)[0] == parts
    older = Vocabulary(EncodingConfig(), KEYS, repeat_bars=16, fills=True)  # a checkpoint's from before
    assert FINAL not in older.words and FINAL not in older.decode_ids(encode_score(parts, meter, older))
    primer = vocab.decode_ids(encode_score(parts, meter, vocab, whole=False))  # the sampler continues it
    assert FINAL not in primer and decode_score(primer, vocab, strict=False)[0] == parts
    # a fill reads the piece up to 2 bars past its gap: the last bar is marked only if that reaches it
    early, late = Gap((1, 2), ("flute",)), Gap((bars - 3,), ("flute",))
    assert FINAL not in vocab.decode_ids(encode_fill(parts, meter, vocab, early)[0])
    head, fill = encode_fill(parts, meter, vocab, late)
    assert vocab.decode_ids(head).count(FINAL) == 1 and FINAL not in vocab.decode_ids(fill)
    assert decode_score(vocab.decode_ids(np.concatenate([head, fill])), vocab, strict=True)[0] == parts


@pytest.mark.parametrize(("bars", "min_bars"), [(5, None), (7, 2)])
def test_the_sampler_makes_bar_bars_final_and_lets_the_model_end_from_min_bars(bars, min_bars):
    vocab = Vocabulary(EncodingConfig(), KEYS, repeat_bars=4, final_bar=True)
    torch.manual_seed(0)
    model = LSTMGenerator(vocab.to_dict(), embed_dim=16, hidden_size=32, num_layers=1, dropout=0.0)
    prompt = score_prompt(vocab, list(KEYS), Meter([0], [(4, 4)]), None)
    rows = generate(model, [prompt], num_samples=12, bars=bars, seed=1, max_bar_words=48, view="score",
                    min_bars=min_bars)
    lengths = []
    for (row,) in rows:
        words = vocab.decode_ids(prompt + row)
        assert opens_last_bar(words), words
        decode_score([*words, EOS], vocab, strict=True)  # the loop keeps no <eos>: one may stand here
        lengths.append(words.count(BAR))
    if min_bars is None:
        assert set(lengths) == {bars}
    else:
        assert min(lengths) >= min_bars and max(lengths) <= bars and len(set(lengths)) > 1  # an untrained model ends anywhere


def test_a_model_trained_briefly_ends_its_pieces_as_the_corpus_does(tmp_path):
    """Every training piece ends on a held C chord that no other bar holds: a model that knows
    where it ends writes that bar last, whether it ends the piece or ``bars`` does."""
    for i in range(48):
        cadence_piece(tmp_path / "midi" / f"piece{i:02d}.mid", seed=200 + i)
    dm, model = train_briefly(tmp_path / "midi", "cadences", steps=300, lr=6e-3, seq_len=128, fill_share=0.0,
                              final_bar=True)
    assert dm.vocab.final_bar

    def ends_held_c(piece) -> bool:
        last = max(float(t.notes["onset"].max()) for t in piece.tracks)
        return all(np.any((t.notes["onset"] == last) & (t.notes["pitch"] % 12 == 0)) for t in piece.tracks)

    forced = compose(model, Settings(bars=8, seed=3, top_p=1.0), num_samples=12)
    assert np.mean([ends_held_c(p) for p in forced]) >= 0.75
    held_c_before = [float(np.mean((t.notes["onset"] < 28) & (t.notes["pitch"] % 12 == 0))) for p in forced
                     for t in p.tracks]
    assert np.mean(held_c_before) < 0.05  # nor does it write the chord anywhere else
    free = compose(model, Settings(bars=24, min_bars=2, seed=4, top_p=1.0), num_samples=12)
    ended = [p for p in free if p.ended]
    assert len(ended) >= 9 and np.mean([ends_held_c(p) for p in ended]) >= 0.75
    lengths = [piece_form(form_piece(p.tracks))["bars"] for p in ended]
    assert 5 <= np.median(lengths) <= 11, lengths  # as long as the corpus's pieces
