"""Measures of form (deeporb/evaluation/form.py): bar repeats and where they point back to,
the key and how well each 16-bar section holds it, length, tonic endings; on built MIDI whose
form is known and on real Bach chorales (music21's corpus, exported to MIDI)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from midi_factory import BAR, make_midi

from deeporb.data.facts import SessionFacts
from deeporb.evaluation.compare import compare_form_samples, reference_pieces
from deeporb.evaluation.form import (
    estimate_key,
    form_piece,
    form_summary,
    length_overlap,
    piece_form,
    summarize_form,
)
from deeporb.midi import Track, read_midi

Q = 480  # ticks per quarter
MOTIF = ((0, 72), (1, 76), (2, 79), (3, 76))  # (quarter, pitch): a C major arpeggio, one bar
SCALE = (60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79, 81, 83, 84, 86)


def built(tmp_path, motif_every: int | None, bars: int = 16):
    """``bars`` bars of 4/4: a melody that plays MOTIF every ``motif_every`` bars (bar 0, 4, ...)
    and in every other bar a figure of its own, over a bass alternating C and G whole notes
    (so the bass alone repeats every 2 bars). ``motif_every=None``: no bar of either part
    returns (the bass climbs instead)."""
    melody, bass = [], []
    for b in range(bars):
        t0 = b * BAR
        if motif_every and b % motif_every == 0:
            melody += [(t0 + q * Q, t0 + (q + 1) * Q, p, 90) for q, p in MOTIF]
        else:  # a bar of its own: two notes of the C major scale, never the same pair twice
            melody += [(t0, t0 + 2 * Q, SCALE[b % 16], 90), (t0 + 2 * Q, t0 + 4 * Q, SCALE[(b + 2) % 16], 90)]
        bass.append((t0, t0 + BAR, (36 if b % 2 == 0 else 43) if motif_every else 36 + b, 80))
    path = make_midi(tmp_path / f"built_{motif_every}.mid", [{"name": "melody", "program": 0, "notes": melody},
                                                             {"name": "bass", "program": 32, "notes": bass}])
    return form_piece(read_midi(path).tracks)


@pytest.fixture(scope="module")
def chorales(chorale_midi_dir) -> dict[str, list[Track]]:
    """The fixture's 6 chorales (all in 4/4) as read from their MIDI files, by stem."""
    return {p.stem: read_midi(p).tracks for p in sorted(chorale_midi_dir.glob("*.mid"))}


def test_a_motif_returning_every_4_bars_is_found_4_bars_back(tmp_path):
    f = piece_form(built(tmp_path, motif_every=4))
    assert f["bars"] == 16
    # whole bars: only the motif's bars 4, 8 and 12 equal an earlier bar (the bass agrees too)
    assert f["repeat_rate"] == pytest.approx(3 / 16) and f["repeat_distances"] == [4, 4, 4]
    # per part: the melody's 3 motif bars, and the bass in every bar from the third, 2 back
    assert f["repeat_rate_part"] == pytest.approx((3 + 14) / 32)
    assert sorted(f["repeat_distances_part"]) == [2] * 14 + [4] * 3
    summary = summarize_form([f])
    assert summary["form/repeat_distance_4"] == 1.0 and summary["form/repeat_distance_other"] == 0.0
    assert summary["form/repeat_distance_part_2"] == pytest.approx(14 / 17)
    # in C major, it ends over the bass's G: not on the tonic
    assert f["key"] == "C major" and f["tonic_ending"] == 0.0


def test_a_piece_that_never_returns_has_no_repeats(tmp_path):
    f = piece_form(built(tmp_path, motif_every=None))
    assert f["repeat_rate"] == 0.0 and f["repeat_rate_part"] == 0.0 and f["repeat_distances"] == []
    summary = summarize_form([f])
    assert math.isnan(summary["form/repeat_distance_4"])  # no repeats: no distances to share
    empty = piece_form({"parts": []})
    assert empty["bars"] == 0 and math.isnan(empty["repeat_rate"]) and math.isnan(empty["tonic_ending"])


