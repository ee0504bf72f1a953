"""Form (issue 19): today's model (every bar written out) beside the model with repeated bars as
words (``data.repeat_bars=16``), with windows of 256 and of 1,024 words, the state carried, and
look-back attention, and a piece's last bar marked ``final``, at the same training steps, on the
chorales and Nottingham.

    python benchmarks/form.py [--steps 800] [--corpora bach_chorales nottingham] [--samples 16]
        [--variants today repeats repeats_1024] [--seed 0] [--reuse-runs] [--no-write] [--threads 1] [--parallel 2]

Each variant trains the demo-sized network (lstm_small at 192 units) on 4,096 words a step
(16 x 256, or 4 x 1,024) for the same number of optimizer steps, so the same words and
arithmetic; ``--parallel 2`` trains two runs side by side, one thread each. Each keeps its best
checkpoint by ``val/loss``, and is then measured:

* test bits/note over whole test pieces (``evaluate.py``'s scoring; a ``rep_K`` word counts
  its bar's notes, so both variants divide by the same notes);
* ``--samples`` whole pieces (the model ends them: ``min_bars=4``, ``bars`` twice the longest
  held-out piece, at most 128), their form beside the whole held-out pieces
  (:func:`deeporb.evaluation.compare.compare_form_samples`): bar repetition rate, repeat
  distances, key consistency of the first and last 16 bars, lengths, tonic endings;
* ``--samples`` pieces of exactly 64 bars: key consistency of bars 49-64 against the opening
  key, beside the held-out pieces' mean over all their 16-bar sections (the chorales are
  shorter than 49 bars);
* seconds per bar written for 16 and for 128 bars (4 pieces), to show that long generation
  stays linear.

Writes its section of docs/benchmarks.md and ``OUT/results.json`` (keeping the figures of variants
not measured this time, so ``--variants NAME`` adds one).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_baselines import ROOT, run, training_options, use_threads  # noqa: E402
from report import machine, write_section  # noqa: E402

sys.path.insert(0, str(ROOT))
from deeporb.checkpoints import facts as facts_of  # noqa: E402
from deeporb.checkpoints import load_generator  # noqa: E402
from deeporb.evaluation.compare import compare_form_samples, reference_pieces  # noqa: E402
from deeporb.evaluation.form import piece_form  # noqa: E402
from deeporb.evaluation.likelihood import (  # noqa: E402
    datamodule_for,
    score_lstm,
    split_note_counts,
    split_sequences,
)
from deeporb.generation.compose import Settings, compose  # noqa: E402

UNMARKED = "data.final_bar=false"  # the default, said so that each variant names its vocabulary
VARIANTS = {  # name -> its train.py overrides; every variant trains on 4,096 words a step
    "today": ("data.repeat_bars=0", UNMARKED),  # every bar written out: the model before repeated bars
    "repeats": ("data.repeat_bars=16", UNMARKED),
    "repeats_1024": ("data.repeat_bars=16", "data.seq_len=1024", "data.batch_size=4", UNMARKED),  # whole pieces in a window
    "carry": ("data.repeat_bars=16", "data.carry_state=true", "data.fill_share=0", UNMARKED),  # pieces in order, the state carried (16 lanes)
    "attention_1024": ("data.repeat_bars=16", "data.seq_len=1024", "data.batch_size=4",
                       "model.attention_heads=4", UNMARKED),  # as repeats_1024, with look-back attention over the window
    "final_1024": ("data.repeat_bars=16", "data.seq_len=1024", "data.batch_size=4",
                   "data.final_bar=true"),  # as repeats_1024, a piece's last bar marked `final`
}
DEMO_NETWORK = ("model=lstm_small", "model.embed_dim=192", "model.hidden_size=192",
                "data.seq_len=256", "data.batch_size=16", "model.scheduler.warmup_steps=30")
FIGURES = ("form/repeat_rate", "form/repeat_rate_part", "form/repeat_distance_4", "form/repeat_distance_8",
           "form/key_consistency_first16", "form/key_consistency_last16", "form/tonic_ending", "form/mean_bars")


def train(corpus: str, variant: str, steps: int, out: Path, reuse: bool, seed: int = 0) -> Path:
    """``python train.py`` for ``steps`` optimizer steps; returns the run folder."""
    run_dir = out / corpus / variant
    if reuse and (run_dir / "metrics.json").is_file():
        print(f"  {corpus}/{variant}: reusing {run_dir}", flush=True)
        return run_dir
    print(f"  {corpus}/{variant}: training {steps} steps ...", flush=True)
    t0 = time.perf_counter()
    run([sys.executable, "train.py", f"data={corpus}", *DEMO_NETWORK, *VARIANTS[variant],
         "trainer=cpu", "logger=csv", f"trainer.max_steps={steps}", "trainer.max_epochs=-1", "trainer.max_time=null",
         f"trainer.val_check_interval={max(steps // 8, 1)}", "trainer.check_val_every_n_epoch=null",
         "callbacks.early_stopping=null", "callbacks.rich_progress_bar=null", "trainer.enable_progress_bar=false",
         f"seed={seed}", f"hydra.run.dir={run_dir}"], run_dir.with_suffix(".log"))
    (run_dir / "seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    return run_dir


def test_bits_per_note(model) -> float:
    """Bits/note over the whole test pieces, each word scored once, as ``evaluate.py`` does."""
    dm = datamodule_for(facts_of(model))
    seqs = split_sequences(dm, "test", "tracks")
    return score_lstm(model, seqs, counts=split_note_counts(dm, "test", "tracks")).bits_per_note


def measure(run_dir: Path | str, samples: int, seed: int = 0, top_p: float = Settings.top_p) -> dict:
    """The figures of one model: a run folder, or a name such as ``pretrained:bach_chorales``;
    its pieces drawn with nucleus ``top_p`` (1.0: from the model's whole distribution)."""
    model = load_generator(run_dir)
    facts = facts_of(model)
    reference = reference_pieces(facts, "test")
    ref_forms = [piece_form(p, resolution=facts.encoding.resolution) for p in reference]
    longest = int(max(f["bars"] for f in ref_forms))
    bars = min(128, 2 * longest)
    whole = compose(model, Settings(bars=bars, min_bars=4, seed=1 + 10 * seed, top_p=top_p), samples)
    form = compare_form_samples(whole, facts)
    long = compose(model, Settings(bars=64, min_bars=64, seed=2 + 10 * seed, top_p=top_p), samples)
    long_form = compare_form_samples(long, facts)["samples"]
    sections = [s for f in ref_forms for s in f["key_consistency_sections"] if math.isfinite(s)]
    timing = {}
    for n in (16, 128):
        t0 = time.perf_counter()
        compose(model, Settings(bars=n, seed=3), 4)
        timing[n] = (time.perf_counter() - t0) / n
    ended = sum(p.ended for p in whole)
    return {
        "test_bits_per_note": test_bits_per_note(model),
        "whole": form,
        "bars_asked": bars,
        "ended_by_model": ended,
        "long_key_consistency_49_64": long_form["form/key_consistency_49_64"],
        "long_key_consistency_first16": long_form["form/key_consistency_first16"],
        "reference_key_consistency_sections": float(np.mean(sections)),
        "seconds_per_bar": {str(k): v for k, v in timing.items()},
        "train_seconds": (float((run_dir / "seconds.txt").read_text())
                          if isinstance(run_dir, Path) and (run_dir / "seconds.txt").is_file() else None),
    }


def fmt(x, digits=3) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def markdown(results: dict, steps: int, samples: int) -> str:
    lines = [
        "## Form: repeated bars as words (`benchmarks/form.py`)",
        "",
        f"{machine()}. `python benchmarks/form.py --steps {steps} --samples {samples}` (and `--variants carry`, "
        "`--also pretrained:bach_chorales`: the bundled model, 2,000 steps of 8,192 words in 1,024-word windows, "
        "measured beside them, not at their budget). Each variant trains the "
        f"demo-sized network (lstm_small at 192 units) on 4,096 words a step for the same {steps} optimizer steps "
        "(about 5 CPU-minutes; two runs side by side, one thread each): `today` writes every bar out "
        "(`data.repeat_bars=0`, the model before this change) in windows of 256 words, `repeats` writes a bar that "
        "repeats one up to 16 bars back as `rep_K` (`data.repeat_bars=16`, the default now), `repeats_1024` the "
        "same in windows of 1,024 words (4 a step), which hold most pieces whole, `carry` the same read in order "
        "in 16 lanes of 256 words with the LSTM state carried from step to step (`data.carry_state=true`), "
        "`attention_1024` as `repeats_1024` with look-back attention over the window (`model.attention_heads=4`, "
        "`--variants attention_1024`; its steps cost more, see its training seconds), `final_1024` as `repeats_1024` "
        "with each piece's last bar opened by the word `final` (`data.final_bar=true`; the others "
        "train without it, the default). "
        "Whole pieces: the model ends them "
        "(`min_bars=4`, `bars` twice the longest held-out piece); long pieces: exactly 64 bars. Goals (issue 19): "
        "repetition within ±30% of the corpus, key consistency of bars 49–64 within 0.05 of the held-out pieces, "
        "tonic endings within 0.1, length overlap ≥ 0.7, test bits/note no worse.",
        "",
    ]
    for corpus, by_variant in results.items():
        ref = next(iter(by_variant.values()))["whole"]["reference"]
        sections = next(iter(by_variant.values()))["reference_key_consistency_sections"]
        names = ["test bits/note", *FIGURES, "length overlap (4-bar bins)", "pieces ended by the model",
                 "64-bar pieces: key consistency bars 1–16", "64-bar pieces: key consistency bars 49–64",
                 "seconds per bar, 16 / 128 bars", "training seconds"]
        head = f"| {corpus} | " + " | ".join(by_variant) + " | held-out |"
        lines += [head, "|---|" + "---|" * (len(by_variant) + 1)]
        for name in names:
            row = []
            for r in by_variant.values():
                if name == "test bits/note":
                    row.append(fmt(r["test_bits_per_note"]))
                elif name in FIGURES:
                    row.append(fmt(r["whole"]["samples"][name]))
                elif name.startswith("length overlap"):
                    row.append(fmt(r["whole"]["length_overlap"]))
                elif name.startswith("pieces ended"):
                    row.append(f"{r['ended_by_model']} of {samples} (of {r['bars_asked']} bars)")
                elif name.endswith("bars 1–16"):
                    row.append(fmt(r["long_key_consistency_first16"]))
                elif name.endswith("bars 49–64"):
                    row.append(fmt(r["long_key_consistency_49_64"]))
                elif name.startswith("seconds per bar"):
                    row.append(f"{r['seconds_per_bar']['16']:.3f} / {r['seconds_per_bar']['128']:.3f}")
                else:
                    row.append(fmt(r["train_seconds"], 0))
            if name in FIGURES:
                real = fmt(ref[name])
            elif name.endswith("bars 49–64"):
                real = f"{fmt(sections)} (all 16-bar sections)"
            elif name.endswith("bars 1–16"):
                real = fmt(ref["form/key_consistency_first16"])
            else:
                real = ""
            lines.append(f"| {name} | " + " | ".join(row) + f" | {real} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--corpora", nargs="+", default=["bach_chorales", "nottingham"])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="training seed; the samples' seeds follow it")
    parser.add_argument("--parallel", type=int, default=2, choices=(1, 2))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--top-p", type=float, default=Settings.top_p,
                        help="nucleus of the measured pieces (default: the sampler's; 1.0: the model's whole distribution)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the section from OUT/results.json")
    parser.add_argument("--also", nargs="*", default=[], metavar="CKPT",
                        help="more models to measure beside their corpus's variants, e.g. pretrained:bach_chorales")
    training_options(parser, "outputs/benchmarks/form")
    args = parser.parse_args()
    use_threads(args.threads)
    out = ROOT / args.out
    if args.report_only:
        text = markdown(json.loads((out / "results.json").read_text()), args.steps, args.samples)
        print(text)
        if not args.no_write:
            write_section("form", text)
        return
    saved = out / "results.json"  # earlier variants' figures stay beside the ones measured now
    results: dict = json.loads(saved.read_text()) if saved.is_file() else {}
    for corpus in args.corpora:
        run([sys.executable, "encode.py", f"dataset={corpus}"], out / f"encode-{corpus}.log")
    jobs = [threading.Thread(target=train, args=(c, v, args.steps, out, args.reuse_runs, args.seed))
            for c in args.corpora for v in args.variants]
    for i in range(0, len(jobs), args.parallel):  # side by side, so they share the machine alike
        [j.start() for j in jobs[i : i + args.parallel]]
        [j.join() for j in jobs[i : i + args.parallel]]
    for corpus in args.corpora:
        results.setdefault(corpus, {})
        for variant in args.variants:
            print(f"  {corpus}/{variant}: measuring ...", flush=True)
            results[corpus][variant] = measure(out / corpus / variant, args.samples, args.seed, args.top_p)
    for ckpt in args.also:
        print(f"  {ckpt}: measuring ...", flush=True)
        results.setdefault(facts_of(load_generator(ckpt)).names[0], {})[ckpt] = measure(ckpt, args.samples,
                                                                                         top_p=args.top_p)
    results = {c: dict(sorted(results[c].items(), key=lambda kv: list(VARIANTS).index(kv[0])
                              if kv[0] in VARIANTS else len(VARIANTS))) for c in results}  # variants first
    saved.write_text(json.dumps(results, indent=1, default=float))
    text = markdown(results, args.steps, args.samples)
    print(text)
    if not args.no_write:
        write_section("form", text)


if __name__ == "__main__":
    main()
