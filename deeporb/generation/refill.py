"""Fills of a primer: which gap a request asks for, and the primer with its gap written anew.

``fill.parts`` / ``fill.bars`` (:class:`deeporb.generation.compose.Fill`) name a gap in the
primer (:func:`gap_of`); the model writes it after reading the whole primer around it
(:func:`deeporb.encoding.fills.fill_prompt`), and :func:`refill_tracks` puts the written notes
into the primer's own tracks. Every note outside the gap comes back exactly as the file had
it (its timing and velocity, unquantized; instruments the model does not know too), so a
fill never changes what it was not asked to.
"""

from __future__ import annotations

import numpy as np

from deeporb.encoding.fills import Gap, bar_lines, check_gap, in_gap
from deeporb.encoding.words import GridNotes, Vocabulary
from deeporb.errors import UserError
from deeporb.generation.prompts import Primer
from deeporb.midi import Track


def gap_of(fill, primer: Primer | None, vocab: Vocabulary) -> Gap:
    """The gap a :class:`~deeporb.generation.compose.Fill` names in ``primer``, or one
    :class:`UserError` naming what to change."""
    if primer is None:
        raise UserError("fill.parts / fill.bars rewrite part of a primer: pass primer=FILE.mid")
    parts = sorted(primer.parts) if fill.parts is None else list(dict.fromkeys(str(p) for p in fill.parts))
    if not parts:
        raise UserError(f"fill.parts=[] names no part; name some of: {', '.join(vocab.instruments)} (or null: "
                        "every part of the primer)")
    unknown = [p for p in parts if p not in vocab.instruments]
    if unknown:
        raise UserError(f"fill.parts names {', '.join(map(repr, unknown))}, which this model does not know; "
                        f"it knows: {', '.join(vocab.instruments)}")
    bars = [1, primer.bars] if fill.bars is None else list(fill.bars)
    if len(bars) != 2 or not all(isinstance(b, int) and not isinstance(b, bool) for b in bars):
        raise UserError(f"fill.bars must be [first, last] (1-based, inclusive), e.g. [5,8]; got {fill.bars}")
    first, last = bars
    if not 1 <= first <= last <= primer.bars:
        raise UserError(f"fill.bars={bars} must lie in the primer's bars 1 to {primer.bars} with first <= last "
                        "(to write bars after the primer, continue it: leave fill unset)")
    gap = Gap(tuple(range(first - 1, last)), tuple(parts))
    try:
        check_gap(gap, primer.meter, vocab)
    except ValueError as e:
        raise UserError(f"fill.bars={bars}: {e}; fill the bars of each meter separately") from None
    return gap


def refill_tracks(
    primer: Primer, gap: Gap, written: dict[str, GridNotes], vocab: Vocabulary, programs: dict[str, tuple[int, bool]],
    order: list[str] | None = None,
) -> list[Track]:
    """The primer's tracks (file order, each named by its instrument key) with the notes of
    the gap's parts in the gap's bars replaced by ``written``'s notes there (tidied:
    :func:`deeporb.generation.compose.tidy_notes`); a gap part the
    primer lacks becomes a new track after them (``programs[key]``: its program and drum
    flag), in the ``order`` asked (default: the gap's)."""
    config = vocab.config
    lines, _ = bar_lines(primer.meter, gap.bars[-1] + 1, vocab)
    out, placed = [], set()
    for key, track in primer.originals:
        notes = track.notes
        if key in gap.parts:
            steps = np.floor(notes["onset"] * config.resolution + 0.5).astype(np.int64)
            keep = ~in_gap(steps, lines, gap)
            notes = {c: v[keep] for c, v in notes.items()}
            if key not in placed:
                notes = merge(notes, new_notes(written.get(key), lines, gap, vocab))
                placed.add(key)
        out.append(Track(key, track.program, track.is_drum, notes))
    for key in dict.fromkeys([*(order or ()), *gap.parts]):
        if key not in placed:
            program, is_drum = programs[key]
            out.append(Track(key, program, is_drum, new_notes(written.get(key), lines, gap, vocab)))
    return out


def new_notes(grid: GridNotes | None, lines: np.ndarray, gap: Gap, vocab: Vocabulary) -> dict[str, np.ndarray]:
    """The written notes (tidied by the caller) that start in the gap, in quarters."""
    grid = grid if grid is not None else GridNotes.concat([])
    inside = in_gap(grid.onset, lines, gap)
    return GridNotes(*(getattr(grid, c)[inside] for c in ("onset", "duration", "pitch", "velocity_bin"))).to_quarters(
        vocab.config)


def merge(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Two note tables as one, ordered by onset then pitch."""
    cols = {c: np.concatenate([np.asarray(a[c]), np.asarray(b[c]).astype(np.asarray(a[c]).dtype)]) for c in a}
    order = np.lexsort((cols["pitch"], cols["onset"]))
    return {c: v[order] for c, v in cols.items()}
