"""No slowdown: encode, train, sample and decode speed of this tree against an earlier commit, same run.

    python benchmarks/vs_commit.py --base a7cf48f [--rounds 2] [--no-write]

Checks the base commit out in a temporary git worktree and runs each speed benchmark there and
here, alternating (base, here, base, here, ...), each in its own process with one torch thread,
so both trees meet the same machine load. Each benchmark is that tree's own script, so each side
measures its own code; where the base has no such script, this tree's runs on the base's code
(``PYTHONPATH`` pointed at the base tree), so a new benchmark measures the code before it too:

* encode: ``benchmarks/encode_speed.py``: seconds to read the 24 Beethoven files and write their
  words and note-file JSON (best of its repeats);
* train: ``benchmarks/train_speed.py --skip-quality``: words/s of train.py's Lightning Trainer;
* sample: ``benchmarks/sample_speed.py``: words/s of the batched sampler, top-5, 64 rows, in the
  tracks view (the view both trees have);
* decode: ``benchmarks/decode_speed.py``: words/s of strict decoding of the Beethoven files' note
  files (tracks view), the grammar's word-by-word reader.

Reports the best figure of each side and the ratio here/base (above 1 is faster here).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEETHOVEN = ROOT.parent / "shared" / "data" / "beethoven"  # beside the checkout, not beside the worktree
sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

# name -> (script arguments, regex on its output, "seconds" (lower is better) or "rate")
BENCHMARKS = {
    "encode": (["benchmarks/encode_speed.py", "--repeats", "3", "--no-write", "--midi-dir", "BEETHOVEN"],
               r"DeepOrb \(read \+ words \+ note-file JSON\) \| ([\d.]+)", "seconds"),
    "train": (["benchmarks/train_speed.py", "--skip-quality", "--steps", "20", "--rounds", "1", "--threads", "1",
               "--no-write", "--workdir", "WORKDIR", "--midi-dir", "BEETHOVEN"],
              r"train\.py's Lightning Trainer \| ([\d,]+)", "rate"),
    "sample": (["benchmarks/sample_speed.py", "--samples", "64", "--repeats", "2", "--threads", "1", "--no-write"],
               r"batched, top-5 \| 64 \| [\d,]+ \| [\d.]+ \| ([\d,]+)", "rate"),
    "decode": (["benchmarks/decode_speed.py", "--repeats", "3", "--no-write", "--midi-dir", "BEETHOVEN"],
               r"tracks \(note files' words, `decode_words`\) \| \d+ \| [\d,]+ \| [\d.]+ \| ([\d,]+)", "rate"),
}


def measure(tree: Path, name: str, python: str, work: Path) -> float:
    args, pattern, _ = BENCHMARKS[name]
    args = [a.replace("WORKDIR", str(work / tree.name / name)).replace("BEETHOVEN", str(BEETHOVEN)) for a in args]
    if not (tree / args[0]).exists():  # a benchmark newer than the tree: this tree's script on its code
        args[0] = str(ROOT / args[0])
    env_threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(tree)}
    proc = subprocess.run([python, *args], cwd=tree, capture_output=True, text=True, env={**os.environ, **env_threads})
    m = re.search(pattern, proc.stdout)
    if proc.returncode or not m:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise SystemExit(f"{name} in {tree} failed ({proc.returncode}):\n{tail}")
    return float(m.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    base_rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    here_rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="deeporb-vs-") as tmp:
        work = Path(tmp)
        base = work / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), base_rev], cwd=ROOT, check=True,
                       capture_output=True)
        borrowed = [n for n in args.only if not (base / BENCHMARKS[n][0][0]).exists()]
        try:
            results: dict[str, dict[str, list[float]]] = {}
            for name in args.only:
                results[name] = {"base": [], "here": []}
                for r in range(args.rounds):
                    for side, tree in (("base", base), ("here", ROOT)):
                        value = measure(tree, name, sys.executable, work)
                        results[name][side].append(value)
                        print(f"{name} round {r + 1} {side}: {value:,.3f}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
    only = "" if args.only == list(BENCHMARKS) else " --only " + " ".join(args.only)
    lines = [
        f"## No slowdown: this tree ({here_rev}, uncommitted changes included) vs {base_rev}",
        "",
        f"`python benchmarks/vs_commit.py --base {base_rev} --rounds {args.rounds}{only}`; {machine()}; one torch thread, "
        "each benchmark that tree's own script, the two trees alternating. Best of the rounds; ratio above 1 = faster here."
        + (f" {base_rev} has no script for {', '.join(borrowed)}: this tree's ran on {base_rev}'s code." if borrowed else ""),
        "",
        f"| stage | measure | {base_rev} | here | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    what = {"encode": "seconds, 24 Beethoven files", "train": "Trainer words/s", "sample": "words/s, batch 64, top-5",
            "decode": "strict decode words/s, tracks"}
    for name, r in results.items():
        kind = BENCHMARKS[name][2]
        best = min if kind == "seconds" else max
        b, h = best(r["base"]), best(r["here"])
        ratio = b / h if kind == "seconds" else h / b
        lines.append(f"| {name} | {what[name]} | {b:,.3f} | {h:,.3f} | {ratio:.2f}× |")
    lines += ["", "All rounds: " + "; ".join(f"{n} base {r['base']}, here {r['here']}" for n, r in results.items())]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        # a run of some stages (--only) keeps its own section beside the full one
        write_section("vs_commit" if args.only == list(BENCHMARKS) else "vs_commit_" + "_".join(args.only), text)


if __name__ == "__main__":
    main()
