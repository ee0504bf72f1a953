"""The session on disk: one JSON note file per track, grouped by instrument.

    SESSION/manifest.json                 config, instruments, pieces, counts, skipped files
    SESSION/INSTRUMENT/PIECE-HASH6.json   one track: source, program, tempos, notes, words
    SESSION/cache/                        token ids built by the DataModule

A session is built in a staging folder beside its final place and swapped in by rename
(:func:`deeporb.fileio.staged_folder`), so an interrupted encode never leaves a half-written
session, and re-encoding the same input gives byte-identical files (no timestamps, stable
order). Note files are written as they are made and the manifest is gathered from small
per-file entries, its per-piece list spooled to disk, so writing a session takes memory
independent of its size.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from deeporb.encoding.words import EncodingConfig
from deeporb.errors import UserError
from deeporb.instruments import RESERVED_KEYS, safe_key

MANIFEST = "manifest.json"
CACHE_DIR = "cache"  # one of instruments.RESERVED_KEYS, so no instrument folder is ever named so
FORMAT_VERSION = 1
_PIECES_SPOOL = ".pieces.jsonl"
assert CACHE_DIR in RESERVED_KEYS


def note_file_name(source: str, track: int) -> str:
    """``PIECE-HASH6.json``: readable stem plus a hash of (source, track) so names never clash."""
    digest = hashlib.sha1(f"{source}#{track}".encode()).hexdigest()[:6]
    stem = safe_key(Path(source).stem) or "piece"
    return f"{stem}-{digest}.json"


def session_name_for(folder: str | Path) -> str:
    """The session encode.py makes from a MIDI folder: its sanitised name."""
    return safe_key(Path(str(folder)).expanduser().resolve().name)


def dump_json(obj) -> bytes:
    """Compact JSON, keys in insertion order: the same object always gives the same bytes.

    orjson rather than the standard library: note files hold every note as floats, and
    orjson writes them an order of magnitude faster (docs/benchmarks.md, encode speed),
    with the same shortest round-trip float text.
    """
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)


def write_note_file(staging_dir: Path, record: dict) -> str:
    """Write one track's record as ``INSTRUMENT/PIECE-HASH6.json`` into a session's staging
    folder; return that relative path. A plain write: swapping the staging folder in is
    the atomic step, so each file needs no temp file, rename or fsync of its own."""
    rel = f"{record['instrument']}/{note_file_name(record['source'], record['track'])}"
    path = Path(staging_dir) / rel
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(dump_json(record))
    return rel


def load_note_file(path: Path) -> dict:
    """One note file; an unreadable one (or one without words) is a one-line error naming the fix."""
    try:
        record = orjson.loads(Path(path).read_bytes())
        record["words"]  # noqa: B018 - a note file without words is not one
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read note file {path}: {e}; fix or delete it, or re-run encode.py") from None
    return record


@dataclass(frozen=True)
class TrackEntry:
    """What the manifest keeps of one written note file."""

    file: str  # INSTRUMENT/PIECE-HASH6.json
    instrument: str
    program: int
    is_drum: bool
    notes: int
    pitch_sum: int = 0  # of its notes' MIDI pitches: the manifest keeps each instrument's mean pitch


class ManifestBuilder:
    """Gathers per-file entries into ``manifest.json`` in ``session_dir``, in the order added.

    Totals, instruments and statistics are running sums; the per-piece list goes to a spool
    file and is streamed into the manifest, so memory does not grow with the number of
    pieces. Skipped files are kept in memory (they are few, and the summary lists them).
    """

    def __init__(self, session_dir: Path):
        self.session_dir = Path(session_dir)
        self._spool = open(self.session_dir / _PIECES_SPOOL, "wb")  # noqa: SIM115 - closed in write()
        self.instruments: dict[str, dict] = {}
        self.skipped: list[dict] = []
        self.stats: Counter = Counter()
        self.meters: Counter = Counter()
        self.qpms = array("d")
        self.pieces = self.tracks = self.notes = 0

    def add_piece(self, source: str, tracks: list[TrackEntry], qpm: float | None, meters: list[str], stats: Counter) -> None:
        self.stats.update(stats)
        for t in tracks:
            inst = self.instruments.setdefault(
                t.instrument, {"tracks": 0, "notes": 0, "programs": Counter(), "is_drum": t.is_drum, "pitch_sum": 0}
            )
            inst["tracks"] += 1
            inst["notes"] += t.notes
            inst["pitch_sum"] += t.pitch_sum
            inst["programs"][t.program] += 1
        notes = sum(t.notes for t in tracks)
        piece = {"source": source, "notes": notes, "files": [t.file for t in tracks]}
        self._spool.write(orjson.dumps(piece, option=orjson.OPT_APPEND_NEWLINE))
        if qpm is not None:
            self.qpms.append(qpm)
        self.meters.update(meters)
        self.pieces += 1
        self.tracks += len(tracks)
        self.notes += notes

    def add_skip(self, source: str, reason: str, stats: Counter) -> None:
        self.stats.update(stats)
        self.skipped.append({"file": source, "reason": reason})

    def write(self, name: str, source: dict, config: EncodingConfig, key_mode: str, style: str | None) -> dict:
        """Write ``manifest.json``; return it without its per-piece list (which may be large)."""
        self._spool.close()
        instruments = {}
        for key, inst in sorted(self.instruments.items()):
            programs, pitch_sum = inst.pop("programs"), inst.pop("pitch_sum")
            instruments[key] = {**inst, "program": programs.most_common(1)[0][0],
                                "mean_pitch": round(pitch_sum / inst["notes"], 2) if inst["notes"] else None}
        manifest = {
            "format": FORMAT_VERSION,
            "session": name,
            "style": style or name,
            "source": source,
            "encoding": config.to_dict(),
            "instrument_key": key_mode,
            "totals": {
                "files": self.pieces + len(self.skipped),
                "encoded_files": self.pieces,
                "skipped_files": len(self.skipped),
                "tracks": self.tracks,
                "notes": self.notes,
                "instruments": len(instruments),
            },
            "instruments": instruments,
            "statistics": {
                "qpm_median": float(np.median(self.qpms)) if len(self.qpms) else 120.0,
                "time_signatures": dict(self.meters.most_common()),
            },
            "quantization": dict(sorted(self.stats.items())),
        }
        spool = self.session_dir / _PIECES_SPOOL
        head = json.dumps({**manifest, "pieces": None, "skipped": self.skipped}, indent=1)
        before, after = head.split('\n "pieces": null,\n', 1)
        with open(self.session_dir / MANIFEST, "w") as out, open(spool, "rb") as lines:
            out.write(before + '\n "pieces": [')
            for i, line in enumerate(lines):
                item = json.dumps(orjson.loads(line), indent=1).replace("\n", "\n  ")
                out.write(("," if i else "") + "\n  " + item)
            out.write("\n ],\n" if self.pieces else "],\n")
            out.write(after + "\n")
        spool.unlink()
        return {**manifest, "skipped": self.skipped}

    def discard(self) -> None:
        self._spool.close()


def is_session(folder: Path) -> bool:
    """True when ``folder`` holds a DeepOrb session: a manifest naming its format and session."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("format"), int) and isinstance(data.get("session"), str)


