"""Repeated bars as ``rep_K`` words (issue 19): lossless in both views, counted in
``bits_per_note``, and learned: a model trained briefly on pieces whose opening bar returns
every 4 bars writes pieces that return to earlier bars, 4 back."""

from collections import Counter

import numpy as np
from midi_factory import make_midi
from trained import train_briefly

from deeporb.data.datamodule import SessionDataModule
from deeporb.encoding.score import decode_score, encode_score, quantize_parts
from deeporb.encoding.words import (
    EncodingConfig,
    Meter,
    Vocabulary,
    decode_words,
    encode_ids,
    note_counts,
)
from deeporb.evaluation.form import form_piece, piece_form
from deeporb.generation.compose import Settings, compose
from deeporb.midi import read_midi
from deeporb.stages.encode import encode_session

BAR = 4 * 480
MOTIF_EVERY = 4


def motif_piece(path, seed: int, bars: int = 16):
    """A melody (flute, quarter notes) over a bass (whole notes) in C major: bar 1 returns, both
    parts note for note, every ``MOTIF_EVERY`` bars; every other bar is drawn afresh."""
    rng = np.random.default_rng(seed)
    scale = np.array([60, 62, 64, 65, 67, 69, 71, 72])
    motif = (rng.choice(scale, 4), int(rng.choice(scale - 24)))
    melody, bass = [], []
    for b in range(bars):
        tune, root = motif if b % MOTIF_EVERY == 0 else (rng.choice(scale, 4), int(rng.choice(scale - 24)))
        melody += [(b * BAR + i * 480, b * BAR + (i + 1) * 480, int(p), 80) for i, p in enumerate(tune)]
        bass.append((b * BAR, (b + 1) * BAR, root, 70))
    return make_midi(path, [{"name": "flute", "program": 73, "notes": melody},
                            {"name": "bass", "program": 32, "notes": bass}])


def parts_of(path, vocab):
    piece = read_midi(path)
    meter = Meter.from_changes(piece.time_signatures, vocab.config)
    keys = ["acoustic_bass" if t.program == 32 else "flute" for t in piece.tracks]
    return quantize_parts(zip(keys, (t.notes for t in piece.tracks), strict=True), vocab.config), meter


def test_a_returning_bar_is_one_rep_word_and_decodes_note_for_note(tmp_path):
    vocab = Vocabulary(EncodingConfig(), ("acoustic_bass", "flute"), repeat_bars=16)
    plain = Vocabulary(EncodingConfig(), ("acoustic_bass", "flute"))
    parts, meter = parts_of(motif_piece(tmp_path / "m.mid", seed=1), vocab)
    ids = encode_score(parts, meter, vocab)
    words = vocab.decode_ids(ids)
    bars = " ".join(words).split(" bar")[1:]
    assert [i + 1 for i, b in enumerate(bars) if "rep_" in b] == [5, 9, 13]
    assert all(b.split()[-1] == "rep_4" for b in bars if "rep_" in b)
    decoded, _ = decode_score(words, vocab, strict=True)
    assert decoded == parts  # lossless: every note of the folded bars comes back
    assert note_counts(ids, vocab).sum() == sum(len(g) for g in parts.values())
    assert len(ids) < len(encode_score(parts, meter, plain)) * 0.9
    for grid in parts.values():  # the tracks view folds a track's own bars
        body = encode_ids(grid, meter, vocab)
        assert decode_words(vocab.decode_ids(body), vocab)[0] == grid


def test_real_chorales_fold_their_repeats_losslessly_in_both_views(chorale_midi_dir):
    vocab = Vocabulary(EncodingConfig(), ("alto", "bass", "soprano", "tenor"), repeat_bars=16)
    folded = 0
    for path in sorted(chorale_midi_dir.glob("*.mid")):
        piece = read_midi(path)
        meter = Meter.from_changes(piece.time_signatures, vocab.config)
        parts = quantize_parts(((t.name.lower(), t.notes) for t in piece.tracks), vocab.config)
        ids = encode_score(parts, meter, vocab)
        folded += int(((ids >= vocab.rep_ids[0]) & (ids < vocab.rep_ids[1])).sum())
        assert decode_score(vocab.decode_ids(ids), vocab)[0] == parts
        assert note_counts(ids, vocab).sum() == sum(len(g) for g in parts.values())
        for grid in parts.values():
            assert decode_words(vocab.decode_ids(encode_ids(grid, meter, vocab)), vocab)[0] == grid
    assert folded > 0  # real chorales do repeat bars


def test_a_rep_word_that_points_before_a_window_counts_no_notes():
    vocab = Vocabulary(EncodingConfig(), ("flute",), repeat_bars=4)
    ids = vocab.ids("bar ts_4/4 pos_0 vel_3 C4 dur_12 E4 dur_12 bar rep_1 bar rep_2 bar pos_0 vel_3 G4 dur_48")
    assert note_counts(ids, vocab).tolist() == [0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 0, 2, 0, 0, 0, 1, 0]
    assert note_counts(ids[6:], vocab).sum() == 2  # E4 and G4: the window lost the bars its rep_ words point to


def motif_sessions(tmp_path, pieces: int = 40):
    midi = tmp_path / "midi"
    for i in range(pieces):
        motif_piece(midi / f"tune{i:02d}.mid", seed=100 + i)
    encode_session(midi_dir=str(midi), session="motifs", sessions_dir=str(tmp_path / "sessions"), workers=1)
    return tmp_path / "sessions"


def test_bits_per_note_divides_by_every_note_folded_or_not(tmp_path):
    sessions = motif_sessions(tmp_path, pieces=16)
    notes = {}
    for repeat_bars in (0, 16):
        dm = SessionDataModule("motifs", str(sessions), repeat_bars=repeat_bars, val_fraction=0.3, test_fraction=0.3)
        dm.prepare_data()
        windows = sum(int(item["notes"][1:].sum()) for item in dm.dataset("val"))  # they tile: each word once
        notes[repeat_bars] = windows
        assert windows == dm.statistics()["val"]["notes"] > 0
    assert notes[0] == notes[16]


def test_a_model_trained_briefly_returns_to_the_motif_far_above_chance(tmp_path):
    """In the corpus 3 of 16 bars return (to bar 1, 4 bars back each time) and no other bar
    does, so a model that had not learned the form would return almost never."""
    for i in range(40):
        motif_piece(tmp_path / "midi" / f"tune{i:02d}.mid", seed=100 + i)
    _, model = train_briefly(tmp_path / "midi", "motifs", steps=150, seq_len=96)
    pieces = compose(model, Settings(bars=16, seed=3, top_p=1.0), num_samples=12)
    forms = [piece_form(form_piece(p.tracks)) for p in pieces]
    rate = np.mean([f["repeat_rate"] for f in forms])
    distances = Counter(d for f in forms for d in f["repeat_distances"])
    assert rate > 0.1, (rate, distances)
    assert distances.most_common(1)[0][0] == MOTIF_EVERY, distances
