"""A piece as training reads it: its note files together, started at its first sounding bar.

Both views build the token cache a piece at a time (:mod:`deeporb.data.cache`): the tracks
view makes a row of each note file, the score view one row of the whole piece. Either way a
piece begins where its music begins (issue 14): leading bars in which *no* part plays are
dropped, every part shifted by the same whole number of bars, so the model is never taught
that music opens with empty bars. An intro in which only some parts play is music and stays.
Only whole bars before the piece's first onset go, and the time signature in force at the
new first bar is kept, so every later bar line falls where it fell.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from deeporb.data.split import NoteFileRef
from deeporb.encoding.words import EncodingConfig, GridNotes, Meter, quantize
from deeporb.session_store import load_note_file


@dataclass
class Track:
    """One note file of a piece: where it is, what it says, its notes on the grid (shifted)."""

    ref: NoteFileRef
    record: dict
    grid: GridNotes

    def facts(self) -> dict:
        """What the cache index keeps of a track (the tracks view's row facts)."""
        return {
            "file": self.ref.rel,
            "instrument": self.ref.instrument,
            "program": int(self.record.get("program", 0)),
            "is_drum": bool(self.record.get("is_drum", False)),
        }


@dataclass
class Piece:
    """A piece's tracks from its first sounding bar: ``bars`` bars (``steps`` grid steps)
    were dropped from every track, and ``meter`` is the meter from the new first bar."""

    source: str
    tracks: list[Track]
    meter: Meter
    bars: int
    steps: int
    qpm: float

    def parts(self) -> dict[str, GridNotes]:
        """{instrument key: notes}: the tracks of one key in the piece merged into one part."""
        keys = sorted({t.ref.instrument for t in self.tracks})
        return {k: GridNotes.concat([t.grid for t in self.tracks if t.ref.instrument == k]) for k in keys}

    def facts(self) -> dict:
        """What every cache row of the piece records about it."""
        return {
            "piece": self.source,
            "qpm": self.qpm,
            "meter": [f"{n}/{d}" for n, d in self.meter.signatures],
            "bars_dropped": self.bars,
        }


def pieces(refs: Iterable[NoteFileRef], config: EncodingConfig) -> Iterator[Piece]:
    """The note files as pieces, one at a time (memory holds one piece): pieces sorted by id,
    tracks by instrument then file, each started at its first sounding bar."""
    by_piece: dict[str, list[NoteFileRef]] = {}
    for ref in refs:
        by_piece.setdefault(ref.piece, []).append(ref)
    for source in sorted(by_piece):
        group = sorted(by_piece[source], key=lambda r: (r.instrument, r.path.name))
        records = [load_note_file(r.path) for r in group]
        grids = [quantize(rec["notes"], config) for rec in records]
        meter = Meter.from_changes([tuple(c) for c in records[0].get("meter") or []], config)
        first = min((int(g.onset[0]) for g in grids if len(g)), default=0)
        steps, bars = first_sounding_bar(first, meter, config)
        tempos = records[0].get("tempos") or [[0.0, 120.0]]
        in_force = [q for t, q in tempos if t * config.resolution <= steps] or [tempos[0][1]]
        yield Piece(
            source,
            [Track(r, rec, shift_grid(g, steps)) for r, rec, g in zip(group, records, grids, strict=True)],
            meter.after(steps),
            bars,
            steps,
            float(in_force[-1]),
        )


def first_sounding_bar(first_onset: int, meter: Meter, config: EncodingConfig) -> tuple[int, int]:
    """(grid step, index) of the bar holding a piece's first onset: the whole bars before it
    are silent in every part."""
    lines, _ = meter.bar_lines(first_onset, config)
    bar = int(np.searchsorted(lines, first_onset, side="right")) - 1
    return int(lines[bar]), bar


def shift_grid(grid: GridNotes, steps: int) -> GridNotes:
    if not steps:
        return grid
    return GridNotes(grid.onset - steps, grid.duration, grid.pitch, grid.velocity_bin)
