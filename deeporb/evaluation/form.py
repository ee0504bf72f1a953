"""Measures of form: does a piece return to what it said, hold its key, and end like music?

Issue 19's figures for whole pieces, beside the per-bar statistics of
:mod:`deeporb.evaluation.music_stats` and :mod:`deeporb.evaluation.cross_part`, which cannot
tell sixteen good bars from a work. A piece is what those modules read (see
:mod:`deeporb.evaluation.columns`): note columns, or ``parts`` of note columns (drums and
empty parts left out, as there); :func:`form_piece` makes one from tracks. All in numpy, on
the grid of ``resolution`` steps per quarter (a note lasts at least one step).

**Bars.** A piece may carry ``bar_lines``: its bar starts in quarters (from its meter, first
0); past the last one, bars go on at the last bar's length. Without them a bar is
``beats_per_bar`` quarters from 0. A note belongs to the bar its onset falls in. Bars are
counted from the piece's first sounding bar (leading bars where no part plays are dropped,
as training drops them, :mod:`deeporb.data.pieces`), and a piece is as many bars long as it
takes to reach the bar of its last onset.

**Figures of one piece** (:func:`piece_form`):

* ``repeat_rate``: the share of the piece's non-empty bars (a bar holding an onset) whose
  content, every pitched part's onsets in it as (part, onset from the bar start, pitch,
  duration), exactly equals an earlier bar of the piece. ``repeat_distances``: for each such
  bar, how many bars back the nearest equal one is.
* ``repeat_rate_part`` / ``repeat_distances_part``: the same per part, pooled: the share of
  (part, non-empty bar) pairs whose notes equal the same part's notes in an earlier bar
  (a voice that restates its line while the others change counts here, not above).
* ``key`` / ``opening_key``: the Krumhansl-Kessler key (:func:`estimate_key`) of the whole
  piece and of its first 16 bars.
* ``key_consistency_sections``: per 16-bar section, the duration-weighted share of its notes
  whose pitch class lies in the scale of the opening key (a major key's major scale; a minor
  key's natural minor plus the leading tone, as :mod:`deeporb.evaluation.cross_part`);
  ``key_consistency_first16``, ``key_consistency_49_64`` (NaN when the piece has no notes
  there) and ``key_consistency_last16`` (the last 16 bars of the piece) are read from it.
* ``tonic_ending``: 1 when the lowest pitch sounding at the piece's last onset has the pitch
  class of the piece's tonic, else 0.
* ``bars``: its length in bars.

:func:`summarize_form` turns the figures of a set into one flat dict of named floats
(``form/...``), and :func:`compare_form` sets two sets side by side with the overlap of their
length distributions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deeporb.evaluation.columns import has_parts, note_columns, pitched_parts
from deeporb.evaluation.cross_part import MAJOR_PROFILE, MINOR_PROFILE

#: Where real music points back to (issue 19): the distances the figures name; others pool.
REPEAT_DISTANCES = (1, 2, 4, 8, 16)
SECTION_BARS = 16
PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# the 24 key profiles (major C..B, then minor C..B), centred and of unit length, so that one
# matrix product gives the Pearson correlation of a histogram with every key at once
_PROFILES = np.stack([np.roll(MAJOR_PROFILE, t) for t in range(12)] + [np.roll(MINOR_PROFILE, t) for t in range(12)])
_PROFILES = _PROFILES - _PROFILES.mean(axis=1, keepdims=True)
_PROFILES /= np.linalg.norm(_PROFILES, axis=1, keepdims=True)
_MAJOR_SCALE = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
_MINOR_SCALE = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1], dtype=bool)  # natural minor + leading tone

Key = tuple[int, str]


# --------------------------------------------------------------------------- keys
def estimate_key(pitch: np.ndarray, weight: np.ndarray) -> Key | None:
    """The Krumhansl-Schmuckler key of notes: (tonic pitch class, "major" | "minor").

    The pitch-class histogram weighted by ``weight`` (durations) is correlated with the 24
    rotations of the Krumhansl-Kessler (1982) profiles and the best key wins. Written in numpy
    rather than music21's ``analyze('key')`` because it runs per 16-bar section of every piece
    of a set, where music21's stream analysis costs milliseconds a call. None when the
    histogram is flat (no notes, or every class alike): no key is better than another.
    """
    hist = np.bincount(np.asarray(pitch, dtype=np.int64) % 12, weights=np.asarray(weight, dtype=np.float64),
                       minlength=12)
    centred = hist - hist.mean()
    norm = np.linalg.norm(centred)
    if norm <= 1e-12:
        return None
    best = int(np.argmax(_PROFILES @ (centred / norm)))
    return best % 12, "major" if best < 12 else "minor"


def scale_of(key: Key) -> np.ndarray:
    """The 12 pitch classes as a mask: True where the class is in the key's scale."""
    tonic, mode = key
    return np.roll(_MAJOR_SCALE if mode == "major" else _MINOR_SCALE, tonic)


