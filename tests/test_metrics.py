"""Tests for the music statistics: per piece (deeporb.evaluation.music_stats) and across the
parts of a piece (deeporb.evaluation.cross_part)."""

import math

import numpy as np
import pytest

from deeporb.evaluation import music_stats as metrics
from deeporb.evaluation.cross_part import (
    CROSS_PART_FEATURES,
    cross_part_features,
    ensemble_key,
    ensemble_statistics,
)
from deeporb.evaluation.music_stats import (
    HISTOGRAM_FEATURES,
    SCALAR_FEATURES,
    compare_sets,
    format_comparison,
    piece_features,
    set_features,
)


def make_piece(onset, duration, pitch):
    n = len(pitch)
    return {
        "onset": list(onset),
        "duration": list(duration) if np.ndim(duration) else [duration] * n,
        "pitch": list(pitch),
        "velocity": [64] * n,
    }


C_MAJOR = [60, 62, 64, 65, 67, 69, 71]


# ----------------------------------------------------------------- hand-built pieces
def test_c_major_scale():
    f = piece_features(make_piece(range(7), 1.0, C_MAJOR))
    assert f["scale_consistency"] == 1.0
    assert f["n_pitch_classes_used"] == 7
    assert f["n_pitches_used"] == 7
    assert f["pitch_range"] == 11
    assert f["pitch_class_entropy"] == pytest.approx(math.log2(7))
    assert f["polyphony"] == 1.0
    assert f["polyphony_rate"] == 0.0
    assert f["mean_ioi"] == 1.0
    # octave C doubles one class: 2/8 + 6 * 1/8 -> 2.75 bits
    f8 = piece_features(make_piece(range(8), 1.0, C_MAJOR + [72]))
    assert f8["pitch_class_entropy"] == pytest.approx(2.75)
    assert f8["pitch_entropy"] == pytest.approx(3.0)
    assert f8["scale_consistency"] == 1.0
    # a chromatic note lowers it: 7 of 8 notes fit C major at best
    fc = piece_features(make_piece(range(8), 1.0, C_MAJOR + [61]))
    assert fc["scale_consistency"] == pytest.approx(7 / 8)


def test_chord_polyphony():
    # C major triad for one quarter, then a single note for one quarter.
    f = piece_features(make_piece([0, 0, 0, 1], [1, 1, 1, 1], [60, 64, 67, 72]))
    assert f["polyphony"] == pytest.approx(2.0)  # (3 + 1) / 2 sounding quarters
    assert f["polyphony_rate"] == pytest.approx(0.5)
    # A doubled pitch counts once (binary pianoroll, as MusPy).
    g = piece_features(make_piece([0, 0, 0.5], [1, 1, 1], [60, 60, 64]))
    assert g["polyphony"] == pytest.approx((6 * 1 + 6 * 2 + 6 * 1) / 18)


def test_empty_beat_rate():
    bar = [0, 1, 2, 3]
    onsets = bar + [t + 8 for t in bar]  # bar 2 (quarters 4..7) is silent
    f = piece_features(make_piece(onsets, 1.0, [60] * 8))
    assert f["empty_beat_rate"] == pytest.approx(4 / 12)
    # A note ending exactly on a beat does not occupy the next beat.
    g = piece_features(make_piece([0, 3], [2, 1], [60, 62]))
    assert g["empty_beat_rate"] == pytest.approx(1 / 4)


def test_groove_consistency():
    rhythm = [0, 1, 1.5, 2, 3]
    four_bars = [b * 4 + t for b in range(4) for t in rhythm]
    f = piece_features(make_piece(four_bars, 0.5, [60] * len(four_bars)))
    assert f["groove_consistency"] == 1.0
    # Second bar has only its downbeat: 3 of 48 positions differ on one boundary.
    g = piece_features(make_piece([0, 1, 2, 3, 4], 1.0, [60] * 5))
    assert g["groove_consistency"] == pytest.approx(1 - 3 / 48)
    # A 3/4 rhythm is consistent in 3/4 bars only.
    waltz = [b * 3 + t for b in range(4) for t in (0, 1, 2.5)]
    w = make_piece(waltz, 0.5, [60] * len(waltz))
    assert piece_features(w, beats_per_bar=3.0)["groove_consistency"] == 1.0
    assert piece_features(w, beats_per_bar=4.0)["groove_consistency"] < 1.0
    # Fewer than two bars: undefined.
    assert math.isnan(piece_features(make_piece([0], 1.0, [60]))["groove_consistency"])