def test_leading_silent_bars_do_not_count_and_the_meter_sets_the_bars():
    notes = {"onset": np.array([8.0, 12.0]), "duration": np.ones(2), "pitch": np.array([60, 60])}
    four = piece_form(notes)  # 4/4: bars 0-1 are silent, the piece is bars 2-3, equal
    assert four["bars"] == 2 and four["repeat_distances"] == [1]
    three = piece_form({**notes, "bar_lines": [0.0, 3.0]})  # 3/4: bars at 6 (a note on beat 3), 9, 12
    assert three["bars"] == 3 and three["repeat_distances"] == []


def test_the_key_of_real_chorales_is_music21s(chorale_midi_dir, chorales):
    music21 = pytest.importorskip("music21")
    for stem, tracks in chorales.items():
        notes = form_piece(tracks)["parts"]
        pitch = np.concatenate([p["pitch"] for p in notes])
        key = estimate_key(pitch, np.concatenate([p["duration"] for p in notes]))
        score = music21.converter.parse(str(chorale_midi_dir / f"{stem}.mid"))
        ks = score.analyze("key.krumhansl")  # the same method: tonic and mode agree
        assert key == (ks.tonic.pitchClass, ks.mode), stem
        if stem == "bwv1.6":  # and music21's default (Aarden-Essen weights) names the same tonic
            assert key[0] == score.analyze("key").tonic.pitchClass == 5  # F major


def test_a_chorale_holds_its_key_and_a_transposed_second_half_does_not(chorales):
    tracks = chorales["bwv1.6"]
    f = piece_form(form_piece(tracks))
    assert f["opening_key"] == f["key"] == "F major"
    assert f["key_consistency_first16"] > 0.85 and f["key_consistency_last16"] > 0.85
    assert f["tonic_ending"] == 1.0  # the last chord's bass is F
    assert math.isnan(f["key_consistency_49_64"])  # 20 bars: no bars 49-64

    def chained(shifts: list[int]) -> dict:
        """The chorale played once per shift (semitones), each copy a whole number of bars on."""
        bars = int(f["bars"])
        quarters = 4.0 * bars
        first = min(float(t.notes["onset"].min()) for t in tracks if len(t))
        parts = []
        for t in tracks:
            cols = {c: np.concatenate([t.notes[c] + (k * quarters - first if c == "onset" else 0)
                                       + (s if c == "pitch" else 0) for k, s in enumerate(shifts)])
                    for c in ("onset", "duration", "pitch")}
            parts.append(cols)
        return piece_form({"parts": parts})

    same = chained([0, 0, 0, 0])  # 80 bars, every copy 20 bars after the last
    assert same["key_consistency_49_64"] > 0.85 and min(same["key_consistency_sections"]) > 0.85
    assert 20 in same["repeat_distances"] and summarize_form([same])["form/repeat_distance_other"] > 0.5
    moved = chained([0, 0, 6, 6])  # from bar 41 on a tritone away (B major: 2 of 7 classes shared)
    assert moved["key_consistency_first16"] > 0.85
    assert moved["key_consistency_49_64"] < 0.5 and moved["key_consistency_last16"] < 0.5


def test_length_overlap_is_one_for_equal_sets_and_zero_for_disjoint_ones():
    assert length_overlap([8, 16, 16, 20], [16, 20, 8, 16]) == 1.0
    assert length_overlap([4, 8], [16, 32]) == 0.0
    assert length_overlap([4, 16], [3, 32]) == 0.5  # bins of 4 bars: 3 and 4 share one
    assert math.isnan(length_overlap([], [8]))


def test_held_out_pieces_are_compared_whole(chorale_sessions_dir, tmp_path):
    facts = SessionFacts(names=("chorales",), sessions_dir=str(chorale_sessions_dir), val_fraction=0.1,
                         test_fraction=0.1)
    four_bars = [built(tmp_path, motif_every=4, bars=4)]
    form = compare_form_samples(four_bars, facts)
    held_out = reference_pieces(facts)
    assert held_out and all(len(p["bar_lines"]) for p in held_out)
    np.testing.assert_equal(form["reference"], form_summary(held_out))
    assert form["samples"]["form/mean_bars"] == 4 and form["reference"]["form/mean_bars"] > 4  # no excerpts
    assert form["length_overlap"] == 0.0 and 0 < form["reference"]["form/key_consistency_first16"] <= 1
