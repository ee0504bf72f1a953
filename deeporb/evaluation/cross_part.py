"""Cross-part statistics: do the parts of a piece sound like one ensemble?

Per-part statistics (:mod:`deeporb.evaluation.music_stats`) cannot tell four plausible
voices that hear each other from four plausible voices that do not; these can. A piece is
several parts (see :mod:`deeporb.evaluation.columns`); drums and empty parts are left out,
and every statistic is NaN for a piece with fewer than two pitched parts.

Times are quantized to ``resolution`` steps per quarter (a note lasts >= 1 step, intervals
are half-open), and a part's *chroma* over a stretch of time is its 12 pitch-class
durations in steps (a note held for half the stretch weighs half; two notes of one class
add up), as MuseGAN's metrics sum a binary pianoroll into 12 classes. A beat is a quarter,
a bar ``beats_per_bar`` quarters from 0.

* ``cross_part_consonance``: sampled at every onset of the ensemble (each grid step where
  some pitched part starts a note), every pair of notes sounding then in two *different*
  parts is one pair; the share of pairs whose interval mod 12 is in
  ``CONSONANT_INTERVALS`` = {0, 3, 4, 5, 7, 8, 9} (unisons/octaves, thirds, fourths,
  fifths, sixths: the consonances of common-practice counterpoint, the fourth counted
  consonant as between upper voices). Sampling at onsets, not weighting by overlap,
  counts each new sonority once, as onset-grid metrics of MuseGAN-style evaluations do.
  Uniformly random pitches give 7/12 = 0.583.
* ``pitch_class_agreement``: per bar, the cosine similarity of the chroma of each pair
  of parts that both sound in that bar, averaged over all (pair, bar): 1 when the parts
  use the pitch classes in the same proportions, 0 when they share none (after the
  pitch-class histogram comparisons of Yang & Lerch 2020, taken between parts).
* ``tonal_distance``: per beat, the Euclidean distance between the 6-D tonal centroids
  (Harte, Sandler & Gasser, "Detecting harmonic change in musical audio", AMCMM 2006) of
  each pair of parts that both sound in that beat, averaged over all (pair, beat); as
  MuseGAN's tonal distance between tracks (Dong et al., "MuseGAN", AAAI 2018). The
  centroid is ``TONAL_MATRIX @ (chroma / chroma.sum())``: the chroma projected on the
  circle of fifths (radius 1), minor thirds (radius 1) and major thirds (radius 0.5).
  0 for parts with the same chroma, larger for harmonically farther parts.
* ``key_consistency``: one key for the whole ensemble, the Krumhansl-Schmuckler key
  (Krumhansl, "Cognitive Foundations of Musical Pitch", 1990: the highest Pearson
  correlation of the ensemble's pitch-class durations with the 24 rotations of the
  Krumhansl-Kessler 1982 major and minor profiles); then, per part, the share of its
  notes (counts) whose pitch class is in that key's scale, averaged over the parts. A
  major key's scale is its major scale; a minor key's is the natural minor plus the
  raised seventh (the leading tone its cadences use), 8 classes. 1 when every part stays
  in the ensemble's key; voices from pieces in different keys fall well below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from deeporb.evaluation.columns import Columns, pitched_parts

CROSS_PART_FEATURES: tuple[str, ...] = (
    "cross_part_consonance",
    "pitch_class_agreement",
    "tonal_distance",
    "key_consistency",
)

CONSONANT_INTERVALS = (0, 3, 4, 5, 7, 8, 9)
_CONSONANT = np.zeros((12, 12))
for _i in range(12):
    for _j in range(12):
        _CONSONANT[_i, _j] = (_i - _j) % 12 in CONSONANT_INTERVALS


def _tonal_matrix(r_fifths: float = 1.0, r_minor: float = 1.0, r_major: float = 0.5) -> np.ndarray:
    angle = np.arange(12)
    rows = []
    for radius, step in ((r_fifths, 7 * np.pi / 6), (r_minor, 3 * np.pi / 2), (r_major, 2 * np.pi / 3)):
        rows += [radius * np.sin(step * angle), radius * np.cos(step * angle)]
    return np.stack(rows)


#: Harte et al. 2006: pitch class -> 6-D tonal centroid (fifths, minor thirds, major thirds).
TONAL_MATRIX = _tonal_matrix()

#: Krumhansl & Kessler (1982) key profiles, tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_MAJOR_SCALE = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
_MINOR_SCALE = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1], dtype=bool)  # natural minor + leading tone


def _chroma_steps(parts: Sequence[Columns], resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(parts x steps x 12 sounding counts, the ensemble's onset steps), on one shared grid."""
    grid = []
    for onset, duration, pitch in parts:
        start = np.rint(onset * resolution).astype(np.int64)
        end = np.maximum(np.rint((onset + duration) * resolution).astype(np.int64), start + 1)
        grid.append((start, end, pitch % 12))
    shift = min(0, min(int(s.min()) for s, _, _ in grid))  # negative onsets: start the piece at 0
    n_steps = max(int(e.max()) for _, e, _ in grid) - shift
    chroma = np.zeros((len(grid), n_steps + 1, 12))
    for i, (start, end, pc) in enumerate(grid):
        np.add.at(chroma[i], (start - shift, pc), 1.0)
        np.add.at(chroma[i], (end - shift, pc), -1.0)
    onsets = np.unique(np.concatenate([s for s, _, _ in grid])) - shift
    return np.cumsum(chroma, axis=1)[:, :n_steps], onsets