def test_histograms_shapes_and_bins():
    p = make_piece(
        [0, 1, 2, 3.5, 4, 4 + 1 / 3], [1, 0.5, 1 / 3, 6, 1.5, 0.01], [60, 64, 67, 60, 61, 62]
    )
    f = piece_features(p, beats_per_bar=4.0, resolution=12)
    sizes = {
        "pitch_histogram": 128,
        "pitch_class_histogram": 12,
        "pitch_class_transition_matrix": 144,
        "note_length_histogram": 12,
        "ioi_histogram": 17,
        "onset_position_histogram": 48,
    }
    for name, size in sizes.items():
        assert f[name].shape == (size,)
        assert f[name].sum() == pytest.approx(1.0)
    classes = list(metrics.NOTE_LENGTH_CLASSES)
    nlh = f["note_length_histogram"]
    for dur in (1.0, 0.5, 1 / 3, 4.0, 1.5, 0.25):  # 6 quarters -> whole, 0.01 -> 16th
        assert nlh[classes.index(dur)] == pytest.approx(1 / 6)
    # IOIs: 1, 1, 1.5, 0.5, 1/3
    centers = metrics.IOI_BIN_CENTERS
    ioi = f["ioi_histogram"]
    assert ioi[np.argmin(abs(np.log2(centers)))] == pytest.approx(2 / 5)
    assert ioi.max() == pytest.approx(2 / 5)
    assert np.count_nonzero(ioi) == 4


def test_pitch_class_transitions_are_polyphony_aware():
    # C -> E -> {G, B}: transitions C->E, E->G, E->B
    f = piece_features(make_piece([0, 1, 2, 2], 1.0, [60, 64, 67, 71]))
    m = f["pitch_class_transition_matrix"].reshape(12, 12)
    assert m[0, 4] == pytest.approx(1 / 3)
    assert m[4, 7] == pytest.approx(1 / 3)
    assert m[4, 11] == pytest.approx(1 / 3)


def test_sweep_matches_dense_pianoroll():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        onset = rng.integers(0, 40, n) / 4
        duration = rng.integers(0, 12, n) / 4
        pitch = rng.integers(55, 70, n)
        f = piece_features(make_piece(onset, duration, pitch), resolution=4)
        start = np.rint(onset * 4).astype(int)
        end = np.maximum(np.rint((onset + duration) * 4).astype(int), start + 1)
        roll = np.zeros((end.max(), 128), bool)
        for s, e, p in zip(start, end, pitch, strict=True):
            roll[s:e, p] = True
        per_step = roll.sum(1)
        assert f["polyphony"] == pytest.approx(per_step.sum() / np.count_nonzero(per_step))
        assert f["polyphony_rate"] == pytest.approx(np.mean(per_step >= 2))
        beats = roll.reshape(-1, 4, 128).any(axis=(1, 2)) if len(roll) % 4 == 0 else None
        if beats is not None:
            assert f["empty_beat_rate"] == pytest.approx(1 - beats.mean())


