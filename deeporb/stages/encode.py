"""The encode stage: MIDI files (or the original DeepOrb's note files) -> a session of note
files, one file at a time.

Each file is read, checked and encoded in a worker, which writes its note files straight
into the session's staging folder and hands back a small :class:`FileResult`; the manifest
is gathered from those. So memory stays flat in the number of files, and the work per
file is bounded: a piece longer than ``max_piece_quarters`` is skipped before any
word is made. Whatever goes wrong with one file (unreadable, too long, any exception)
becomes a listed skip, and so does a subfolder that cannot be read; only faults of the run
itself (the output folder unwritable, the disk full) end it, with one line.

A session replaces only a session: before any work, encode refuses a session path that is,
holds or lies inside its input, or that holds anything but a DeepOrb session (someone's
folder, a file, a link), so it never deletes what it did not write.

Kept free of torch so ``encode.py`` starts fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeporb.encoding.words import EncodingConfig, Vocabulary, encode
from deeporb.errors import UserError
from deeporb.fileio import staged_folder
from deeporb.instruments import instrument_key, safe_key
from deeporb.midi import MidiReadError, Piece, find_midi_files, read_midi
from deeporb.original_notes import NoteFileError, find_note_files, read_note_file
from deeporb.session_store import (
    CACHE_DIR,
    FORMAT_VERSION,
    MANIFEST,
    ManifestBuilder,
    TrackEntry,
    replaceable_session,
    session_name_for,
    write_note_file,
)
from deeporb.workers import WorkerPool

MAX_PIECE_QUARTERS = 20_000  # a note after a huge silence would otherwise cost gigabytes of empty bars


@dataclass
class EncodeConfig:
    """Every setting of ``encode.py`` and its default (configs/encode.yaml only adds Hydra's).

    midi_dir: folder scanned recursively for .mid/.midi files; or
    dataset: a built-in corpus (bach_chorales, nottingham, beethoven_quartets),
        dataset_limit: its first N pieces (None: all); or
    original_dir: a session folder of the original DeepOrb (INSTRUMENT/*.json note files,
        :mod:`deeporb.original_notes`); its instrument folders are the instruments.
    session: the session's name (default: the dataset name or the folder's name).
    style: the style label recorded in the manifest (default: the session name).
    instrument_key: ``program`` (GM name) or ``name`` (track name); None: program, or the
        dataset's choice.
    workers: processes (0: all cores).
    max_piece_quarters: longest piece encoded (quarters); a longer file is a listed skip, which
        bounds the work per file (empty bars still cost words). Not part of ``encoding``: it
        fixes neither grid nor vocabulary, so sessions that differ only in it train together.
    encoding: what fixes the grid and the vocabulary (:class:`EncodingConfig`).
    """

    midi_dir: str | None = None
    dataset: str | None = None
    original_dir: str | None = None
    dataset_limit: int | None = None
    session: str | None = None
    style: str | None = None
    sessions_dir: str = "data/sessions"
    datasets_dir: str = "data/datasets"
    instrument_key: str | None = None
    workers: int = 0
    progress: bool = True
    max_piece_quarters: int = MAX_PIECE_QUARTERS
    encoding: EncodingConfig = field(default_factory=EncodingConfig)


@dataclass
class FileResult:
    """What encoding one MIDI file left behind: its written note files, or why it was skipped."""

    source: str
    tracks: list[TrackEntry] = field(default_factory=list)
    qpm: float | None = None  # the piece's first tempo
    meters: list[str] = field(default_factory=list)  # its time signatures on the grid, "N/D"
    skip_reason: str | None = None
    stats: Counter = field(default_factory=Counter)


class SkipFile(Exception):
    """A readable file that is declined; the message is the skip reason."""


@functools.lru_cache(maxsize=8)
def vocabulary(config: EncodingConfig) -> Vocabulary:
    """The instrument-free vocabulary of a config, built once per process."""
    return Vocabulary(config)


def piece_quarters(piece: Piece, config: EncodingConfig) -> float:
    """Where the words of a piece end, in quarters: its last note end, durations clipped as
    the words clip them. Read from the note columns, before anything is encoded."""
    ends = [
        float(np.max(t.notes["onset"] + np.minimum(t.notes["duration"], config.max_duration_quarters)))
        for t in piece.tracks
        if len(t)
    ]
    return max(ends, default=0.0)


def encode_tracks(piece: Piece, source: str, config: EncodingConfig, key_mode: str,
                  max_quarters: int = MAX_PIECE_QUARTERS) -> tuple[list[dict], Counter]:
    """Each non-empty track of a piece as a note-file record, and what the grid adjusted.

    Raises :class:`SkipFile` for a piece longer than ``max_quarters``: empty bars
    are words, so a note after a huge silence would cost memory and disk without bound.
    """
    length = piece_quarters(piece, config)
    if length > max_quarters:
        raise SkipFile(
            f"piece lasts {length:.0f} quarters, over max_piece_quarters={max_quarters}"
        )
    # a time signature change at an absurd time makes no word, but would make bar lines up to it
    time_signatures = [ts for ts in piece.time_signatures if ts[0] <= max_quarters]
    vocab = vocabulary(config)
    max_steps = config.max_duration_quarters * config.resolution
    records, stats = [], Counter()
    for index, track in enumerate(piece.tracks):
        if len(track) == 0:
            stats["empty_tracks"] += 1
            continue
        notes = track.notes
        words, meter = encode(notes, time_signatures, vocab)
        dur_steps = np.floor(notes["duration"] * config.resolution + 0.5)
        stats["zero_length_notes"] += int((notes["duration"] <= 0).sum())
        stats["durations_clipped"] += int((dur_steps > max_steps).sum())
        records.append(
            {
                "format": FORMAT_VERSION,
                "source": source,
                "track": index,
                "name": track.name,
                "program": track.program,
                "is_drum": track.is_drum,
                "instrument": instrument_key(key_mode, track.program, track.is_drum, track.name),
                "ticks_per_quarter": piece.ticks_per_quarter,
                "tempos": [list(t) for t in piece.tempos],
                "time_signatures": [list(t) for t in piece.time_signatures],
                "meter": [list(t) for t in meter.changes(config)],
                "notes": notes,
                "words": words,
            }
        )
        stats["time_signatures_replaced"] = meter.replaced
        stats["time_signatures_moved"] = meter.moved
    return records, stats


def read_midi_file(path: Path) -> tuple[Piece, Counter]:
    """:func:`read_midi` as a reader of :func:`encode_file`: nothing is skipped inside a MIDI file."""
    return read_midi(path), Counter()


def encode_file(source: str, root: Path, config: EncodingConfig, key_mode: str, staging: Path,
                max_quarters: int = MAX_PIECE_QUARTERS,
                read: Callable[[Path], tuple[Piece, Counter]] = read_midi_file) -> FileResult:
    """Read (``read``: a piece and the counts of what reading it skipped), encode and write one
    file into the staging folder. Never raises for a bad file: any failure reading or encoding
    it becomes its skip reason. Writing errors are the run's (the output, not the file) and
    propagate."""
    result = FileResult(source)
    try:
        piece, read_stats = read(root / source)
        records, result.stats = encode_tracks(piece, source, config, key_mode, max_quarters)
        result.stats.update(read_stats)
    except (MidiReadError, NoteFileError, SkipFile) as e:
        result.skip_reason = str(e)
        return result
    except Exception as e:  # symusic and numpy can fail in any way on hostile input
        result.skip_reason = (f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)[:300]
        return result
    if not records:
        result.skip_reason = "no notes in any track"
        return result
    for rec in records:
        rel = write_note_file(staging, rec)
        result.tracks.append(TrackEntry(rel, rec["instrument"], rec["program"], rec["is_drum"], len(rec["notes"]["pitch"]),
                                        int(sum(rec["notes"]["pitch"]))))
    first = records[0]
    result.qpm = first["tempos"][0][1] if first["tempos"] else None
    result.meters = [f"{n}/{d}" for _, n, d in first["meter"]]
    return result


def resolve_input(cfg: EncodeConfig) -> tuple[Path, dict, str | None]:
    """-> (folder of MIDI files, source description, the dataset's instrument-key mode).
    A dataset's folder is where :func:`export_input` will export it; nothing is written yet."""
    if sum(bool(x) for x in (cfg.midi_dir, cfg.dataset, cfg.original_dir)) != 1:
        raise UserError("give exactly one of midi_dir=DIR, dataset=NAME or original_dir=DIR "
                        "(a session folder of the original DeepOrb's note files)")
    if cfg.dataset:
        from deeporb.builtin_corpora.specs import DATASETS

        if cfg.dataset not in DATASETS:
            raise UserError(f"unknown dataset {cfg.dataset!r}; available: {', '.join(sorted(DATASETS))}")
        folder = Path(cfg.datasets_dir).expanduser() / DATASETS[cfg.dataset].name
        source = {"dataset": cfg.dataset, "limit": cfg.dataset_limit}
        return folder, source, DATASETS[cfg.dataset].instrument_key
    if cfg.original_dir:
        folder = Path(cfg.original_dir).expanduser()
        if not folder.is_dir():
            raise UserError(f"original_dir {str(folder)!r} is not a folder; pass original_dir=PATH to a session "
                            "folder of the original DeepOrb (INSTRUMENT/*.json note files)")
        if cfg.instrument_key:
            raise UserError("original_dir takes its instruments from its instrument folders; leave instrument_key out")
        return folder, {"original_dir": str(cfg.original_dir)}, None
    folder = Path(cfg.midi_dir).expanduser()
    if not folder.is_dir():
        raise UserError(f"midi_dir {str(folder)!r} is not a folder; pass midi_dir=PATH to a folder of .mid files")
    return folder, {"midi_dir": str(cfg.midi_dir)}, None


def check_session_dir(session_dir: Path, folder: Path, input_setting: str) -> None:
    """Refuse, before any work, a session path whose replacement would delete what DeepOrb did
    not write: the input itself, a folder holding or inside the input, someone's folder, a file
    or a link. Paths are compared resolved (links followed)."""
    where, source = str(session_dir), str(folder)
    out, into = session_dir.resolve(), folder.resolve()
    if out == into or out in into.parents:
        raise UserError(
            f"session folder {where!r} is or holds {input_setting} {source!r}, which encoding would delete; "
            "pass session=NAME or sessions_dir=PATH elsewhere"
        )
    if into in out.parents:
        raise UserError(
            f"session folder {where!r} is inside {input_setting} {source!r}; pass sessions_dir=PATH outside it"
        )
    if os.path.lexists(session_dir) and not replaceable_session(session_dir):
        what = "a link" if session_dir.is_symlink() else "a folder" if session_dir.is_dir() else "a file"
        raise UserError(
            f"{where!r} is {what}, not a DeepOrb session (no {MANIFEST} of one), and encoding would replace it; "
            "pass session=NAME or sessions_dir=PATH"
        )


def list_input(folder: Path, input_setting: str, original: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """-> (the MIDI files under ``folder``, or the original's note files, the subfolders that
    cannot be read and why), as paths relative to it. ``folder`` itself unreadable is a
    one-line error."""
    unreadable: list[tuple[Path, str]] = []
    try:
        found = (find_note_files if original else find_midi_files)(folder, unreadable)
    except OSError as e:
        raise UserError(
            f"cannot read {input_setting} {str(folder)!r}: {e.strerror or e}; "
            f"make it readable or pass {input_setting}=PATH"
        ) from None
    files = [p.relative_to(folder).as_posix() for p in found]
    skipped = [(p.relative_to(folder).as_posix(), f"cannot read folder: {why}") for p, why in unreadable]
    if not files:
        blocked = f" ({len(skipped)} folder(s) cannot be read, e.g. {skipped[0][0]!r})" if skipped else ""
        what = "no .json note files" if original else "no .mid or .midi files"
        raise UserError(f"{what} under {str(folder)!r}{blocked}")
    return files, skipped


def encode_session(cfg: EncodeConfig | None = None, /, **settings) -> dict:
    """Encode a MIDI folder, a built-in dataset or the original's session folder into
    ``sessions_dir/session``.

    ``settings`` override fields of ``cfg`` (``encoding`` may be a dict). Returns the
    manifest without its per-piece list (read the session's manifest.json for that).
    """
    if isinstance(settings.get("encoding"), Mapping):
        settings["encoding"] = EncodingConfig(**settings["encoding"])  # strict: an unknown key is an error
    cfg = dataclasses.replace(cfg or EncodeConfig(), **settings)
    workers = cfg.workers or os.cpu_count() or 1
    folder, source, dataset_key_mode = resolve_input(cfg)
    key_mode = cfg.instrument_key or dataset_key_mode or "program"
    if key_mode not in ("program", "name"):
        raise UserError(f"instrument_key must be 'program' or 'name', not {key_mode!r}")
    name = safe_key(cfg.session or cfg.dataset) if cfg.session or cfg.dataset else session_name_for(folder)
    if not name:
        raise UserError("session name is empty after sanitizing; pass session=NAME")
    style = safe_key(cfg.style) if cfg.style else None
    if cfg.style and not style:
        raise UserError(f"style {cfg.style!r} is empty after sanitizing; pass style=NAME with letters or digits")
    session_dir = Path(cfg.sessions_dir) / name
    original = bool(cfg.original_dir)
    input_setting = "midi_dir" if cfg.midi_dir else "original_dir" if original else "the dataset folder"
    check_session_dir(session_dir, folder, input_setting)
    if cfg.dataset:
        from deeporb.builtin_corpora.export import export_dataset

        export_dataset(cfg.dataset, cfg.datasets_dir, limit=cfg.dataset_limit, workers=workers, progress=True)
    files, unreadable = list_input(folder, input_setting, original)
    # the original's reader names each track by its instrument folder's key, so name mode keeps
    # it; the session's mode stays "program", which keys a primer MIDI's tracks as those folders are
    read, job_key_mode = (functools.partial(read_note_file, root=folder), "name") if original else (read_midi_file, key_mode)

    try:
        with staged_folder(session_dir, replaceable_session) as staging:
            manifest = ManifestBuilder(staging)
            for path, reason in unreadable:
                manifest.add_skip(path, reason, Counter())
            job = functools.partial(encode_file, root=folder, config=cfg.encoding, key_mode=job_key_mode,
                                    staging=staging, max_quarters=cfg.max_piece_quarters, read=read)
            with _progress(cfg.progress, len(files)) as advance, WorkerPool(workers, chunksize=_chunksize(len(files), workers)) as pool:
                for r in pool.imap(job, files, on_result=advance):
                    if r.skip_reason:
                        manifest.add_skip(r.source, r.skip_reason, r.stats)
                    else:
                        manifest.add_piece(r.source, r.tracks, r.qpm, r.meters, r.stats)
            if not manifest.pieces:
                manifest.discard()
                reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in manifest.skipped[:3])
                raise UserError(f"no notes encoded from {len(files)} file(s) under {str(folder)!r} ({reasons})")
            summary = manifest.write(name, source, cfg.encoding, key_mode, style)
            if (session_dir / CACHE_DIR).is_dir():  # keyed by a hash of its inputs: never stale
                shutil.move(str(session_dir / CACHE_DIR), str(staging / CACHE_DIR))
    except OSError as e:  # reading input files never gets here: a bad file is a skip
        where = e.filename or session_dir
        raise UserError(
            f"cannot write session {str(session_dir)!r}: {e.strerror or e} ({where}); "
            "free disk space or pass a writable sessions_dir=PATH"
        ) from None
    return summary


def _chunksize(n_files: int, workers: int) -> int:
    """Files per task: few enough for an even spread, enough to amortise the hand-off."""
    return max(1, min(32, n_files // (workers * 16)))


@contextlib.contextmanager
def _progress(show: bool, total: int) -> Iterator[Callable[[FileResult], None] | None]:
    """A per-file callback advancing a transient rich bar, or None."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("encoding", total=total)
        yield lambda _: bar.advance(task)


def print_summary(manifest: dict, sessions_dir: str) -> None:
    """The closing table: totals, instruments, and every skipped file with its reason."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = manifest["totals"]
    table = Table(title=f"session {manifest['session']!r} -> {Path(sessions_dir) / manifest['session']}")
    for col in ("files", "encoded", "tracks", "notes", "instruments", "skipped"):
        table.add_column(col, justify="right")
    table.add_row(*(str(x) for x in (t["files"], t["encoded_files"], t["tracks"], t["notes"], t["instruments"], t["skipped_files"])))
    console.print(table)
    inst = Table(title="instruments")
    for col in ("instrument", "program", "tracks", "notes"):
        inst.add_column(col, justify="left" if col == "instrument" else "right")
    for key, info in manifest["instruments"].items():
        inst.add_row(key, "drums" if info["is_drum"] else str(info["program"]), str(info["tracks"]), str(info["notes"]))
    console.print(inst)
    if manifest["skipped"]:
        skipped = Table(title=f"skipped files ({len(manifest['skipped'])})")
        skipped.add_column("file")
        skipped.add_column("reason")
        for s in manifest["skipped"]:
            skipped.add_row(s["file"], s["reason"])
        console.print(skipped)
    q = {k: v for k, v in manifest["quantization"].items() if v}
    dropped = {k.removeprefix("notes_skipped_"): q.pop(k) for k in list(q) if k.startswith("notes_skipped_")}
    if dropped:  # notes the original's note files hold unreadably (deeporb.original_notes)
        console.print("notes skipped inside files: " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in dropped.items()))
    if q:
        console.print("adjusted on the grid: " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in q.items()))
