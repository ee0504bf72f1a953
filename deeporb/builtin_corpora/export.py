"""Export a built-in corpus to a cached folder of MIDI files: ``export_dataset(name, cache_dir)``.

Export is slow (music21 parses MusicXML/ABC and expands repeats in pure Python; from ~0.1 s
for a chorale or a folk tune to minutes for a whole Beethoven quartet), so the result is cached
under ``cache_dir/<name>/``: existing ``.mid`` files are never re-exported, and pieces that cannot
be exported are recorded in ``.export.json`` so a second call does not re-parse them. That
manifest also records the exporter and music21 versions; a cache made by other versions is
deleted and rebuilt. A folder without that manifest is someone's: if it holds anything, it is
refused untouched. Every file is written atomically (``deeporb.fileio``), so an interrupted
export never leaves a truncated ``.mid`` behind. Pieces convert in ``deeporb.workers``' pool.

This module never imports torch, nor music21 until a piece has to be converted.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from deeporb.builtin_corpora.convert import convert_piece
from deeporb.builtin_corpora.specs import DATASETS, Piece, SkipPiece, corpus_root, get_spec
from deeporb.errors import UserError
from deeporb.fileio import atomic_write_bytes, atomic_write_text
from deeporb.workers import WorkerPool

log = logging.getLogger(__name__)

#: Bumped whenever the exported MIDI would change: a cache made by another version (or another
#: music21 version) is deleted and re-exported rather than silently mixed with new files.
EXPORT_VERSION = 2
MANIFEST_FILE = ".export.json"  # {"signature": ..., "skipped": {stem: reason}}

# (stem, skip reason or None, repeats expanded, seconds): what converting one piece reports
Result = tuple[str, str | None, bool, float]


@dataclass
class ExportReport:
    """What :func:`export_dataset` did: the folder, and which pieces were written, cached or skipped."""

    name: str
    folder: Path
    exported: list[str] = field(default_factory=list)  # stems written by this call
    cached: list[str] = field(default_factory=list)  # stems already present
    skipped: dict[str, str] = field(default_factory=dict)  # stem -> reason (this call or recorded)
    no_repeats: list[str] = field(default_factory=list)  # exported without expanding repeats
    seconds: float = 0.0
    piece_seconds: dict[str, float] = field(default_factory=dict)  # stem -> export time

    @property
    def files(self) -> list[str]:
        """Stems of the pieces this call guarantees are in ``folder`` (cached + exported)."""
        return self.cached + self.exported


def export_dataset(
    name: str,
    cache_dir: str | Path,
    limit: int | None = None,
    workers: int = 1,
    progress: bool = False,
) -> ExportReport:
    """Write corpus ``name`` as MIDI files under ``cache_dir/name/``; report what was done.

    Cached: files already there are not re-exported, and recorded skips are not retried, so a
    repeated call only lists files (well under a second, music21 is not even imported).
    ``limit`` exports the first N *exportable* pieces in a stable natural sort order of their
    corpus paths (skipped pieces do not count). ``workers > 1`` converts pieces in a process pool.
    Pieces music21 cannot parse or write are skipped, logged as a warning with the count, and
    recorded in ``.export.json`` and the report. ``progress`` prints progress lines on stderr.
    Unknown ``name`` raises ValueError listing the available datasets.
    """
    spec = get_spec(name)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    start = time.perf_counter()
    out_dir = Path(cache_dir).expanduser() / spec.name
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport(name=spec.name, folder=out_dir)

    pieces = spec.list_pieces(corpus_root())
    known_skips = _open_cache(spec.name, out_dir)
    new_skips: dict[str, str] = {}
    done = 0  # files guaranteed present (cached + exported)
    show = _Progress(spec.name, start) if progress else None
    convert = partial(_export_one, spec.name, str(out_dir))
    inline = WorkerPool(1)  # a batch of one piece is not worth starting worker processes
    index = 0
    try:
        with contextlib.ExitStack() as stack:
            pool: WorkerPool | None = None  # started by the first batch of several pieces
            while limit is None or done < limit:
                # Next batch: just enough unexported pieces to reach `limit` if they all succeed,
                # so the folder gets exactly the first `limit` exportable pieces in sorted order.
                batch: list[Piece] = []
                while index < len(pieces) and (limit is None or done + len(batch) < limit):
                    piece = pieces[index]
                    index += 1
                    if (out_dir / f"{piece.stem}.mid").exists():
                        report.cached.append(piece.stem)
                        done += 1
                    elif piece.stem in known_skips:
                        report.skipped[piece.stem] = known_skips[piece.stem]
                    else:
                        batch.append(piece)
                if not batch:
                    break
                if show:
                    show.todo += len(batch)
                if pool is None and workers > 1 and len(batch) > 1:
                    pool = stack.enter_context(WorkerPool(workers))
                runner = pool if pool is not None and len(batch) > 1 else inline
                for stem, reason, expanded, secs in runner.imap(
                    convert, batch, ordered=False, on_result=show
                ):
                    report.piece_seconds[stem] = secs
                    if reason is None:
                        report.exported.append(stem)
                        done += 1
                        if not expanded:
                            report.no_repeats.append(stem)
                    else:
                        report.skipped[stem] = new_skips[stem] = reason
    finally:
        if new_skips:
            _save_manifest(out_dir, {**known_skips, **new_skips})

    order = {p.stem: i for i, p in enumerate(pieces)}
    report.exported.sort(key=order.__getitem__)
    report.seconds = time.perf_counter() - start
    _log_report(report, done, limit)
    return report


def _export_one(name: str, out_dir: str, piece: Piece) -> Result:
    """Export one piece (in a worker process when ``workers > 1``).

    Never raises for a bad piece: a music21 parse/convert error becomes a skip reason, so one
    broken score cannot abort a 400-piece export. Errors writing the file (disk full, folder
    deleted) are not the piece's fault and would hit every piece, so they propagate.
    """
    start = time.perf_counter()
    try:
        data, expanded = convert_piece(DATASETS[name], piece, corpus_root())
    except SkipPiece as exc:
        reason = str(exc)
    except Exception as exc:  # music21 can raise almost anything on odd input
        reason = f"{type(exc).__name__}: {exc}"[:300]
    else:
        atomic_write_bytes(Path(out_dir) / f"{piece.stem}.mid", data)
        return piece.stem, None, expanded, time.perf_counter() - start
    return piece.stem, reason, False, time.perf_counter() - start


class _Progress:
    """Progress on stderr: every skip, else at most one line a second (1,000+ pieces)."""

    def __init__(self, name: str, start: float):
        self.name, self.start = name, start
        self.done = self.todo = 0
        self.last = 0.0

    def __call__(self, result: Result) -> None:
        stem, reason, _, secs = result
        self.done += 1
        now = time.perf_counter()
        if reason is None and now - self.last < 1.0 and self.done < self.todo:
            return
        self.last = now
        status = f"skipped ({reason})" if reason else f"{secs:.2f} s"
        print(
            f"[{self.name}] {self.done}/{self.todo} converted, "
            f"{now - self.start:.0f} s elapsed; {stem}: {status}",
            file=sys.stderr,
            flush=True,
        )


# --------------------------------------------------------------------------------------------
# The cache folder's manifest


def _signature() -> dict[str, Any]:
    """What the cached files depend on: this exporter's version and music21's."""
    try:
        m21 = importlib.metadata.version("music21")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        m21 = "unknown"
    return {"export_version": EXPORT_VERSION, "music21": m21}


def _save_manifest(out_dir: Path, skipped: dict[str, str]) -> None:
    payload = {"signature": _signature(), "skipped": dict(sorted(skipped.items()))}
    atomic_write_text(out_dir / MANIFEST_FILE, json.dumps(payload, indent=1))


def _open_cache(name: str, out_dir: Path) -> dict[str, str]:
    """Validate the cache folder and return its recorded skips.

    A folder made by another exporter/music21 version is stale: its .mid files are deleted
    (they may carry since-fixed conversion bugs) and a fresh manifest is written before
    anything new is exported, so every .mid present is always current. Only a folder whose
    manifest says it is an export folder is ever emptied; a folder without one that holds
    anything is someone's, and is refused untouched.
    """
    try:
        data = json.loads((out_dir / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        data = None
    if not (isinstance(data, dict) and "signature" in data):
        theirs = [p for p in out_dir.iterdir() if not p.name.startswith(f".{MANIFEST_FILE}.")]  # ours: a cut write
        if theirs:
            raise UserError(
                f"{str(out_dir)!r} holds files the dataset export did not write (no readable {MANIFEST_FILE}); "
                "pass datasets_dir=PATH to a new or empty folder"
            )
        _save_manifest(out_dir, {})
        return {}
    if data.get("signature") == _signature():
        skipped = data.get("skipped")
        return {str(k): str(v) for k, v in skipped.items()} if isinstance(skipped, dict) else {}
    stale = sorted(out_dir.glob("*.mid"))
    if stale:
        log.warning(
            "%s: %d cached file(s) in %s were made by another exporter or music21 version; "
            "deleting and re-exporting them",
            name, len(stale), out_dir,
        )  # fmt: skip
        for path in stale:
            path.unlink()
    _save_manifest(out_dir, {})
    return {}


def _log_report(report: ExportReport, done: int, limit: int | None) -> None:
    """Skips and unexpanded repeats as warnings (never silent, even from the cache), then a summary."""
    name, out_dir = report.name, report.folder
    if report.skipped:
        shown = "; ".join(f"{k} ({v})" for k, v in list(report.skipped.items())[:5])
        more = f"; ... {len(report.skipped) - 5} more" if len(report.skipped) > 5 else ""
        log.warning(
            "%s: skipped %d piece(s) that could not be exported (listed in %s): %s%s",
            name, len(report.skipped), out_dir / MANIFEST_FILE, shown, more,
        )  # fmt: skip
    if report.no_repeats:
        log.warning(
            "%s: %d piece(s) had malformed repeat marks and were exported without repeats: %s",
            name, len(report.no_repeats), ", ".join(report.no_repeats),
        )  # fmt: skip
    if limit is not None:
        on_disk = sum(1 for _ in out_dir.glob("*.mid"))
        if on_disk > done:
            log.warning(
                "%s: %s holds %d .mid files from an earlier, larger export (limit=%d); "
                "whoever reads the folder sees all of them",
                name, out_dir, on_disk, limit,
            )  # fmt: skip
    log.info(
        "%s: %d exported, %d cached, %d skipped in %.1f s -> %s",
        name, len(report.exported), len(report.cached), len(report.skipped),
        report.seconds, out_dir,
    )  # fmt: skip