def test_empty_pieces_and_tiny_sets():
    empty = make_piece([], [], [])
    f = piece_features(empty)
    assert all(math.isnan(f[k]) for k in SCALAR_FEATURES)
    assert all(not np.any(f[k]) for k in HISTOGRAM_FEATURES)
    assert piece_features({"notes": empty})["pitch_histogram"].sum() == 0
    one = make_piece(range(8), 1.0, C_MAJOR + [72])
    other = make_piece(range(8), 0.5, [p + 2 for p in C_MAJOR] + [74])
    rows = compare_sets([one], [other, empty])
    assert {r["feature"] for r in rows} == set(SCALAR_FEATURES + HISTOGRAM_FEATURES)
    for r in rows:
        assert 0.0 <= r["overlap"] <= 1.0 + 1e-9, r["feature"]
        assert r["kl"] >= -1e-12, r["feature"]
    # sets made of empty pieces only: NaN, no crash
    rows = compare_sets([empty], [one])
    assert all(math.isnan(r["overlap"]) for r in rows)
    assert isinstance(format_comparison(rows), str)


def test_identical_sets_match_perfectly():
    pieces = [
        make_piece(range(8), 1.0, C_MAJOR + [72]),
        make_piece([0, 0, 0, 1, 2, 4], 1.0, [60, 64, 67, 65, 62, 60]),
    ]
    for row in compare_sets(pieces, pieces):
        if math.isnan(row["overlap"]):
            continue
        assert row["overlap"] == pytest.approx(1.0), row["feature"]
        assert row["kl"] == pytest.approx(0.0, abs=1e-9), row["feature"]
    feats = set_features(pieces)
    assert len(feats["polyphony"]) == 2


def test_format_comparison():
    pieces = [make_piece(range(8), 1.0, C_MAJOR + [72])]
    text = format_comparison(compare_sets(pieces, pieces))
    lines = text.splitlines()
    assert lines[0].split() == ["feature", "kind", "overlap", "kl", "gen_mean", "ref_mean"]
    assert len(lines) == 2 + len(SCALAR_FEATURES) + len(HISTOGRAM_FEATURES)
    assert any(line.startswith("pitch_class_histogram") for line in lines)


# ------------------------------------------------------------------- across parts
def make_part(onset, duration, pitch, is_drum=False):
    return {**make_piece(onset, duration, pitch), "is_drum": is_drum}


def test_parallel_octaves_are_consonant_agree_and_keep_one_key():
    upper = make_part([0, 1, 2], 1.0, [60, 64, 67])
    f = cross_part_features([upper, make_part([0, 1, 2], 1.0, [48, 52, 55])])
    assert f == {"cross_part_consonance": 1.0, "pitch_class_agreement": 1.0, "tonal_distance": 0.0,
                 "key_consistency": 1.0}
    # identical parts: the same chroma in every bar and beat
    same = cross_part_features({"parts": [upper, upper]})
    assert same["pitch_class_agreement"] == pytest.approx(1.0) and same["tonal_distance"] == 0.0


def test_minor_seconds_are_dissonant_and_share_no_pitch_class():
    f = cross_part_features([make_part([0, 1], 1.0, [60, 62]), make_part([0, 1], 1.0, [61, 63])])
    assert f["cross_part_consonance"] == 0.0
    assert f["pitch_class_agreement"] == 0.0
    assert f["tonal_distance"] > 0


def test_consonance_is_sampled_at_every_onset_of_the_ensemble():
    # a held C against D, E, F, G: a second, then a third, a fourth and a fifth
    f = cross_part_features([make_part([0], 4.0, [60]), make_part([0, 1, 2, 3], 1.0, [62, 64, 65, 67])])
    assert f["cross_part_consonance"] == pytest.approx(3 / 4)
    # notes of one part never pair with each other: a cluster inside one part is no dissonance
    chord = cross_part_features([make_part([0, 0], 1.0, [60, 61]), make_part([0], 1.0, [48])])
    assert chord["cross_part_consonance"] == pytest.approx(1 / 2)  # C-C yes, C#-C no


