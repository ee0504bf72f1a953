"""Read MIDI into plain note columns (symusic: fast) and write it back (miditoolkit).

Times are kept in quarter notes computed from ticks in float64, so they are exact for any
ticks-per-quarter: ``onset = tick / tpq``. Nothing here knows about words or torch.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeporb.fileio import atomic_write_bytes, find_files

MIDI_SUFFIXES = (".mid", ".midi")


class MidiReadError(Exception):
    """A file that is not readable MIDI; the message is the reason shown to the user."""


@dataclass
class Track:
    name: str
    program: int
    is_drum: bool
    notes: dict[str, np.ndarray]  # onset, duration (quarters, float64), pitch, velocity (int64)

    def __len__(self) -> int:
        return len(self.notes["pitch"])


@dataclass
class Piece:
    ticks_per_quarter: int
    tempos: list[tuple[float, float]] = field(default_factory=list)  # (quarter, qpm)
    time_signatures: list[tuple[float, int, int]] = field(default_factory=list)  # (quarter, N, D)
    tracks: list[Track] = field(default_factory=list)


def find_midi_files(folder: Path, unreadable: list[tuple[Path, str]] | None = None) -> list[Path]:
    """All .mid/.midi files under ``folder`` (any case), sorted for a stable order; unreadable
    subfolders as :func:`deeporb.fileio.find_files` says."""
    return find_files(folder, MIDI_SUFFIXES, unreadable)


def read_midi(path: str | Path) -> Piece:
    """Read a MIDI file; raise :class:`MidiReadError` with a short reason if it is not one."""
    import symusic  # local import: keeps `import deeporb.midi` cheap for the sampler

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise MidiReadError(f"cannot read: {e.strerror}") from None
    if size == 0:
        raise MidiReadError("empty file")
    with open(path, "rb") as f:
        if f.read(4) != b"MThd":
            raise MidiReadError("not a MIDI file (no MThd header)")
    try:
        score = symusic.Score(str(path))
    except Exception as e:  # symusic raises RuntimeError/ValueError with its own text
        raise MidiReadError(f"corrupt MIDI: {str(e).splitlines()[0][:120]}") from None
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        raise MidiReadError(f"invalid ticks per quarter: {tpq}")
    tempo = score.tempos.numpy()
    ts = score.time_signatures.numpy()
    piece = Piece(
        ticks_per_quarter=tpq,
        tempos=[
            (int(t) / tpq, round(60_000_000 / int(m), 6))
            for t, m in zip(tempo["time"], tempo["mspq"], strict=True)
            if m > 0
        ],
        time_signatures=[
            (int(t) / tpq, int(n), int(d))
            for t, n, d in zip(ts["time"], ts["numerator"], ts["denominator"], strict=True)
        ],
    )
    for track in score.tracks:
        cols = track.notes.numpy()
        notes = {
            "onset": cols["time"].astype(np.float64) / tpq,
            "duration": cols["duration"].astype(np.float64) / tpq,
            "pitch": cols["pitch"].astype(np.int64),
            "velocity": cols["velocity"].astype(np.int64),
        }
        piece.tracks.append(Track(track.name, int(track.program), bool(track.is_drum), notes))
    return piece


def write_midi(
    path: str | Path,
    tracks: list[Track],
    tempos: list[tuple[float, float]] | None = None,
    time_signatures: list[tuple[float, int, int]] | None = None,
    ticks_per_quarter: int = 480,
) -> Path:
    """Write tracks (note columns in quarters) as a multi-track MIDI file with miditoolkit.

    Drum tracks go to channel 10 (miditoolkit's ``is_drum``). Every note lasts at least one
    tick, so no note hangs or vanishes in a player. Track names are written as UTF-8 bytes
    (what :func:`read_midi` decodes), passed through the writer's Latin-1 text as one
    character per byte, so any Unicode name round-trips.
    """
    import miditoolkit

    midi = miditoolkit.MidiFile(ticks_per_beat=ticks_per_quarter)
    tpq = ticks_per_quarter
    for q, qpm in tempos or [(0.0, 120.0)]:
        midi.tempo_changes.append(miditoolkit.TempoChange(float(qpm), int(round(q * tpq))))
    for q, n, d in time_signatures or [(0.0, 4, 4)]:
        midi.time_signature_changes.append(
            miditoolkit.TimeSignature(int(n), int(d), int(round(q * tpq)))
        )
    for track in tracks:
        name = track.name.encode("utf-8", "replace").decode("latin-1")
        inst = miditoolkit.Instrument(program=track.program, is_drum=track.is_drum, name=name)
        cols = track.notes
        starts = np.rint(np.asarray(cols["onset"], dtype=np.float64) * tpq).astype(np.int64)
        ends = np.rint(
            (np.asarray(cols["onset"]) + np.asarray(cols["duration"])) * tpq
        ).astype(np.int64)
        ends = np.maximum(ends, starts + 1)
        for s, e, p, v in zip(starts, ends, cols["pitch"], cols["velocity"], strict=True):
            inst.notes.append(miditoolkit.Note(int(v), int(p), int(s), int(e)))
        midi.instruments.append(inst)
    data = io.BytesIO()
    midi.dump(file=data)
    path = Path(path)
    atomic_write_bytes(path, data.getvalue())
    return path
