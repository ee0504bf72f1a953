"""The encode stage: find MIDI files, encode them in parallel, write the session, report.

Kept free of torch so ``encode.py`` starts fast.
"""

from __future__ import annotations

import os
from pathlib import Path

from deeporb.encoding.words import EncodingConfig
from deeporb.errors import UserError
from deeporb.instruments import safe_key
from deeporb.midi import find_midi_files
from deeporb.session_store import FileResult, build_manifest, encode_files, write_session


def resolve_input(
    midi_dir: str | None, dataset: str | None, dataset_limit: int | None, datasets_dir: str, workers: int
) -> tuple[Path, dict, str | None]:
    """-> (folder of MIDI files, source description, the dataset's instrument-key mode)."""
    if bool(midi_dir) == bool(dataset):
        raise UserError("give exactly one of midi_dir=DIR or dataset=NAME")
    if dataset:
        from deeporb.builtin_corpora.export import DATASETS, export_dataset

        if dataset not in DATASETS:
            raise UserError(f"unknown dataset {dataset!r}; available: {', '.join(sorted(DATASETS))}")
        folder = export_dataset(dataset, datasets_dir, limit=dataset_limit, workers=workers, progress=True)
        return Path(folder), {"dataset": dataset, "limit": dataset_limit}, DATASETS[dataset].instrument_key
    folder = Path(midi_dir).expanduser()
    if not folder.is_dir():
        raise UserError(f"midi_dir {str(folder)!r} is not a folder; pass midi_dir=PATH to a folder of .mid files")
    return folder, {"midi_dir": str(midi_dir)}, None


def encode_session(
    midi_dir: str | None = None,
    dataset: str | None = None,
    dataset_limit: int | None = None,
    session: str | None = None,
    sessions_dir: str = "data/sessions",
    datasets_dir: str = "data/datasets",
    instrument_key: str | None = None,
    workers: int = 0,
    encoding: dict | None = None,
    progress: bool = False,
) -> dict:
    """Encode a MIDI folder or a built-in dataset into ``sessions_dir/session``; return the manifest."""
    workers = workers or os.cpu_count() or 1
    folder, source, dataset_key_mode = resolve_input(midi_dir, dataset, dataset_limit, datasets_dir, workers)
    key_mode = instrument_key or dataset_key_mode or "program"
    if key_mode not in ("program", "name"):
        raise UserError(f"instrument_key must be 'program' or 'name', not {key_mode!r}")
    name = safe_key(session or dataset or folder.resolve().name)
    if not name:
        raise UserError("session name is empty after sanitizing; pass session=NAME")
    config = EncodingConfig.from_dict(encoding)
    files = find_midi_files(folder)
    if not files:
        raise UserError(f"no .mid or .midi files under {str(folder)!r}")

    results = _encode_with_progress(files, folder, config, key_mode, workers, progress)
    manifest, note_files = build_manifest(name, results, config, key_mode, source)
    if not note_files:
        reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in manifest["skipped"][:3])
        raise UserError(f"no notes encoded from {len(files)} file(s) under {str(folder)!r} ({reasons})")
    write_session(Path(sessions_dir) / name, manifest, note_files)
    return manifest


def _encode_with_progress(files, folder, config, key_mode, workers, progress) -> list[FileResult]:
    if not progress:
        return encode_files(files, folder, config, key_mode, workers)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("encoding", total=len(files))
        return encode_files(files, folder, config, key_mode, workers, on_result=lambda _: bar.advance(task))


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
    if q:
        console.print("adjusted on the grid: " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in q.items()))
