"""A piece as the music statistics read it: note columns, or parts of note columns.

The one reader behind :mod:`deeporb.evaluation.music_stats` (one stream of notes per piece)
and :mod:`deeporb.evaluation.cross_part` (the parts of a piece, drums left out), so both
accept the same shapes:

* a mapping of array-like columns ``onset`` and ``duration`` (quarter notes) and ``pitch``
  (MIDI 0-127); ``velocity`` may be there, unused;
* a mapping holding those columns under ``"notes"`` (the note-file layout, with ``is_drum``);
* a mapping holding ``"parts"``: a list of either of the above, each optionally with
  ``is_drum``. Where a piece has both columns and parts, the columns are its one stream;
  where it has parts only, its stream is the concatenation of its pitched parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

NOTE_COLUMNS = ("onset", "duration", "pitch", "velocity")

Columns = tuple[np.ndarray, np.ndarray, np.ndarray]


def note_columns(piece: Any) -> Columns:
    """(onset, duration, pitch) arrays of a piece; durations below 0 become 0."""
    if isinstance(piece, Mapping) and "onset" not in piece:
        if "notes" in piece:
            piece = piece["notes"]
        elif "parts" in piece:
            parts = pitched_parts(piece)
            if not parts:
                return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
            return tuple(np.concatenate(c) for c in zip(*parts, strict=True))
    onset = np.asarray(piece["onset"], dtype=np.float64).reshape(-1)
    duration = np.asarray(piece["duration"], dtype=np.float64).reshape(-1)
    pitch = np.asarray(piece["pitch"], dtype=np.int64).reshape(-1)
    if not (len(onset) == len(duration) == len(pitch)):
        raise ValueError(
            f"piece columns differ in length: onset={len(onset)}, "
            f"duration={len(duration)}, pitch={len(pitch)}"
        )
    if len(pitch) and (pitch.min() < 0 or pitch.max() > 127):
        raise ValueError("pitch must lie in 0..127")
    return onset, np.maximum(duration, 0.0), pitch


def pitched_parts(piece: Any) -> list[Columns]:
    """The parts of a piece that have notes and are not drums, as (onset, duration, pitch).

    ``piece`` is a mapping with ``"parts"`` or the list of parts itself. Drums are left out
    because their "pitches" name instruments, not pitches (as MusPy skips drum tracks).
    """
    parts = piece["parts"] if isinstance(piece, Mapping) else piece
    out = []
    for part in parts:
        if isinstance(part, Mapping) and part.get("is_drum"):
            continue
        cols = note_columns(part)
        if len(cols[2]):
            out.append(cols)
    return out


def has_parts(piece: Any) -> bool:
    """Whether a piece carries parts at all (a mapping with ``"parts"``)."""
    return isinstance(piece, Mapping) and "parts" in piece