def key_name(key: Key | None) -> str | None:
    return None if key is None else f"{PITCH_CLASSES[key[0]]} {key[1]}"


# --------------------------------------------------------------------------- the grid
def form_piece(tracks: Sequence[Any], beats_per_bar: float = 4.0, bar_lines: Sequence[float] | None = None) -> dict:
    """A piece from tracks (objects with ``notes`` columns, ``is_drum`` and ``name``, as
    :class:`deeporb.midi.Track`): its bars start at ``bar_lines`` (quarters) when given, else
    every ``beats_per_bar`` quarters."""
    parts = [{**{c: np.asarray(t.notes[c]) for c in ("onset", "duration", "pitch")},
              "instrument": getattr(t, "name", ""), "is_drum": bool(getattr(t, "is_drum", False))}
             for t in tracks]
    lines = [0.0, float(beats_per_bar)] if bar_lines is None else bar_lines
    return {"parts": parts, "bar_lines": np.asarray(lines, dtype=np.float64)}


def _notes(piece: Any, beats_per_bar: float, resolution: int) -> dict[str, np.ndarray]:
    """The pitched notes of a piece on the grid, as columns: part, bar (from the first sounding
    bar), pos (steps from the bar start), pitch, dur (steps, >= 1), start (absolute steps)."""
    parts = pitched_parts(piece) if has_parts(piece) else [c for c in [note_columns(piece)] if len(c[2])]
    cols = {k: [] for k in ("part", "start", "dur", "pitch")}
    for i, (onset, duration, pitch) in enumerate(parts):
        start = np.rint(onset * resolution).astype(np.int64)
        end = np.maximum(np.rint((onset + duration) * resolution).astype(np.int64), start + 1)
        cols["part"].append(np.full(len(pitch), i, dtype=np.int64))
        cols["start"].append(start)
        cols["dur"].append(end - start)
        cols["pitch"].append(pitch)
    notes = {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for k, v in cols.items()}
    if not len(notes["start"]):
        return notes | {"bar": notes["start"], "pos": notes["start"]}
    given = piece.get("bar_lines") if isinstance(piece, Mapping) else None
    lines = (np.rint(np.asarray(given, dtype=np.float64) * resolution).astype(np.int64)
             if given is not None and len(given) else np.array([0], dtype=np.int64))
    step = int(lines[-1] - lines[-2]) if len(lines) >= 2 else max(int(round(beats_per_bar * resolution)), 1)
    first = int(notes["start"].min())
    if first < lines[0]:  # notes before the first bar line (negative onsets): bars before it too
        lines = np.concatenate([lines[0] - step * np.arange(-(-(lines[0] - first) // step), 0, -1), lines])
    last = int(notes["start"].max())
    if last >= lines[-1] + step:
        lines = np.concatenate([lines, np.arange(lines[-1] + step, last + 1, step)])
    bar = np.searchsorted(lines, notes["start"], side="right") - 1
    notes["pos"] = notes["start"] - lines[bar]
    notes["bar"] = bar - bar.min()
    return notes


# --------------------------------------------------------------------------- repeats
def _repeats(notes: Mapping[str, np.ndarray], keys: Sequence[str]) -> tuple[int, list[int]]:
    """(non-empty bars, distance back to the nearest equal earlier bar for each repeated one);
    a bar's content is its notes' ``keys`` columns, sorted, so equal bars are equal bytes."""
    table = np.stack([notes["bar"], *(notes[k] for k in keys)], axis=1)
    table = table[np.lexsort(table.T[::-1])]
    bars, first = np.unique(table[:, 0], return_index=True)
    last_seen: dict[bytes, int] = {}
    distances = []
    for bar, content in zip(bars.tolist(), np.split(table[:, 1:], first[1:]), strict=True):
        key = content.tobytes()
        if key in last_seen:
            distances.append(bar - last_seen[key])
        last_seen[key] = bar
    return len(bars), distances


def _key_share(notes: Mapping[str, np.ndarray], mask: np.ndarray, scale: np.ndarray) -> float:
    """The duration-weighted share of the masked notes in ``scale``; NaN without notes."""
    weight = notes["dur"][mask].astype(np.float64)
    if weight.sum() <= 0:
        return math.nan
    return float((weight * scale[notes["pitch"][mask] % 12]).sum() / weight.sum())


def piece_form(piece: Any, beats_per_bar: float = 4.0, resolution: int = 12) -> dict[str, Any]:
    """The form figures of one piece (see the module doc): floats (NaN where undefined, e.g.
    every figure of a piece without pitched notes), the distance and section lists, key names."""
    if resolution < 1:
        raise ValueError("resolution must be a positive integer")
    notes = _notes(piece, beats_per_bar, resolution)
    out: dict[str, Any] = {
        "bars": 0.0, "repeat_rate": math.nan, "repeat_rate_part": math.nan, "repeat_distances": [],
        "repeat_distances_part": [], "key": None, "opening_key": None, "key_consistency_sections": [],
        "key_consistency_first16": math.nan, "key_consistency_49_64": math.nan,
        "key_consistency_last16": math.nan, "tonic_ending": math.nan,
    }
    if not len(notes["bar"]):
        return out
    n_bars = int(notes["bar"].max()) + 1
    out["bars"] = float(n_bars)

    filled, distances = _repeats(notes, ("part", "pos", "pitch", "dur"))
    out["repeat_rate"], out["repeat_distances"] = len(distances) / filled, distances
    filled = 0
    for part in np.unique(notes["part"]):
        own = {k: v[notes["part"] == part] for k, v in notes.items()}
        count, found = _repeats(own, ("pos", "pitch", "dur"))
        filled += count
        out["repeat_distances_part"] += found
    out["repeat_rate_part"] = len(out["repeat_distances_part"]) / filled

    section = notes["bar"] // SECTION_BARS
    opening = estimate_key(notes["pitch"][section == 0], notes["dur"][section == 0])
    key = estimate_key(notes["pitch"], notes["dur"])
    out["opening_key"], out["key"] = key_name(opening), key_name(key)
    if opening is not None:
        scale = scale_of(opening)
        sections = [_key_share(notes, section == s, scale) for s in range(int(section.max()) + 1)]
        out["key_consistency_sections"] = sections
        out["key_consistency_first16"] = sections[0]
        out["key_consistency_49_64"] = sections[3] if len(sections) > 3 else math.nan
        out["key_consistency_last16"] = _key_share(notes, notes["bar"] >= n_bars - SECTION_BARS, scale)
    if key is not None:
        last = notes["start"].max()
        sounding = (notes["start"] <= last) & (notes["start"] + notes["dur"] > last)
        out["tonic_ending"] = float(int(notes["pitch"][sounding].min()) % 12 == key[0])
    return out


# --------------------------------------------------------------------------- sets
def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def distance_shares(distances: Sequence[int]) -> dict[str, float]:
    """The share of repeats pointing back each of ``REPEAT_DISTANCES`` bars, and ``other``
    (NaN each when there are no repeats)."""
    total = len(distances)
    shares = {str(d): sum(1 for x in distances if x == d) / total if total else math.nan for d in REPEAT_DISTANCES}
    shares["other"] = sum(1 for x in distances if x not in REPEAT_DISTANCES) / total if total else math.nan
    return shares


def summarize_form(figures: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """One flat dict of named floats for a set, from its pieces' :func:`piece_form` figures.

    Rates, key consistencies and ``tonic_ending`` (the share of pieces ending on their tonic)
    are means over the pieces that have them, so each piece weighs the same whatever its
    length; the repeat-distance shares pool the repeats of all pieces, since most pieces have
    few. ``form/pieces`` counts the pieces with notes.
    """
    played = [f for f in figures if f["bars"] > 0]
    out = {"form/pieces": float(len(played)), "form/mean_bars": _mean([f["bars"] for f in played])}
    for name in ("repeat_rate", "repeat_rate_part", "key_consistency_first16", "key_consistency_49_64",
                 "key_consistency_last16", "tonic_ending"):
        out[f"form/{name}"] = _mean([f[name] for f in played])
    for variant in ("", "_part"):
        pooled = [d for f in played for d in f[f"repeat_distances{variant}"]]
        out |= {f"form/repeat_distance{variant}_{k}": v for k, v in distance_shares(pooled).items()}
    return out


def form_summary(pieces: Sequence[Any], beats_per_bar: float = 4.0, resolution: int = 12) -> dict[str, float]:
    """:func:`summarize_form` of the pieces' :func:`piece_form` figures."""
    return summarize_form([piece_form(p, beats_per_bar, resolution) for p in pieces])


def length_overlap(bars_a: Sequence[float], bars_b: Sequence[float], bin_bars: int = 4) -> float:
    """How alike two sets' lengths are: the intersection of their normalized histograms of
    lengths in bars on shared bins of ``bin_bars`` bars (1: the same distribution, 0: no
    length in common). Bins of a few bars, as long as a phrase, because 16 pieces cannot fill
    bins of one bar. NaN when a set is empty."""
    a = np.asarray([x for x in bars_a if x > 0], dtype=np.int64)
    b = np.asarray([x for x in bars_b if x > 0], dtype=np.int64)
    if not len(a) or not len(b):
        return math.nan
    size = int(max(a.max(), b.max()) - 1) // bin_bars + 1
    hist_a = np.bincount((a - 1) // bin_bars, minlength=size) / len(a)
    hist_b = np.bincount((b - 1) // bin_bars, minlength=size) / len(b)
    return float(np.minimum(hist_a, hist_b).sum())


def compare_form(
    generated: Sequence[Any],
    reference: Sequence[Any],
    beats_per_bar: float = 4.0,
    resolution: int = 12,
    bin_bars: int = 4,
) -> dict[str, Any]:
    """Two sets' form side by side: ``{"samples": summary, "reference": summary,
    "length_overlap": float}`` (:func:`summarize_form`, :func:`length_overlap`). Compare whole
    pieces with whole pieces: length, endings and bars 49-64 mean nothing in excerpts."""
    gen = [piece_form(p, beats_per_bar, resolution) for p in generated]
    ref = [piece_form(p, beats_per_bar, resolution) for p in reference]
    return {"samples": summarize_form(gen), "reference": summarize_form(ref),
            "length_overlap": length_overlap([f["bars"] for f in gen], [f["bars"] for f in ref], bin_bars)}


def format_form(comparison: Mapping[str, Any]) -> str:
    """Plain-text table of :func:`compare_form`: one row per figure, samples beside reference."""
    def fmt(value: float) -> str:
        return "-" if value is None or not math.isfinite(value) else f"{value:.3g}"

    names = list(comparison["samples"])
    width = max(len(n) for n in names)
    lines = [f"{'figure'.ljust(width)}  samples  held-out", "-" * (width + 19)]
    lines += [f"{n.ljust(width)}  {fmt(comparison['samples'][n]):>7}  {fmt(comparison['reference'][n]):>8}"
              for n in names]
    lines.append(f"{'form/length_overlap'.ljust(width)}  {fmt(comparison['length_overlap']):>7}")
    return "\n".join(lines)


def json_ready(figures: Mapping[str, Any]) -> dict[str, Any]:
    """Figures with NaN as None (strict JSON has no NaN), keys and lists as they are."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return [clean(x) for x in v] if isinstance(v, list) else v

    return {k: clean(v) for k, v in figures.items()}
