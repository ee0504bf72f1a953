"""Encode at scale: peak memory and files/s for 1k, 10k (and 50k) files.

    python benchmarks/encode_scale.py [--sizes 1000 10000 50000] [--workers 2] [--max-seconds 240]

The input is N copies (symlinks) of the files of ``--midi-dir`` (../shared/data/beethoven),
in folders of 1,000. Each size runs ``encode_session`` in a fresh process, which reports
its own peak RSS (the main process: scanning, the manifest, the pool; VmHWM, since
getrusage would count the launching process's memory from before exec) and the largest
worker's (getrusage of its children). The goal is a main-process peak flat in the number of files (within 1.2× from
the smallest size to the largest): note files are written by the workers as they are made
and the manifest's per-piece list is spooled to disk. A size is skipped when the previous
one's rate says it would take longer than ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, re, resource, sys, time
from pathlib import Path
from deeporb.stages.encode import encode_session
start = time.perf_counter()
m = encode_session(midi_dir=sys.argv[1], session="scale", sessions_dir=sys.argv[2], workers=int(sys.argv[3]),
                   progress=False)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "files": m["totals"]["files"], "encoded": m["totals"]["encoded_files"],
                  "notes": m["totals"]["notes"],
                  "main_kib": int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text())[1]),
                  "worker_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def make_input(folder: Path, sources: list[Path], n: int) -> None:
    """``n`` symlinks to ``sources`` in turn, 1,000 to a folder."""
    for i in range(n):
        src = sources[i % len(sources)]
        sub = folder / f"part{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"c{i:06d}-{src.name}").symlink_to(src.resolve())


def run(n: int, sources: list[Path], workers: int, work: Path) -> dict:
    midi, sessions = work / f"midi{n}", work / f"sessions{n}"
    make_input(midi, sources, n)
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(midi), str(sessions), str(workers)],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(midi, ignore_errors=True)
        shutil.rmtree(sessions, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi-dir", type=Path, default=ROOT.parent / "shared" / "data" / "beethoven")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-seconds", type=float, default=240.0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    sources = sorted(p for p in args.midi_dir.iterdir() if p.suffix.lower() in (".mid", ".midi"))
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(args.sizes):
            if rows and n / (rows[-1]["files"] / rows[-1]["seconds"]) > args.max_seconds:
                skipped.append(n)
                continue
            r = run(n, sources, args.workers, Path(tmp))
            rows.append(r)
            print(json.dumps(r), flush=True)
    base = rows[0]["main_kib"]
    lines = [
        "## Encode at scale",
        "",
        f"`python benchmarks/encode_scale.py --workers {args.workers}`: copies of the {len(sources)} files of "
        f"`{args.midi_dir.name}`; {machine()}. One fresh process per size; peak RSS: VmHWM of the main process, getrusage of its workers.",
        "",
        "| files | seconds | files/s | notes | main peak RSS (MiB) | vs smallest | largest worker (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['files']:,} | {r['seconds']:.1f} | {r['files'] / r['seconds']:.0f} | {r['notes']:,} | "
            f"{r['main_kib'] / 1024:.0f} | {r['main_kib'] / base:.2f}× | {r['worker_kib'] / 1024:.0f} |"
        )
    if skipped:
        lines += ["", f"Not run (over {args.max_seconds:.0f} s at the measured rate): "
                  + ", ".join(f"{n:,}" for n in skipped) + " files."]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("encode_scale", text)


if __name__ == "__main__":
    main()
