"""The session corpus on disk: one JSON note file per track, grouped by instrument.

    SESSION/manifest.json                 config, instruments, pieces, counts, skipped files
    SESSION/INSTRUMENT/PIECE-HASH6.json   one track: source, program, tempos, notes, words
    SESSION/cache/                        token ids built by the DataModule

A session is built in a temporary folder beside its final place and swapped in with a
rename, so an interrupted encode never leaves a half-written session, and re-encoding the
same input gives byte-identical files (no timestamps, stable order).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from deeporb.encoding.words import EncodingConfig, Vocabulary, encode
from deeporb.errors import UserError
from deeporb.instruments import instrument_key, safe_key
from deeporb.midi import MidiReadError, atomic_write_bytes, read_midi

MANIFEST = "manifest.json"
CACHE_DIR = "cache"
FORMAT_VERSION = 1


@dataclass
class FileResult:
    """What encoding one MIDI file produced: note files to write, or why it was skipped."""

    source: str
    records: list[dict] = field(default_factory=list)
    skip_reason: str | None = None
    stats: Counter = field(default_factory=Counter)


def note_file_name(source: str, track: int) -> str:
    """``PIECE-HASH6.json``: readable stem plus a hash of (source, track) so names never clash."""
    digest = hashlib.sha1(f"{source}#{track}".encode()).hexdigest()[:6]
    stem = safe_key(Path(source).stem) or "piece"
    return f"{stem}-{digest}.json"


@functools.lru_cache(maxsize=8)
def vocabulary(config: EncodingConfig) -> Vocabulary:
    """The instrument-free vocabulary of a config, built once per process."""
    return Vocabulary(config)


def encode_file(
    path: Path, root: Path, config: EncodingConfig, key_mode: str = "program"
) -> FileResult:
    """Read one MIDI file and turn each non-empty track into a note-file record."""
    source = path.relative_to(root).as_posix()
    result = FileResult(source)
    try:
        piece = read_midi(path)
    except MidiReadError as e:
        result.skip_reason = str(e)
        return result
    vocab = vocabulary(config)
    max_steps = config.max_duration_quarters * config.resolution
    for index, track in enumerate(piece.tracks):
        if len(track) == 0:
            result.stats["empty_tracks"] += 1
            continue
        notes = track.notes
        words, meter = encode(notes, piece.time_signatures, vocab)
        dur_steps = np.floor(notes["duration"] * config.resolution + 0.5)
        result.stats["zero_length_notes"] += int((notes["duration"] <= 0).sum())
        result.stats["durations_clipped"] += int((dur_steps > max_steps).sum())
        key = instrument_key(key_mode, track.program, track.is_drum, track.name)
        result.records.append(
            {
                "format": FORMAT_VERSION,
                "source": source,
                "track": index,
                "name": track.name,
                "program": track.program,
                "is_drum": track.is_drum,
                "instrument": key,
                "ticks_per_quarter": piece.ticks_per_quarter,
                "tempos": [list(t) for t in piece.tempos],
                "time_signatures": [list(t) for t in piece.time_signatures],
                "meter": [list(t) for t in meter.changes(config)],
                "notes": notes,
                "words": words,
            }
        )
        result.stats["time_signatures_replaced"] = meter.replaced
        result.stats["time_signatures_moved"] = meter.moved
    if not result.records:
        result.skip_reason = "no notes in any track"
    return result


def _encode_file_star(args) -> FileResult:
    return encode_file(*args)


def encode_files(
    files: list[Path],
    root: Path,
    config: EncodingConfig,
    key_mode: str = "program",
    workers: int = 1,
    on_result: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Encode many files, in a process pool when ``workers > 1``; results in input order."""
    jobs = [(f, root, config, key_mode) for f in files]
    results: list[FileResult] = []
    if workers > 1 and len(files) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunk = max(1, len(jobs) // (workers * 8))
            for r in pool.map(_encode_file_star, jobs, chunksize=chunk):
                results.append(r)
                if on_result:
                    on_result(r)
    else:
        for job in jobs:
            results.append(encode_file(*job))
            if on_result:
                on_result(results[-1])
    return results


def dump_json(obj) -> bytes:
    """Compact JSON, keys in insertion order: the same object always gives the same bytes.

    orjson rather than the standard library: note files hold every note as floats, and
    orjson writes them an order of magnitude faster (docs/benchmarks.md, encode speed),
    with the same shortest round-trip float text.
    """
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)