def test_tonal_distance_and_agreement_by_hand():
    # C against G for one beat: the centroids differ by angles pi/6 (fifths, r=1), pi/2
    # (minor thirds, r=1) and 2pi/3 (major thirds, r=0.5): |d|^2 = (2 - sqrt 3) + 2 + 0.75
    f = cross_part_features([make_part([0], 1.0, [60]), make_part([0], 1.0, [67])])
    assert f["tonal_distance"] == pytest.approx(math.sqrt(4.75 - math.sqrt(3)))
    assert f["pitch_class_agreement"] == 0.0
    # one bar: C held 4 quarters vs C 2 + G 2 -> cos = 8 / (4 * sqrt 8); beat by beat the
    # first two beats agree (0), the last two are the fifth above
    g = cross_part_features([make_part([0], 4.0, [60]), make_part([0, 2], 2.0, [60, 67])])
    assert g["pitch_class_agreement"] == pytest.approx(1 / math.sqrt(2))
    assert g["tonal_distance"] == pytest.approx(math.sqrt(4.75 - math.sqrt(3)) / 2)


def test_key_consistency_measures_parts_against_the_ensembles_key():
    scale = make_part(range(8), 1.0, C_MAJOR + [72])
    bass = make_part([0, 1, 2, 3], 1.0, [48, 54, 55, 48])  # F#: out of C major
    cols = [(np.asarray(p["onset"], float), np.asarray(p["duration"], float), np.asarray(p["pitch"]))
            for p in (scale, bass)]
    assert ensemble_key(cols) == (0, "major")
    assert cross_part_features([scale, bass])["key_consistency"] == pytest.approx((1 + 3 / 4) / 2)
    # A minor: natural minor plus its leading tone G#
    a_minor = make_part(range(8), 1.0, [57, 59, 60, 62, 64, 65, 68, 69])
    cols = [(np.asarray(a_minor["onset"], float), np.asarray(a_minor["duration"], float),
             np.asarray(a_minor["pitch"]))] * 2
    assert ensemble_key(cols) == (9, "minor")
    assert cross_part_features([a_minor, a_minor])["key_consistency"] == 1.0


def test_drums_and_lone_parts_have_no_cross_part_statistics():
    melody = make_part([0, 1], 1.0, [60, 64])
    drums = make_part([0, 1], 1.0, [36, 37], is_drum=True)
    assert all(math.isnan(v) for v in cross_part_features([melody, drums]).values())
    assert all(math.isnan(v) for v in cross_part_features([melody, make_part([], [], [])]).values())
    # drums do not enter the others either: a pitched pair plus drums = the pair alone
    pair = [melody, make_part([0, 1], 1.0, [48, 52])]
    assert cross_part_features(pair + [drums]) == cross_part_features(pair)
    # in sets: rows only when some piece is an ensemble; its stream is its pitched parts
    plain = [make_piece([0, 1], 1.0, [60, 64])]
    assert not set(CROSS_PART_FEATURES) & set(set_features(plain))
    ensemble = [{"parts": pair + [drums]}]
    assert piece_features(ensemble[0])["n_pitches_used"] == 4
    rows = {r["feature"]: r for r in compare_sets(ensemble, ensemble)}
    assert {f: rows[f]["kind"] for f in CROSS_PART_FEATURES} == dict.fromkeys(CROSS_PART_FEATURES, "cross_part")
    assert rows["cross_part_consonance"]["gen_mean"] == 1.0 and rows["cross_part_consonance"]["overlap"] == 1.0
    assert not set(CROSS_PART_FEATURES) & {r["feature"] for r in compare_sets(plain, ensemble)}
    stats = ensemble_statistics([{"parts": pair}, plain[0], [melody, make_part([0, 1], 1.0, [61, 65])]])
    assert stats["pieces"] == 2 and stats["cross_part_consonance"] == pytest.approx(0.5)


def _score_to_parts(score):
    return [dict(_score_to_piece(part), is_drum=False) for part in score.parts]