def _window_sums(chroma: np.ndarray, width: int) -> np.ndarray:
    """Chroma summed over consecutive windows of ``width`` steps from 0: parts x windows x 12."""
    n_parts, n_steps, _ = chroma.shape
    padded = np.zeros((n_parts, -(-n_steps // width) * width, 12))
    padded[:, :n_steps] = chroma
    return padded.reshape(n_parts, -1, width, 12).sum(axis=2)


def ensemble_key(parts: Sequence[Columns], resolution: int = 12) -> tuple[int, str]:
    """The Krumhansl-Schmuckler key of all parts together: (tonic pitch class, major|minor)."""
    durations = _chroma_steps(parts, resolution)[0].sum(axis=(0, 1))
    best, key = -math.inf, (0, "major")
    for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            r = np.corrcoef(durations, np.roll(profile, tonic))[0, 1]
            if np.isfinite(r) and r > best:
                best, key = r, (tonic, mode)
    return key


def cross_part_features(piece: Any, beats_per_bar: float = 4.0, resolution: int = 12) -> dict[str, float]:
    """The ``CROSS_PART_FEATURES`` of one piece (see the module doc); NaN below two pitched parts.

    ``piece``: a mapping with ``"parts"``, or the list of parts itself.
    """
    if resolution < 1 or round(beats_per_bar * resolution) < 1:
        raise ValueError("need resolution >= 1 and beats_per_bar * resolution >= 1")
    parts = pitched_parts(piece)
    out = dict.fromkeys(CROSS_PART_FEATURES, math.nan)
    if len(parts) < 2:
        return out
    chroma, onsets = _chroma_steps(parts, resolution)
    pairs = list(combinations(range(len(parts)), 2))

    at_onsets = chroma[:, onsets]
    consonant = total = 0.0
    for p, q in pairs:
        consonant += float(np.einsum("ti,ij,tj->", at_onsets[p], _CONSONANT, at_onsets[q]))
        total += float((at_onsets[p].sum(1) * at_onsets[q].sum(1)).sum())
    if total:
        out["cross_part_consonance"] = consonant / total

    bars = _window_sums(chroma, int(round(beats_per_bar * resolution)))
    norms = np.linalg.norm(bars, axis=2)
    cosines = []
    for p, q in pairs:
        both = (norms[p] > 0) & (norms[q] > 0)
        cosines.append((bars[p, both] * bars[q, both]).sum(1) / (norms[p, both] * norms[q, both]))
    cosines = np.concatenate(cosines)
    if len(cosines):
        out["pitch_class_agreement"] = float(cosines.mean())

    beats = _window_sums(chroma, resolution)
    mass = beats.sum(axis=2)
    centroids = np.einsum("ki,pbi->pbk", TONAL_MATRIX, beats / np.maximum(mass, 1e-12)[..., None])
    distances = []
    for p, q in pairs:
        both = (mass[p] > 0) & (mass[q] > 0)
        distances.append(np.linalg.norm(centroids[p, both] - centroids[q, both], axis=1))
    distances = np.concatenate(distances)
    if len(distances):
        out["tonal_distance"] = float(distances.mean())

    tonic, mode = ensemble_key(parts, resolution)
    scale = np.roll(_MAJOR_SCALE if mode == "major" else _MINOR_SCALE, tonic)
    out["key_consistency"] = float(np.mean([scale[pitch % 12].mean() for _, _, pitch in parts]))
    return out


def is_ensemble(piece: Any) -> bool:
    """Whether a piece has at least two pitched parts with notes (so the statistics are defined)."""
    parts = piece.get("parts") if isinstance(piece, Mapping) else piece
    return parts is not None and len(pitched_parts(parts)) >= 2


def ensemble_statistics(
    pieces: Sequence[Any], beats_per_bar: float = 4.0, resolution: int = 12
) -> dict[str, float]:
    """Mean of each ``CROSS_PART_FEATURES`` over a set of pieces, plus ``pieces``: how many
    had two pitched parts or more (the others are skipped, as are a piece's NaN values)."""
    values = [cross_part_features(p, beats_per_bar, resolution) for p in pieces if is_ensemble(p)]
    out: dict[str, float] = {}
    for name in CROSS_PART_FEATURES:
        finite = [v[name] for v in values if math.isfinite(v[name])]
        out[name] = float(np.mean(finite)) if finite else math.nan
    out["pieces"] = len(values)
    return out