def replaceable_session(folder: Path) -> bool:
    """Whether encode may replace ``folder`` by a new session: a real folder (not a link) that
    is a session, or empty. Anything else is someone's, and replacing it would delete it."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return False
    try:
        return is_session(folder) or not any(folder.iterdir())
    except OSError:
        return False


def load_manifest(session_dir: Path) -> dict:
    path = Path(session_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"no session at {session_dir} (missing {MANIFEST}); run encode.py first")
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}; re-run encode.py for this session") from None


def scan_note_files(session_dir: Path, instruments: Iterable[str] | None = None) -> list[Path]:
    """Note files in the instrument folders of a session, sorted; optionally only some
    instruments. The DataModule's ``cache/`` and hidden temp folders are not instruments."""
    session_dir = Path(session_dir)
    wanted = set(instruments) if instruments is not None else None
    files = []
    for folder in sorted(p for p in session_dir.iterdir() if p.is_dir()):
        if folder.name == CACHE_DIR or folder.name.startswith("."):
            continue
        if wanted is not None and folder.name not in wanted:
            continue
        files += sorted(f for f in folder.glob("*.json") if f.is_file())
    return files


def list_sessions(sessions_dir: Path) -> list[str]:
    d = Path(sessions_dir)
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / MANIFEST).is_file())
