"""Do samples hold music? Silent samples and sounding parts beside real starts (issue 14).

    python benchmarks/starts.py [--minutes 1.5] [--views score tracks] [--samples 16] [--bars 16]
        [--early 4] [--songs 240] [--ckpt PATH ...] [--reuse-runs] [--no-write]

Two corpora, each model trained by ``python train.py`` in a subprocess under the same
wall-clock budget per model (``evaluate_baselines.train``), once per view:

* **demo**: the built-in Bach chorales, ``experiment=demo`` (``--ckpt`` reuses demo
  checkpoints instead, one per view, each labelled by the view it was trained in);
* **pop**: a pop-shaped corpus with intros (``tests/midi_factory.pop_songs``, bigger than the
  test's): melody, bridge and piano by name (``instrument_key=name``), the melody entering
  after a 0-4 bar intro while the piano plays, the bridge from the start or from the middle,
  one song in three opening with 1-3 bars in which no part plays, one in six carrying a
  1/4 time-signature event though the music is in 4/4; ``experiment=demo``'s model and
  windows on it.

Then ``--samples`` samples of ``--bars`` bars from no primer (temperature 1.0, top-p 0.95,
seed 0, every instrument the model knows), and the same counts on real excerpts of the
same length cut from the start of every training piece, after the training data's rule
(leading bars in which no part plays are dropped, :mod:`deeporb.data.pieces`): silent
samples (no note in any part), parts sounding per sample, and each part's share of samples
in which it sounds, over the whole length and over the first ``--early`` bars (where an
intro still keeps parts silent). Writes its section of docs/benchmarks.md and
``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from evaluate_baselines import fmt, run, train, training_options, use_threads  # noqa: E402
from report import machine, write_section  # noqa: E402

from deeporb.checkpoints import facts as facts_of  # noqa: E402
from deeporb.evaluation.starts import real_starts, sample_starts, start_statistics  # noqa: E402

VIEWS = ("score", "tracks")
POP = "pop_intros"  # the pop corpus's session name


# ---------------------------------------------------------------------------------------
# the benchmark


def sample_model(ckpt: str, out: Path, samples: int, bars: int, early: int) -> dict:
    """Samples from no primer and real training starts of the same length, both counted."""
    from deeporb.checkpoints import load_generator
    from deeporb.stages.sample import RenderConfig, SampleConfig, sample

    model = load_generator(ckpt)
    facts = facts_of(model)
    parts = list(model.vocab.instruments)
    t0 = time.perf_counter()
    results = sample(SampleConfig(out_dir=str(out), num_samples=samples, bars=bars, seed=0,
                                  render=RenderConfig(piano_roll=False)), model=model)
    seconds = time.perf_counter() - t0
    n, d = facts.meter().signatures[0]
    bar = 4 * n / d
    row = {"view": facts.view, "parts": parts, "meter": f"{n}/{d}", "sample_seconds": seconds, "checkpoint": ckpt,
           "notes_median": int(np.median([r.notes for r in results]))}
    for label, length in (("all", bars), ("early", min(early, bars))):
        row[label] = {"bars": length,
                      "samples": start_statistics(sample_starts(results, parts, length * bar), parts),
                      "real": start_statistics(real_starts(facts, parts, length * bar), parts)}
    return row


def corpus_rows(corpus: str, args, out: Path) -> list[dict]:
    """Train (or reuse) one model per view on a corpus and sample it."""
    rows = []
    if corpus == "demo" and args.ckpt:
        runs = [({"global_step": None}, ckpt) for ckpt in args.ckpt]
    else:
        session = "bach_chorales" if corpus == "demo" else POP
        runs = []
        for view in args.views:
            metrics = train(session, "lstm_small", args.minutes, out, args.reuse_runs,
                            overrides=("experiment=demo", f"data.view={view}"), name=f"{corpus}_{view}")
            runs.append((metrics, metrics["best_checkpoint"]))
    for metrics, ckpt in runs:
        print(f"{corpus}: sampling {ckpt}", flush=True)
        row = sample_model(ckpt, out / corpus / f"samples_{Path(ckpt).stem}_{len(rows)}", args.samples,
                           args.bars, args.early)
        row["steps"] = metrics.get("global_step")
        row["reused_seconds"] = metrics.get("seconds", 0.0) if metrics.get("reused") else 0.0
        rows.append(row)
    return rows


def cells(s: dict, parts: Sequence[str]) -> str:
    shares = ", ".join(f"{k} {fmt(s['part_sounds'][k], 2)}" for k in parts)
    return f"{s['silent']} of {s['n']} | {fmt(s['parts_sounding'], 2)} of {len(parts)} | {shares}"


def markdown(res: dict, args, seconds: float) -> str:
    lines = [
        "## Samples hold music: silent samples and sounding parts beside real starts",
        "",
        f"`python benchmarks/starts.py --minutes {args.minutes:g} --samples {args.samples} --bars {args.bars} "
        f"--early {args.early} --songs {args.songs}`; {machine()}; {args.threads} torch thread(s) per process; "
        f"{seconds / 60:.1f} minutes in all. Each model is `experiment=demo` (`lstm_small` 2×192, windows of 256 "
        f"words) trained {args.minutes:g} wall-clock minutes by `python train.py ... data.view=VIEW "
        "trainer.max_time=...`, best checkpoint by val/loss (the machine was shared: the optimizer steps are shown). "
        f"{args.samples} samples of {args.bars} bars from no primer (temperature 1.0, top-p 0.95, seed 0, every part "
        "the model knows) beside the opening of every training piece cut to the same length, after the training "
        "data's rule (leading bars in which no part plays are dropped; an intro where some parts play stays). "
        "A sample (excerpt) is silent when no part has a note in it; a part sounds when it has one. "
        f"The `first {args.early} bars` rows count only the opening bars, where intros keep parts silent.",
    ]
    for corpus, rows in res["corpora"].items():
        if not rows:
            continue
        title = {"demo": "Demo: Bach chorales",
                 "pop": f"Pop-shaped corpus with intros ({res['pop_songs']} songs)"}[corpus]
        lines += ["", f"### {title}", "",
                  "| set | steps | length | silent samples | parts sounding per sample | share of samples each part "
                  "sounds in |", "|---|---:|---|---:|---:|---|"]
        for label in ("all", "early"):
            first = rows[0][label]
            length = f"{first['bars']} bars of {rows[0]['meter']}" if label == "all" else f"first {first['bars']} bars"
            parts = rows[0]["parts"]
            lines.append(f"| real training starts | – | {length} | {cells(first['real'], parts)} |")
            for row in rows:
                steps = "–" if row["steps"] is None else f"{row['steps']:,}"
                lines.append(f"| {row['view']}-view samples | {steps} | {length} | {cells(row[label]['samples'], parts)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.5, help="training budget per model")
    parser.add_argument("--views", nargs="+", default=list(VIEWS), choices=VIEWS)
    parser.add_argument("--corpora", nargs="+", default=["demo", "pop"], choices=["demo", "pop"])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--early", type=int, default=4, help="also count the first EARLY bars alone")
    parser.add_argument("--songs", type=int, default=240, help="songs in the pop corpus")
    parser.add_argument("--ckpt", nargs="+", help="demo checkpoints to reuse instead of training (one per view)")
    training_options(parser, "outputs/benchmarks/starts")
    args = parser.parse_args()
    use_threads(args.threads)
    out = (ROOT / args.out).resolve()
    t0 = time.perf_counter()
    res: dict = {"corpora": {}, "pop_songs": args.songs}
    if "demo" in args.corpora:
        if not args.ckpt:
            print("demo: encoding the Bach chorales", flush=True)
            run([sys.executable, "encode.py", "dataset=bach_chorales", "progress=false"], out / "demo" / "encode.log")
        res["corpora"]["demo"] = corpus_rows("demo", args, out)
    if "pop" in args.corpora:
        from midi_factory import pop_songs

        print(f"pop: writing and encoding {args.songs} songs", flush=True)
        pop_songs(out / "pop" / "midi", args.songs, bars=16)
        run([sys.executable, "encode.py", f"midi_dir={out / 'pop' / 'midi'}", f"session={POP}", "instrument_key=name",
             "progress=false"], out / "pop" / "encode.log")
        res["corpora"]["pop"] = corpus_rows("pop", args, out)
    # a --reuse-runs invocation adds the training time recorded by the runs it reused
    seconds = time.perf_counter() - t0 + sum(r["reused_seconds"] for rows in res["corpora"].values() for r in rows)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    text = markdown(res, args, seconds)
    print(text)
    if not args.no_write:
        write_section("starts", text)


if __name__ == "__main__":
    main()
