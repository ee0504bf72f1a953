"""The score view is lossless on its grid too: decode_score(encode_score(parts)) == parts,
each note back in its part, for random multi-part pieces and real chorales."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from deeporb.encoding.score import decode_score, encode_score, quantize_parts
from deeporb.encoding.words import (
    EncodingConfig,
    GridNotes,
    Meter,
    Vocabulary,
    decode_words,
    encode,
    quantize,
)
from deeporb.instruments import instrument_key
from deeporb.midi import read_midi

CONFIG = EncodingConfig()
KEYS = ("acoustic_bass", "drums", "flute", "violin")
VOCAB = Vocabulary(CONFIG, KEYS, ("bach_chorales", "nottingham"))

note = st.tuples(
    st.integers(0, 3000),  # onset in 1/48 quarters (off the grid too)
    st.integers(0, 900),  # duration, zero-length included
    st.integers(0, 127),
    st.integers(0, 127),
)
# a part: notes near the start and/or after a long silence (bar 30 on), repeats included
part = st.tuples(st.lists(note, max_size=25), st.lists(note, max_size=8), st.booleans()).map(
    lambda t: t[0] + [(o + 48 * 4 * 30, d, p, v) for o, d, p, v in t[1]] + (t[0][:3] if t[2] else [])
)
pieces = st.dictionaries(st.sampled_from(KEYS), part, min_size=1, max_size=4)
meters = st.lists(st.tuples(st.integers(0, 200), st.sampled_from([(4, 4), (3, 4), (6, 8), (2, 2), (5, 8)])),
                  max_size=3)


def columns(rows) -> dict:
    a = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return {"onset": a[:, 0] / 48, "duration": a[:, 1] / 48, "pitch": a[:, 2], "velocity": a[:, 3]}


@settings(max_examples=200, deadline=None)
@given(pieces, meters, st.sampled_from([None, "nottingham"]))
def test_decode_score_encode_score_is_quantize(piece, changes, style):
    parts = {key: quantize(columns(rows), CONFIG) for key, rows in piece.items()}
    meter = Meter.from_changes([(t / 4, n, d) for t, (n, d) in changes], CONFIG)
    ids = encode_score(parts, meter, VOCAB, style)
    words = VOCAB.decode_ids(ids)
    back, decoded_meter = decode_score(words, VOCAB)
    assert back == parts  # every part, each note in its own part, silent parts too
    assert words[0] == "<bos>" and words[-1] == "<eos>"
    assert (words[1] == f"style_{style}") if style else words[1].startswith("inst_")
    header = words[1 + bool(style) : 1 + bool(style) + len(parts)]
    assert header == [f"inst_{k}" for k in sorted(parts)]
    notes = sum(len(g) for g in parts.values())
    if notes:
        last = max(int(g.onset[-1]) for g in parts.values() if len(g))
        kept = [(s, sig) for s, sig in zip(meter.starts, meter.signatures, strict=True) if s <= last]
        assert list(zip(decoded_meter.starts, decoded_meter.signatures, strict=True)) == kept
    # one velocity state for the stream: never two vel_ words in a row of notes without a change
    vels = [w for w in words if w.startswith("vel_")]
    assert all(a != b for a, b in zip(vels, vels[1:], strict=False))


def test_a_score_reads_as_documented():
    rows = {"violin": [(0, 48, 72, 100), (0, 48, 76, 100), (96, 24, 74, 100)],
            "acoustic_bass": [(0, 96, 36, 60)], "flute": []}
    parts = {k: quantize(columns(r), CONFIG) for k, r in rows.items()}
    words = " ".join(VOCAB.decode_ids(encode_score(parts, Meter([0], [(3, 4)]), VOCAB, "bach_chorales")))
    assert words == (
        "<bos> style_bach_chorales inst_acoustic_bass inst_flute inst_violin "
        "bar ts_3/4 pos_0 inst_acoustic_bass vel_3 C2 dur_24 inst_violin vel_6 C5 dur_12 E5 dur_12 "
        "pos_24 inst_violin D5 dur_6 <eos>"
    )


def test_the_tracks_view_is_the_score_of_one_part():
    """A one-part score holds the track's notes, as its tracks-view row does."""
    notes = columns([(0, 48, 60, 90), (0, 48, 60, 90), (12, 6, 64, 30), (480, 12, 67, 30)])
    words, meter = encode(notes, [(0, 4, 4)], VOCAB)
    row = ["<bos>", "style_nottingham", "inst_flute", *words.split(), "<eos>"]
    grid, _ = decode_words(row, VOCAB)
    score, _ = decode_score(VOCAB.decode_ids(encode_score({"flute": grid}, meter, VOCAB)), VOCAB)
    assert grid == quantize(notes, CONFIG) == score["flute"]


def test_real_chorales_round_trip_part_by_part(chorale_midi_dir):
    files = sorted(chorale_midi_dir.glob("*.mid"))
    vocab = Vocabulary(CONFIG, ("alto", "bass", "soprano", "tenor"))
    for path in files:
        piece = read_midi(path)
        keys = [instrument_key("name", t.program, t.is_drum, t.name) for t in piece.tracks]
        parts = quantize_parts(zip(keys, (t.notes for t in piece.tracks), strict=True), CONFIG)
        assert sorted(parts) == ["alto", "bass", "soprano", "tenor"]
        meter = Meter.from_changes(piece.time_signatures, CONFIG)
        back, _ = decode_score(vocab.decode_ids(encode_score(parts, meter, vocab)), vocab)
        assert back == parts
        assert sum(len(g) for g in back.values()) == sum(len(t) for t in piece.tracks)


def test_tracks_of_one_key_merge_into_one_part():
    a, b = columns([(0, 48, 60, 90), (96, 48, 62, 90)]), columns([(0, 48, 60, 90), (48, 48, 67, 90)])
    parts = quantize_parts([("violin", a), ("violin", b), ("flute", columns([]))], CONFIG)
    assert list(parts["violin"].pitch) == [60, 60, 67, 62] and len(parts["flute"]) == 0
    assert parts["violin"] == GridNotes.concat([quantize(a, CONFIG), quantize(b, CONFIG)])
