"""``make demo`` from a fresh clone (issue 21): how long it takes, and how its two sets of pieces
(the model it trains, the bundled ``pretrained:bach_chorales``) compare with real chorales.

    python benchmarks/demo.py [--clone DIR] [--samples 16] [--no-write]

Clones the repository's HEAD into a new folder and runs ``make demo`` there as a newcomer would
(the virtual environment, encoding, 240 training steps, sampling), timing it. Then, in the
clone, ``sample.py compare=true`` draws ``--samples`` pieces of 16 bars for the four voices
from each model (seed 1) and compares them with the held-out test chorales: the cross-part
statistics (consonance of simultaneous notes in different parts, one-key fit of the
ensemble) and the mean overlap of the per-piece statistics. Writes its section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"trained by make demo (240 steps)": "outputs/demo/run",
          "bundled pretrained:bach_chorales": "pretrained:bach_chorales"}
SHOWN = ("cross_part_consonance", "key_consistency", "pitch_class_agreement", "tonal_distance")


def compare(clone: Path, ckpt: str, out: str, samples: int) -> dict:
    subprocess.run([".venv/bin/python", "sample.py", f"ckpt_path={ckpt}", f"num_samples={samples}", "bars=16",
                    "seed=1", "compare=true", f"out_dir={out}", "instruments=[soprano,alto,tenor,bass]",
                    "render.piano_roll=false", "render.page=false"],
                   cwd=clone, check=True, stdout=subprocess.DEVNULL)
    return json.loads((clone / out / "comparison.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clone", default=None, help="where to clone (default: a new temporary folder)")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    clone = Path(args.clone or tempfile.mkdtemp(prefix="deeporb-demo-")) / "deeporb"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    t0 = time.perf_counter()
    with open(clone.parent / "make-demo.log", "w") as log:
        subprocess.run(["make", "demo"], cwd=clone, check=True, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    guard = [line for line in (clone.parent / "make-demo.log").read_text().splitlines() if line.startswith("time guard")]
    results = {name: compare(clone, ckpt, f"outputs/demo/compare-{i}", args.samples)
               for i, (name, ckpt) in enumerate(MODELS.items())}
    first = next(iter(results.values()))
    real = {r["feature"]: r["ref_mean"] for r in first["rows"]}
    lines = [
        "## `make demo` from a fresh clone (`benchmarks/demo.py`)",
        "",
        f"{machine()}. `python benchmarks/demo.py --samples {args.samples}`: `git clone`, then `make demo` "
        f"(virtual environment, encoding the chorales, 240 training steps, 4 + 4 pieces) took **{seconds / 60:.1f} "
        f"minutes**{'; ' + guard[0] if guard else ' (the time guard did not cut training)'}. Then {args.samples} pieces "
        "of 16 bars for the four voices from each model (seed 1, `sample.py compare=true`) beside the held-out test "
        "chorales cut to the same length:",
        "",
        "| | " + " | ".join(SHOWN) + " | mean overlap, per-piece histograms / scalars |",
        "|---|" + "---|" * (len(SHOWN) + 1),
    ]
    for name, res in results.items():
        means = {r["feature"]: r["gen_mean"] for r in res["rows"]}
        s = res["summary"]
        lines.append(f"| {name} | " + " | ".join(f"{means.get(f, float('nan')):.3f}" for f in SHOWN)
                     + f" | {s['histogram']:.3f} / {s['scalar']:.3f} |")
    lines.append("| real test chorales | " + " | ".join(f"{real.get(f, float('nan')):.3f}" for f in SHOWN) + " | |")
    text = "\n".join(lines) + "\n"
    print(text)
    (clone.parent / "results.json").write_text(json.dumps({"seconds": seconds, "results": results}, indent=1))
    if not args.no_write:
        write_section("demo", text)


if __name__ == "__main__":
    main()
