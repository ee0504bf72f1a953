"""Memory and time per batch of SessionDataModule as the corpus grows (10M and 100M words).

    python benchmarks/data_scale.py [--words 10000000 100000000] [--workdir /tmp/deeporb_scale]

Builds a synthetic session per size (random notes, encoded to real words and written as
real note files), then, in a fresh process per size: opens it with SessionDataModule (the
first time builds the memory-mapped token cache), reads batches, and records resident
memory. Flat memory means the corpus is never copied into the process.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

WORDS_PER_TRACK = 50_000
TEMPLATES = 16


def rss_mb() -> dict[str, float]:
    """Resident memory of this process (MiB): anonymous (the process's own copies) and
    file-backed (pages of the memory-mapped token cache: shared page cache the kernel
    can drop at any time, mapped in as windows are read)."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                key, value, _ = line.split()
                fields[key[:-1]] = int(value) / 1024
    return {"anon": fields["RssAnon"], "file": fields["RssFile"]}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_session(sessions_dir: Path, name: str, words: int) -> Path:
    """A session of ``words`` words in tracks of ~50k words; skipped when already there."""
    from deeporb.encoding.words import EncodingConfig, Vocabulary, encode
    from deeporb.fileio import atomic_write_bytes
    from deeporb.session_store import MANIFEST, dump_json, note_file_name

    session = sessions_dir / name
    if (session / MANIFEST).is_file():
        return session
    config = EncodingConfig()
    vocab = Vocabulary(config)
    rng = np.random.default_rng(0)
    templates = []
    for _ in range(TEMPLATES):  # distinct random tracks, reused under many piece names
        n = WORDS_PER_TRACK // 3
        notes = {
            "onset": np.sort(rng.integers(0, n * 6, n)) / 12,
            "duration": rng.integers(1, 48, n) / 12,
            "pitch": rng.integers(36, 96, n),
            "velocity": rng.integers(40, 110, n),
        }
        text, meter = encode(notes, [(0.0, 4, 4)], vocab)
        templates.append((notes, text, len(text.split()), meter.changes(config)))
    total, pieces, i = 0, [], 0
    while total < words:
        notes, text, count, meter = templates[i % TEMPLATES]
        source = f"synthetic/piece{i:06d}.mid"
        rel = f"acoustic_grand_piano/{note_file_name(source, 0)}"
        record = {
            "format": 1, "source": source, "track": 0, "name": "piano", "program": 0,
            "is_drum": False, "instrument": "acoustic_grand_piano", "ticks_per_quarter": 480,
            "tempos": [[0.0, 120.0]], "time_signatures": [[0.0, 4, 4]], "meter": meter,
            "notes": notes, "words": text,
        }
        atomic_write_bytes(session / rel, dump_json(record))
        pieces.append({"source": source, "notes": len(notes["pitch"]), "files": [rel]})
        total += count
        i += 1
    manifest = {
        "format": 1, "session": name, "source": {"synthetic": words}, "encoding": config.to_dict(),
        "instrument_key": "program",
        "totals": {"files": i, "encoded_files": i, "skipped_files": 0, "tracks": i,
                   "notes": sum(p["notes"] for p in pieces), "instruments": 1},
        "instruments": {"acoustic_grand_piano": {"tracks": i, "notes": sum(p["notes"] for p in pieces),
                                                 "is_drum": False, "program": 0}},
        "statistics": {"qpm_median": 120.0, "time_signatures": {"4/4": i}},
        "quantization": {}, "pieces": pieces, "skipped": [],
    }
    atomic_write_bytes(session / MANIFEST, json.dumps(manifest).encode())
    return session


def measure(sessions_dir: Path, name: str, batches: int) -> dict:
    """Run in a fresh process: open the session, read batches, report memory and times."""
    import torch  # noqa: F401  (imported before the baseline reading, as in training)

    from deeporb.data.datamodule import SessionDataModule

    base = rss_mb()
    t0 = time.perf_counter()
    dm = SessionDataModule(session=name, sessions_dir=str(sessions_dir), seq_len=256, batch_size=32, transpose=3)
    dm.prepare_data()
    dm.setup("fit")
    t_open = time.perf_counter() - t0
    after_open = rss_mb()
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)
    t1 = time.perf_counter()
    for _ in range(batches):
        next(it)
    per_batch = (time.perf_counter() - t1) / batches
    return {
        "words": sum(t["length"] for t in dm.rows),
        "tracks": len(dm.rows),
        "windows": len(dm.dataset("train")),
        "open_s": t_open,
        "rss_base_mb": base,
        "rss_open_mb": after_open,
        "rss_batches_mb": rss_mb(),
        "peak_mb": peak_mb(),
        "ms_per_batch": per_batch * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, nargs="+", default=[10_000_000, 100_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/deeporb_scale"))
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: child process
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.workdir, args.measure, args.batches)))
        return
    from report import machine, write_section

    rows = []
    for words in args.words:
        name = f"synthetic_{words // 1_000_000}m"
        t0 = time.perf_counter()
        shutil.rmtree(make_session(args.workdir, name, words) / "cache", ignore_errors=True)
        gen_s = time.perf_counter() - t0
        runs = []
        for _ in range(2):  # first run builds the token cache, second opens it
            out = subprocess.run(
                [sys.executable, __file__, "--workdir", str(args.workdir), "--measure", name, "--batches", str(args.batches)],
                capture_output=True, text=True, check=True,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rows.append((words, gen_s, runs))
        print(words, runs)
    lines = [
        "## Data scale: memory stays flat as the corpus grows",
        "",
        f"`python benchmarks/data_scale.py --words {' '.join(str(w) for w in args.words)}`; {machine()}.",
        "Synthetic sessions of real note files (random notes, real words); seq_len 256, batch 32,",
        f"transposition on; {args.batches} training batches per run, each run in a fresh process.",
        "",
        "Anonymous memory is the process's own; file-backed is pages of the memory-mapped token",
        "cache, which the kernel maps in around each window read and can drop at any time.",
        "",
        "| words | tracks | windows | first open (builds cache) s | reopen s | anon MiB after open | anon MiB after batches | file-backed MiB after batches | peak RSS MiB (build) | ms / batch |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, _, (first, second) in rows:
        lines.append(
            f"| {second['words']:,} | {second['tracks']:,} | {second['windows']:,} | {first['open_s']:.1f} | "
            f"{second['open_s']:.2f} | {second['rss_open_mb']['anon']:.0f} | {second['rss_batches_mb']['anon']:.0f} | "
            f"{second['rss_batches_mb']['file']:.0f} | {first['peak_mb']:.0f} | {second['ms_per_batch']:.2f} |"
        )
    if len(rows) >= 2:
        small, large = rows[0][2][1], rows[-1][2][1]
        a, b = large["rss_batches_mb"]["anon"], small["rss_batches_mb"]["anon"]
        lines += [
            "",
            f"{large['words'] / small['words']:.0f}× the words: anonymous memory after the batches "
            f"{a:.0f} vs {b:.0f} MiB ({a / b:.2f}×); time per batch "
            f"{large['ms_per_batch'] / small['ms_per_batch']:.2f}×.",
        ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("data_scale", text)


if __name__ == "__main__":
    main()