def build_manifest(
    name: str, results: Iterable[FileResult], config: EncodingConfig, key_mode: str, source: dict
) -> tuple[dict, list[tuple[str, dict]]]:
    """Gather records into (manifest, [(relative note-file path, record)])."""
    files: list[tuple[str, dict]] = []
    instruments: dict[str, dict] = {}
    pieces, skipped, stats = [], [], Counter()
    qpms: list[float] = []
    meters: Counter = Counter()
    for r in results:
        stats.update(r.stats)
        if r.skip_reason:
            skipped.append({"file": r.source, "reason": r.skip_reason})
            continue
        piece_files, piece_notes = [], 0
        for rec in r.records:
            rel = f"{rec['instrument']}/{note_file_name(rec['source'], rec['track'])}"
            files.append((rel, rec))
            piece_files.append(rel)
            n = len(rec["notes"]["pitch"])
            piece_notes += n
            inst = instruments.setdefault(
                rec["instrument"],
                {"tracks": 0, "notes": 0, "programs": Counter(), "is_drum": rec["is_drum"]},
            )
            inst["tracks"] += 1
            inst["notes"] += n
            inst["programs"][rec["program"]] += 1
        first = r.records[0]
        qpms += [qpm for _, qpm in first["tempos"][:1]]
        meters.update(f"{n}/{d}" for _, n, d in first["meter"])
        pieces.append({"source": r.source, "notes": piece_notes, "files": piece_files})
    for inst in instruments.values():
        inst["program"] = inst.pop("programs").most_common(1)[0][0]
    manifest = {
        "format": FORMAT_VERSION,
        "session": name,
        "source": source,
        "encoding": config.to_dict(),
        "instrument_key": key_mode,
        "totals": {
            "files": len(pieces) + len(skipped),
            "encoded_files": len(pieces),
            "skipped_files": len(skipped),
            "tracks": len(files),
            "notes": sum(p["notes"] for p in pieces),
            "instruments": len(instruments),
        },
        "instruments": dict(sorted(instruments.items())),
        "statistics": {
            "qpm_median": float(np.median(qpms)) if qpms else 120.0,
            "time_signatures": dict(meters.most_common()),
        },
        "quantization": dict(sorted(stats.items())),
        "pieces": pieces,
        "skipped": skipped,
    }
    return manifest, files


def write_session(session_dir: Path, manifest: dict, files: list[tuple[str, dict]]) -> None:
    """Write a whole session atomically: build beside it, then swap folders by rename.

    A token cache from an earlier session of the same name is carried over: it is keyed
    by a hash of its inputs, so stale entries are never used.
    """
    session_dir = Path(session_dir)
    session_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = session_dir.with_name(f".{session_dir.name}.tmp-{os.getpid()}")
    old = session_dir.with_name(f".{session_dir.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for rel, rec in files:
            atomic_write_bytes(tmp / rel, dump_json(rec))
        atomic_write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=1).encode() + b"\n")
        if (session_dir / CACHE_DIR).is_dir():
            shutil.move(str(session_dir / CACHE_DIR), str(tmp / CACHE_DIR))
        if session_dir.exists():
            os.replace(session_dir, old)
        os.replace(tmp, session_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def load_manifest(session_dir: Path) -> dict:
    path = Path(session_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"no session at {session_dir} (missing {MANIFEST}); run encode.py first")
    return json.loads(path.read_text())


def load_note_file(path: Path) -> dict:
    return orjson.loads(Path(path).read_bytes())


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