def test_real_chorale_voices_hear_each_other_and_shuffled_ones_do_not():
    """Each chorale's own four voices against four voices taken from four other chorales: the
    issue's measurement (real 0.90, shuffled 0.62 on consonance)."""
    corpus = pytest.importorskip("music21.corpus")
    names = ["bach/bwv66.6", "bach/bwv269", "bach/bwv347", "bach/bwv153.1", "bach/bwv86.6"]
    real = [_score_to_parts(corpus.parse(n)) for n in names]
    assert all(len(parts) == 4 for parts in real)
    shuffled = [[real[(i + k) % len(real)][k] for k in range(4)] for i in range(len(real))]
    for own, other in zip(real, shuffled, strict=True):
        assert cross_part_features(own)["cross_part_consonance"] > 0.85
        assert cross_part_features(other)["cross_part_consonance"] < 0.7
    r, s = ensemble_statistics(real), ensemble_statistics(shuffled)
    assert r["pieces"] == s["pieces"] == 5
    assert r["cross_part_consonance"] > s["cross_part_consonance"] + 0.2
    assert r["pitch_class_agreement"] > s["pitch_class_agreement"]
    assert r["tonal_distance"] < s["tonal_distance"]
    assert r["key_consistency"] > s["key_consistency"]


# ------------------------------------------------------------------------ real music
def _score_to_piece(score):
    from music21 import chord

    onset, duration, pitch = [], [], []
    for n in score.stripTies().flatten().notes:
        pitches = n.pitches if isinstance(n, chord.Chord) else (n.pitch,)
        for p in pitches:
            onset.append(float(n.offset))
            duration.append(float(n.quarterLength))
            pitch.append(int(p.midi))
    return make_piece(onset, duration, pitch)


@pytest.fixture(scope="module")
def chorales():
    corpus = pytest.importorskip("music21.corpus")
    paths = sorted(str(p) for p in corpus.getComposer("bach") if str(p).endswith(".mxl"))[:20]
    if len(paths) < 20:
        pytest.skip("music21 Bach corpus not available")
    return [_score_to_piece(corpus.parse(p)) for p in paths]


def _noise_pieces(n_pieces, seed=0):
    rng = np.random.default_rng(seed)
    pieces = []
    for _ in range(n_pieces):
        n = 250
        onset = np.sort(rng.uniform(0, 60, n))
        pieces.append(make_piece(onset, rng.uniform(0.05, 4.0, n), rng.integers(0, 128, n)))
    return pieces


def test_real_music_halves_agree_and_noise_does_not(chorales):
    first, second = chorales[:10], chorales[10:]
    real = {r["feature"]: r for r in compare_sets(first, second)}
    noise = {r["feature"]: r for r in compare_sets(_noise_pieces(10), second)}
    print("\nreal vs real\n" + format_comparison(list(real.values())))
    print("noise vs real\n" + format_comparison(list(noise.values())))

    assert real["pitch_class_histogram"]["overlap"] > 0.85
    assert real["pitch_histogram"]["overlap"] > 0.8
    assert real["note_length_histogram"]["overlap"] > 0.85
    # Uniform pitches spread over the 12 classes too, so the class gap is modest;
    # over the 128 pitches (Bach's SATB range vs the full MIDI range) it is large.
    assert (
        noise["pitch_class_histogram"]["overlap"] < real["pitch_class_histogram"]["overlap"] - 0.1
    )
    assert noise["pitch_histogram"]["overlap"] < real["pitch_histogram"]["overlap"] - 0.4
    assert noise["pitch_class_transition_matrix"]["overlap"] < (
        real["pitch_class_transition_matrix"]["overlap"] - 0.15
    )
    for name in ("note_length_histogram", "ioi_histogram", "onset_position_histogram"):
        assert noise[name]["overlap"] < real[name]["overlap"] - 0.4, name
    assert noise["pitch_class_histogram"]["kl"] > 3 * real["pitch_class_histogram"]["kl"]
    for name in ("pitch_range", "scale_consistency", "pitch_entropy", "groove_consistency"):
        assert real[name]["overlap"] > 0.5, name
        assert noise[name]["overlap"] < 0.05, name
    # Chorales: mostly diatonic four-part writing.
    assert real["scale_consistency"]["ref_mean"] > 0.9
    assert 3.0 < real["polyphony"]["ref_mean"] < 4.5
