"""The encoding is lossless on its grid: decode(encode(notes)) == quantize(notes)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deeporb.encoding.words import (
    DecodeError,
    EncodingConfig,
    Meter,
    Vocabulary,
    decode_words,
    encode,
    pitch_word,
    quantize,
    word_kind,
    word_pitch,
)

CONFIG = EncodingConfig()
VOCAB = Vocabulary(CONFIG, ("violin", "drums"))

notes_strategy = st.lists(
    st.tuples(
        st.integers(0, 4000),  # onset in 1/48 quarters (off the 1/12 grid too)
        st.integers(0, 1200),  # duration, zero-length included
        st.integers(0, 127),
        st.integers(0, 127),
    ),
    max_size=60,
)
ts_strategy = st.lists(
    st.tuples(
        st.integers(0, 300),
        st.integers(1, 20),  # numerators beyond the vocabulary too
        st.sampled_from([1, 2, 4, 8, 16, 32, 64]),
    ),
    max_size=4,
)


def columns(rows):
    a = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return {"onset": a[:, 0] / 48, "duration": a[:, 1] / 48, "pitch": a[:, 2], "velocity": a[:, 3]}


@settings(max_examples=300, deadline=None)
@given(notes_strategy, ts_strategy)
def test_decode_encode_is_quantize(rows, changes):
    notes = columns(rows)
    ts = [(t / 4, n, d) for t, n, d in changes]
    words, meter = encode(notes, ts, VOCAB)
    grid, decoded_meter = decode_words(words, VOCAB)
    assert grid == quantize(notes, CONFIG)
    if len(grid):  # the meter in force where notes are is kept
        last = int(grid.onset[-1])
        kept = [(s, sig) for s, sig in zip(meter.starts, meter.signatures, strict=True) if s <= last]
        assert list(zip(decoded_meter.starts, decoded_meter.signatures, strict=True)) == kept
    assert all(w in VOCAB.index for w in words.split())


def test_words_read_as_documented():
    notes = columns([(0, 48, 60, 100), (0, 48, 64, 100), (48, 24, 67, 80), (4 * 48 * 2, 4, 72, 80)])
    words, _ = encode(notes, [(0, 4, 4)], VOCAB)
    assert words == (
        "bar ts_4/4 pos_0 vel_6 C4 dur_12 E4 dur_12 pos_12 vel_5 G4 dur_6 bar bar pos_0 C5 dur_1"
    )


def test_chords_rests_velocity_and_meter_survive():
    notes = columns([(0, 96, 48, 30), (0, 96, 55, 30), (0, 96, 64, 30), (48 * 7, 12, 60, 120)])
    words, _ = encode(notes, [(0, 3, 4), (6, 6, 8)], VOCAB)
    assert words.split().count("pos_0") == 1  # one onset for the chord
    assert "ts_3/4" in words and "ts_6/8" in words
    grid, meter = decode_words(words, VOCAB)
    assert list(grid.pitch[:3]) == [48, 55, 64]
    assert grid.onset[3] == 7 * 12  # after a rest of several beats
    assert meter.signatures == [(3, 4), (6, 8)]
    assert len(set(grid.velocity_bin.tolist())) == 2


def test_long_durations_bucket_and_clip():
    c = CONFIG
    assert list(c.quantize_duration_steps(np.array([0, 1, 48, 49, 53, 55, 100, 10_000]))) == [
        1, 1, 48, 48, 48, 60, 96, 192,
    ]
    assert set(c.quantize_duration_steps(np.arange(0, 400)).tolist()) <= set(c.duration_steps.tolist())


def test_unrepresentable_time_signatures_are_counted():
    meter = Meter.from_changes([(0, 7, 32), (4, 17, 4), (5, 3, 4)], CONFIG)
    assert meter.replaced == 2
    assert meter.moved == 1  # 3/4 at beat 5 waits for the next bar line (beat 8)
    assert meter.starts == [0, 96] and meter.signatures == [(4, 4), (3, 4)]


def test_vocabulary_is_closed_form_and_stable():
    a = Vocabulary(EncodingConfig(), ("viola", "cello", "viola"))
    b = Vocabulary.from_dict(a.to_dict())
    assert a == b and a.words == b.words
    assert a.instruments == ("viola", "cello")  # the score order given, once each
    assert a.inst_id("viola") < a.inst_id("cello")
    assert Vocabulary(EncodingConfig(resolution=4)) != Vocabulary(EncodingConfig())
    base = Vocabulary(EncodingConfig())
    assert a.words[: len(base)] == base.words  # instruments only append
    assert len(base) == 355  # docs/words.md quotes this
    with pytest.raises(KeyError, match="knows: viola, cello"):
        a.inst_id("tuba")


def test_styles_follow_the_instruments_and_old_dicts_still_load():
    v = Vocabulary(EncodingConfig(), ("cello", "viola"), ("nottingham", "bach_chorales"))
    assert v.words[-4:] == ["inst_cello", "inst_viola", "style_bach_chorales", "style_nottingham"]
    assert Vocabulary.from_dict(v.to_dict()) == v
    old = Vocabulary(EncodingConfig(), ("cello", "viola"))  # a checkpoint's, from before styles
    assert old.to_dict() == {"config": EncodingConfig().to_dict(), "instruments": ["cello", "viola"]}
    assert Vocabulary.from_dict({"config": {}, "instruments": ["cello", "viola"]}) == old
    assert v.words[: len(old)] == old.words  # styles only append
    assert v.decode_ids(v.header_ids(["viola", "cello"], "nottingham")) == [
        "<bos>", "style_nottingham", "inst_cello", "inst_viola",
    ]
    with pytest.raises(KeyError, match="knows: bach_chorales, nottingham"):
        v.style_id("jazz")
    assert [word_kind(w) for w in ("style_x", "inst_x", "<eos>", "bar")] == ["style", "inst", "eos", "bar"]


def test_pitch_words():
    assert pitch_word(60) == "C4" and pitch_word(0) == "C-1" and pitch_word(127) == "G9"
    assert all(word_pitch(pitch_word(p)) == p for p in range(128))
    assert word_kind("C#4") == "pitch" and word_kind("dur_3") == "dur"


@pytest.mark.parametrize(
    "words",
    ["C4 dur_3", "bar pos_0 C4 E4", "bar pos_0 C4", "bar pos_5 pos_2", "bar pos_0 dur_3", "bar pos_0 C4 dur_3 ts_4/4", "bar pos_99"],
)
def test_ungrammatical_words_raise(words):
    with pytest.raises(DecodeError):
        decode_words(words, VOCAB)
    decode_words(words, VOCAB, strict=False)  # lenient mode drops them instead
