"""Objective music statistics for comparing generated music with a reference set.

One job, a long one: the features of a piece and the comparison of two sets of pieces by them.

Two families are implemented, both on plain note columns so that no MIDI library
(and no torch) is needed:

* MusPy metrics (Dong et al., "MusPy: A Toolkit for Symbolic Music Generation",
  ISMIR 2020; code ``muspy/metrics/metrics.py``): pitch range, pitches / pitch
  classes used, pitch (class) entropy, scale consistency, polyphony, polyphony
  rate, empty-beat rate, groove consistency.
* Yang & Lerch, "On the evaluation of generative models in music", Neural
  Computing and Applications 32, 2020 (preprint 2018): pitch-class histogram,
  pitch-class transition matrix, note-length histogram, inter-onset intervals,
  and their set-level comparison by overlap area (OA) and KL divergence of the
  per-set feature distributions.

A *piece* is a mapping with array-like columns ``onset`` and ``duration`` (quarter
notes), ``pitch`` (MIDI 0-127) and ``velocity``; a mapping holding those columns under
``"notes"`` (our note-file layout) is accepted too (:mod:`deeporb.evaluation.columns`).
For these features multi-track pieces are just the concatenated columns; instruments are
not distinguished (MusPy skips drum tracks, so pass pitched tracks only if drums are
present). A piece that also carries its ``"parts"`` gets the cross-part statistics of
:mod:`deeporb.evaluation.cross_part` too, in the set features and comparisons, whenever a
set holds a piece with two pitched parts or more.

Empty pieces (no notes) never raise: their scalar features are NaN (as MusPy
returns) and their histograms are all zeros; set comparisons skip both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deeporb.evaluation.columns import note_columns
from deeporb.evaluation.cross_part import CROSS_PART_FEATURES, cross_part_features, is_ensemble

SCALAR_FEATURES: tuple[str, ...] = (
    "pitch_range",
    "n_pitches_used",
    "n_pitch_classes_used",
    "pitch_entropy",
    "pitch_class_entropy",
    "scale_consistency",
    "polyphony",
    "polyphony_rate",
    "empty_beat_rate",
    "groove_consistency",
    "note_density",
    "mean_ioi",
)

HISTOGRAM_FEATURES: tuple[str, ...] = (
    "pitch_histogram",
    "pitch_class_histogram",
    "pitch_class_transition_matrix",
    "note_length_histogram",
    "ioi_histogram",
    "onset_position_histogram",
)

#: Yang & Lerch's 12 note-length classes (whole, half, quarter, 8th, 16th, their
#: dotted versions, and half/quarter/8th triplets), in quarters, sorted ascending.
NOTE_LENGTH_CLASSES = np.array(
    [1 / 4, 1 / 3, 3 / 8, 1 / 2, 2 / 3, 3 / 4, 1.0, 4 / 3, 3 / 2, 2.0, 3.0, 4.0]
)

#: IOI bins: 17 half-octave bins in log2(quarters) centred on 2**(k/2) for
#: k = -8..8 (1/16 .. 16 quarters). Edges sit between the centres so that common
#: values (1/3, 1/2, 2/3, 1, 3/2, ...) never fall on an edge; values outside are
#: clipped into the first/last bin.
IOI_BIN_CENTERS = 2.0 ** (np.arange(-8, 9) / 2.0)
IOI_BIN_EDGES = 2.0 ** ((np.arange(-8, 10) - 0.5) / 2.0)

_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=float)
_MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], dtype=float)  # natural minor
# 24 rows: major then minor scale masks for roots C..B (as MusPy's _get_scale).
_SCALES = np.stack(
    [np.roll(_MAJOR, r) for r in range(12)] + [np.roll(_MINOR, r) for r in range(12)]
)


# --------------------------------------------------------------------------- helpers
def _entropy_bits(counts: np.ndarray) -> float:
    total = counts.sum()
    if total <= 0:
        return math.nan
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def _normalized(counts: np.ndarray) -> np.ndarray:
    counts = counts.astype(np.float64)
    total = counts.sum()
    return counts / total if total > 0 else counts


# ------------------------------------------------------------------ piece features
def _sounding_levels(start: np.ndarray, end: np.ndarray, pitch: np.ndarray, n_steps: int):
    """Number of distinct sounding pitches per grid segment, without a dense pianoroll.

    Equivalent to summing MusPy's binary (time x 128) pianoroll over pitch, but in
    O(n log n): same-pitch overlapping notes are merged first (the pianoroll is
    binary), then a sweep over start/end events gives a step function. Returns
    (level, length) arrays for the segments between consecutive event times.
    """
    span = n_steps + 1
    s = pitch * span + start  # offsetting by pitch keeps groups ordered
    e = pitch * span + end
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    run_end = np.maximum.accumulate(e)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > run_end[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, len(s) - 1)
    m_pitch = s[first] // span
    m_start = s[first] - m_pitch * span
    m_end = run_end[last] - m_pitch * span
    times = np.concatenate([m_start, m_end])
    delta = np.concatenate([np.ones(len(m_start)), -np.ones(len(m_end))])
    uniq, inverse = np.unique(times, return_inverse=True)
    level = np.cumsum(np.bincount(inverse, weights=delta, minlength=len(uniq)))[:-1]
    return level, np.diff(uniq)


def piece_features(
    piece: Any, beats_per_bar: float = 4.0, resolution: int = 12
) -> dict[str, float | np.ndarray]:
    """All scalar (float) and histogram (normalized ``np.ndarray``) features of a piece.

    Times are quantized to ``resolution`` steps per quarter (notes last >= 1 step);
    a bar is ``beats_per_bar`` quarters; a beat is one quarter, as in MusPy where
    ``resolution`` is per quarter note.

    Scalars (NaN for an empty piece, or where undefined as noted):

    * ``pitch_range``: highest - lowest MIDI pitch (MusPy).
    * ``n_pitches_used`` / ``n_pitch_classes_used``: distinct pitches / classes (MusPy).
    * ``pitch_entropy`` / ``pitch_class_entropy``: Shannon entropy in bits of the
      note-count pitch (class) histogram (MusPy, after Wu & Yang 2020).
    * ``scale_consistency``: max over the 24 major / natural-minor scales of the
      fraction of notes in the scale (MusPy, after Mogren 2016).
    * ``polyphony``: mean number of distinct sounding pitches over the grid steps
      where at least one sounds (MusPy >= 0.3 definition).
    * ``polyphony_rate``: fraction of all steps in [0, end) with >= 2 distinct
      pitches sounding, i.e. MusPy's "ratio of time steps where multiple pitches
      are on" (MuseGAN's polyphonicity). MusPy's code tests ``> threshold`` with
      default ``threshold=2`` (>= 3 pitches); we use the documented meaning.
    * ``empty_beat_rate``: fraction of the ceil(end) beats that no note overlaps
      (MusPy / Pypianoroll). Intervals are half-open, so a note ending on a beat
      boundary does not occupy the next beat (MusPy's code counts it).
    * ``groove_consistency``: 1 - mean normalized Hamming distance between binary
      onset-position vectors of neighbouring bars (MusPy, after Wu & Yang 2020);
      NaN with fewer than 2 bars. Bars are ceil(end / bar) (MusPy uses
      floor + 1, which adds an empty bar when the piece ends on a barline).
    * ``note_density``: notes per quarter over [0, end) (Yang & Lerch's note count,
      made length-independent).
    * ``mean_ioi``: mean inter-onset interval in quarters between distinct onsets
      (Yang & Lerch "IOI"); NaN with fewer than 2 onsets.

    Histograms (all zeros for an empty piece, else summing to 1):

    * ``pitch_histogram`` (128) and ``pitch_class_histogram`` (12, Yang & Lerch
      PCH): note counts.
    * ``pitch_class_transition_matrix`` (144 = 12x12 row-major, from -> to; Yang &
      Lerch PCTM). Polyphony-aware: notes are grouped by onset step and every
      pitch class of a group transitions to every pitch class of the next group.
    * ``note_length_histogram`` (12, Yang & Lerch NLH): each duration goes to the
      nearest of ``NOTE_LENGTH_CLASSES`` in log-duration (longer than a whole note
      counts as a whole note, shorter than a 16th as a 16th).
    * ``ioi_histogram`` (17): IOIs between distinct onsets in ``IOI_BIN_EDGES``.
    * ``onset_position_histogram`` (round(beats_per_bar * resolution)): metrical
      position of distinct onset steps within the bar. Only comparable between
      sets analysed with the same ``beats_per_bar`` and ``resolution``.
    """
    if resolution < 1:
        raise ValueError("resolution must be a positive integer")
    bar_steps = int(round(beats_per_bar * resolution))
    if bar_steps < 1:
        raise ValueError("beats_per_bar * resolution must be >= 1")
    onset, duration, pitch = note_columns(piece)
    n = len(pitch)
    feats: dict[str, float | np.ndarray] = {}
    if n == 0:
        feats.update({name: math.nan for name in SCALAR_FEATURES})
        feats.update(
            pitch_histogram=np.zeros(128),
            pitch_class_histogram=np.zeros(12),
            pitch_class_transition_matrix=np.zeros(144),
            note_length_histogram=np.zeros(len(NOTE_LENGTH_CLASSES)),
            ioi_histogram=np.zeros(len(IOI_BIN_CENTERS)),
            onset_position_histogram=np.zeros(bar_steps),
        )
        return feats

    # --- pitch statistics (note counts)
    pitch_counts = np.bincount(pitch, minlength=128).astype(np.float64)
    pc_counts = np.bincount(pitch % 12, minlength=12).astype(np.float64)
    feats["pitch_range"] = float(pitch.max() - pitch.min())
    feats["n_pitches_used"] = float(np.count_nonzero(pitch_counts))
    feats["n_pitch_classes_used"] = float(np.count_nonzero(pc_counts))
    feats["pitch_entropy"] = _entropy_bits(pitch_counts)
    feats["pitch_class_entropy"] = _entropy_bits(pc_counts)
    feats["scale_consistency"] = float((_SCALES @ pc_counts).max() / n)

    # --- grid
    start = np.rint(onset * resolution).astype(np.int64)
    start -= min(0, int(start.min()))  # negative onsets: shift the piece to start at 0
    end = np.maximum(np.rint((onset + duration) * resolution).astype(np.int64), start + 1)
    n_steps = int(end.max())

    level, seg_len = _sounding_levels(start, end, pitch, n_steps)
    sounding = seg_len[level > 0].sum()
    feats["polyphony"] = float((level * seg_len).sum() / sounding) if sounding else math.nan
    feats["polyphony_rate"] = float(seg_len[level >= 2].sum() / n_steps)

    n_beats = -(-n_steps // resolution)
    beat_diff = np.zeros(n_beats + 1)
    np.add.at(beat_diff, start // resolution, 1.0)
    np.add.at(beat_diff, (end - 1) // resolution + 1, -1.0)
    occupied = np.cumsum(beat_diff)[:n_beats] > 0
    feats["empty_beat_rate"] = float(1.0 - occupied.mean())

    onset_steps = np.unique(start)
    n_bars = -(-n_steps // bar_steps)
    if n_bars >= 2:
        pattern = np.zeros((n_bars, bar_steps), dtype=bool)
        pattern[onset_steps // bar_steps, onset_steps % bar_steps] = True
        hamming = np.count_nonzero(pattern[:-1] != pattern[1:])
        feats["groove_consistency"] = float(1.0 - hamming / (bar_steps * (n_bars - 1)))
    else:
        feats["groove_consistency"] = math.nan

    feats["note_density"] = float(n * resolution / n_steps)
    ioi = np.diff(onset_steps) / resolution
    feats["mean_ioi"] = float(ioi.mean()) if len(ioi) else math.nan

    # --- histograms
    feats["pitch_histogram"] = _normalized(pitch_counts)
    feats["pitch_class_histogram"] = _normalized(pc_counts)

    group = np.searchsorted(onset_steps, start)
    pcs = np.zeros((len(onset_steps), 12))
    pcs[group, pitch % 12] = 1.0
    feats["pitch_class_transition_matrix"] = _normalized((pcs[:-1].T @ pcs[1:]).reshape(-1))

    log_len = np.log2(np.maximum(duration, 1e-6))
    cls = np.abs(log_len[:, None] - np.log2(NOTE_LENGTH_CLASSES)[None, :]).argmin(1)
    feats["note_length_histogram"] = _normalized(
        np.bincount(cls, minlength=len(NOTE_LENGTH_CLASSES))
    )

    ioi_bins = np.clip(
        np.searchsorted(IOI_BIN_EDGES, ioi, side="right") - 1, 0, len(IOI_BIN_CENTERS) - 1
    )
    feats["ioi_histogram"] = _normalized(np.bincount(ioi_bins, minlength=len(IOI_BIN_CENTERS)))
    feats["onset_position_histogram"] = _normalized(
        np.bincount(onset_steps % bar_steps, minlength=bar_steps)
    )
    return feats


def set_features(
    pieces: Sequence[Any], beats_per_bar: float = 4.0, resolution: int = 12
) -> dict[str, list]:
    """Features of every piece, as ``{feature: [value per piece]}`` (input order).

    The ``CROSS_PART_FEATURES`` are included when some piece has two pitched parts or more
    (NaN for the pieces that do not), so a set of single-part pieces has no such rows.
    """
    out: dict[str, list] = {name: [] for name in SCALAR_FEATURES + HISTOGRAM_FEATURES}
    for piece in pieces:
        for name, value in piece_features(piece, beats_per_bar, resolution).items():
            out[name].append(value)
    if any(is_ensemble(piece) for piece in pieces):
        out.update({name: [] for name in CROSS_PART_FEATURES})
        for piece in pieces:
            for name, value in cross_part_features(piece, beats_per_bar, resolution).items():
                out[name].append(value)
    return out


# ------------------------------------------------------------------ set comparison
def _smoothed(p: np.ndarray, eps: float) -> np.ndarray:
    p = p + eps
    return p / p.sum()


def _kl(p_ref: np.ndarray, q_gen: np.ndarray, eps: float) -> float:
    p, q = _smoothed(p_ref, eps), _smoothed(q_gen, eps)
    return float((p * np.log(p / q)).sum())


def _kde_masses(
    gen: np.ndarray, ref: np.ndarray, n_grid: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Gaussian-KDE probability masses of both samples on one shared grid.

    Bandwidth is Scott's rule per set (as scipy's ``gaussian_kde`` default, which
    Yang & Lerch used). Degenerate sets (one piece, or all equal) get 5% of the
    pooled range, and no bandwidth drops below the grid spacing, so a set is never
    a spike that falls between grid points. Returns None if all values are equal.
    """
    pooled = np.concatenate([gen, ref])
    lo, hi = float(pooled.min()), float(pooled.max())
    width = hi - lo
    if width <= 0:
        return None

    def scott(x: np.ndarray) -> float:
        if len(x) < 2:
            return 0.0
        return float(x.std(ddof=1) * len(x) ** (-1.0 / 5.0))

    bw = [scott(gen), scott(ref)]
    bw = [b if b > 0 else 0.05 * width for b in bw]
    pad = 4.0 * max(bw)
    grid = np.linspace(lo - pad, hi + pad, n_grid)
    step = grid[1] - grid[0]
    bw = [max(b, step) for b in bw]
    masses = []
    for x, b in zip((gen, ref), bw, strict=True):
        dens = np.exp(-0.5 * ((grid[:, None] - x[None, :]) / b) ** 2).sum(1)
        masses.append(dens / dens.sum())
    return masses[0], masses[1]


def compare_features(
    gen_features: Mapping[str, Sequence],
    ref_features: Mapping[str, Sequence],
    eps: float = 1e-6,
    n_grid: int = 512,
) -> list[dict[str, Any]]:
    """Compare two ``set_features`` outputs; see ``compare_sets`` for the rows."""
    rows: list[dict[str, Any]] = []
    for name in HISTOGRAM_FEATURES:
        if name not in gen_features or name not in ref_features:
            continue
        means = []
        counts = []
        for values in (gen_features[name], ref_features[name]):
            hists = [np.asarray(h, dtype=np.float64) for h in values]
            hists = [h for h in hists if h.sum() > 0]  # empty pieces carry no shape
            counts.append(len(hists))
            means.append(_normalized(np.mean(hists, axis=0)) if hists else None)
        g, r = means
        if g is None or r is None or g.shape != r.shape:
            overlap = kl = math.nan
        else:
            overlap = float(np.minimum(g, r).sum())
            kl = _kl(r, g, eps)
        rows.append(
            {
                "feature": name,
                "kind": "histogram",
                "overlap": overlap,
                "kl": kl,
                "gen_mean": math.nan,
                "ref_mean": math.nan,
                "gen_std": math.nan,
                "ref_std": math.nan,
                "n_gen": counts[0],
                "n_ref": counts[1],
                "gen_hist": g,
                "ref_hist": r,
            }
        )
    for name in SCALAR_FEATURES + CROSS_PART_FEATURES:
        if name not in gen_features or name not in ref_features:
            continue
        g = np.asarray(gen_features[name], dtype=np.float64).reshape(-1)
        r = np.asarray(ref_features[name], dtype=np.float64).reshape(-1)
        g, r = g[np.isfinite(g)], r[np.isfinite(r)]
        if len(g) == 0 or len(r) == 0:
            overlap = kl = math.nan
        else:
            masses = _kde_masses(g, r, n_grid)
            if masses is None:  # every value identical in both sets
                overlap, kl = 1.0, 0.0
            else:
                pg, pr = masses
                overlap = float(np.minimum(pg, pr).sum())
                kl = _kl(pr, pg, eps)
        rows.append(
            {
                "feature": name,
                "kind": "cross_part" if name in CROSS_PART_FEATURES else "scalar",
                "overlap": overlap,
                "kl": kl,
                "gen_mean": float(g.mean()) if len(g) else math.nan,
                "ref_mean": float(r.mean()) if len(r) else math.nan,
                "gen_std": float(g.std()) if len(g) else math.nan,
                "ref_std": float(r.std()) if len(r) else math.nan,
                "n_gen": len(g),
                "n_ref": len(r),
            }
        )
    return rows


def compare_sets(
    generated: Sequence[Any],
    reference: Sequence[Any],
    beats_per_bar: float = 4.0,
    resolution: int = 12,
    eps: float = 1e-6,
    n_grid: int = 512,
) -> list[dict[str, Any]]:
    """Compare a generated set of pieces with a reference set, one row per feature.

    Each row has ``feature``, ``kind`` (``"histogram"``/``"scalar"``/``"cross_part"``), ``overlap``,
    ``kl``, ``gen_mean``, ``ref_mean``, ``gen_std``, ``ref_std``, ``n_gen``, ``n_ref``
    (pieces that contributed); histogram rows also carry ``gen_hist``/``ref_hist``.

    * Histogram features: the mean normalized histogram of each set (empty pieces
      skipped). ``overlap`` = sum of bin-wise minima (1 = identical, 0 = disjoint);
      ``kl`` = KL(reference || generated) in nats after adding ``eps`` to every bin
      and renormalizing, so mass the model never produces is penalized rather than
      infinite. Means are NaN (a histogram has no scalar mean).
    * Scalar features (Yang & Lerch 2018 style): the distribution of the value over
      the pieces of each set is a Gaussian KDE on a common ``n_grid`` grid; the
      ``overlap`` area and KL(reference || generated) are taken between the two
      discretized densities. Yang & Lerch apply this to intra/inter-set distance
      distributions; applying it to the values directly keeps it cheap and
      interpretable. NaN values (empty or too-short pieces) are skipped.

    * Cross-part features (when both sets hold pieces with two pitched parts or more):
      compared as the scalars, in rows of kind ``"cross_part"``.

    Rows whose feature has no valid value in one of the sets get NaN overlap/KL.
    """
    gen = set_features(generated, beats_per_bar, resolution)
    ref = set_features(reference, beats_per_bar, resolution)
    return compare_features(gen, ref, eps=eps, n_grid=n_grid)


def format_comparison(rows: Sequence[Mapping[str, Any]]) -> str:
    """Plain-text table of ``compare_sets`` rows (histogram means shown as ``-``)."""

    def fmt(value: Any) -> str:
        if value is None:
            return "-"
        value = float(value)
        if math.isnan(value):
            return "-"
        return f"{value:.4g}"

    header = ("feature", "kind", "overlap", "kl", "gen_mean", "ref_mean")
    table = [header] + [
        (
            str(row["feature"]),
            str(row.get("kind", "")),
            fmt(row.get("overlap")),
            fmt(row.get("kl")),
            fmt(row.get("gen_mean")),
            fmt(row.get("ref_mean")),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for k, line in enumerate(table):
        cells = [
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
