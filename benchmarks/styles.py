"""Does a style word steer the model? One model on two corpora, each style's samples against both.

    python benchmarks/styles.py [--minutes 4] [--samples 16] [--bars 16] [--limit N] [--real 64]
        [--reuse-runs] [--no-write]

Issue 10 asks that a model trained on ``[bach_chorales, nottingham]`` write, for each style
word, music closer to that style's own corpus than to the other. The script:

1. encodes both built-in corpora (``python encode.py dataset=NAME``; ``--limit N`` exports only
   the first N Nottingham tunes, to save time);
2. trains the demo-sized model (``experiment=demo``: ``lstm_small`` with 192 hidden units,
   ``seq_len`` 256, batch 16, score view) on both sessions together by ``python train.py
   data.session=[bach_chorales,nottingham]`` under a wall-clock budget (``trainer.max_time``,
   ``trainer.min_epochs=0``, a high ``trainer.max_epochs``), best checkpoint by ``val/loss``;
   each session adds its style word after ``<bos>``;
3. samples ``--samples`` pieces per style (``style=NAME``, ``instruments=null``: the model draws
   each piece's ensemble; ``--bars`` bars, seed 0, temperature 1.0, top-p 0.95);
4. compares each style's samples with the held-out test pieces of EACH corpus, cut into
   excerpts as long as the samples (all pitched parts of a piece, whatever the instruments the
   samples chose), by the music statistics of :func:`deeporb.evaluation.music_stats.compare_sets`:
   mean overlap over the 6 histogram and 12 scalar features (1 = same distribution, 0 = disjoint).
   Real training excerpts of each corpus, compared the same way, show how far apart the two
   corpora are (the overlap a perfect style could reach).

A style is *closer to its own corpus* when its mean overlap (histograms and scalars, each
feature weighing the same) with its own corpus's test pieces is higher than with the other's.
Writes the ``styles`` section of docs/benchmarks.md and ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from evaluate_baselines import fmt, run, train, training_options, use_threads  # noqa: E402
from report import machine, write_section  # noqa: E402

from deeporb.evaluation.compare import excerpts, reference_pieces  # noqa: E402
from deeporb.evaluation.music_stats import compare_sets  # noqa: E402

CORPORA = ("bach_chorales", "nottingham")
SHOWN = ("pitch_range", "n_pitches_used", "pitch_class_entropy", "polyphony", "note_density", "mean_ioi",
         "scale_consistency")


def as_piece(result) -> dict:
    """A sample's pitched parts, as the music statistics read them."""
    return {"parts": [{**t.notes, "instrument": t.name, "is_drum": t.is_drum}
                      for t in result.tracks if not t.is_drum and len(t)]}


def evenly(items: list, n: int) -> list:
    """At most ``n`` items spread evenly over the list (deterministic, covers every piece)."""
    if len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def summary(rows: list[dict]) -> dict:
    """Mean overlap of the histogram features, of the scalar features, and of both (each
    feature weighing the same); NaN rows skipped. Per-feature overlaps and means kept."""
    def mean(kinds):
        values = [r["overlap"] for r in rows if r["kind"] in kinds and not math.isnan(r["overlap"])]
        return float(np.mean(values)) if values else math.nan

    return {
        "histogram": mean(("histogram",)), "scalar": mean(("scalar",)), "all": mean(("histogram", "scalar")),
        "rows": {r["feature"]: {k: r[k] for k in ("kind", "overlap", "gen_mean", "ref_mean")} for r in rows},
    }


def sample_style(model, style: str, out: Path, samples: int, bars: int) -> tuple[list, float]:
    from deeporb.stages.sample import RenderConfig, SampleConfig, sample

    t0 = time.perf_counter()
    results = sample(SampleConfig(out_dir=str(out), num_samples=samples, bars=bars, seed=0, style=style,
                                  instruments=None, render=RenderConfig(piano_roll=False, audio=False)),
                     model=model)
    return results, time.perf_counter() - t0


def markdown(res: dict, args, seconds: float) -> str:
    a, b = CORPORA
    limit = f" (the first {args.limit} Nottingham tunes: `--limit {args.limit}`)" if args.limit else ""
    cmd = f"python benchmarks/styles.py --minutes {args.minutes:g} --samples {args.samples} --bars {args.bars}"
    cmd += f" --limit {args.limit}" if args.limit else ""
    lines = [
        "## Styles: one model, two corpora, each style against both",
        "",
        f"`{cmd}`; {machine()}; {args.threads} torch thread(s); {seconds / 60:.1f} minutes in all. "
        f"The demo-sized model (`experiment=demo`: `lstm_small` 192 hidden, seq_len 256, batch 16, score view) "
        f"trained {args.minutes:g} wall-clock minutes ({res['steps']:,} steps, best checkpoint by val/loss) on "
        f"`data.session=[{a},{b}]`{limit}: {res['pieces'][a]} and {res['pieces'][b]} pieces; each session adds its "
        "style word after `<bos>`. Then "
        f"{args.samples} samples per style (`style=NAME instruments=null`: the model draws the ensemble; "
        f"{args.bars} bars in the style's own commonest meter: "
        f"{', '.join(f'{k} {m}' for k, m in res['meter'].items())}; seed 0, temperature 1.0, top-p 0.95), each style's set compared with "
        f"the held-out test pieces of each corpus ({res['test'][a]} and {res['test'][b]} pieces, every pitched "
        f"part, cut into excerpts as long as the samples compared with them: "
        f"{', '.join(f'{k} {fmt(q, 0)}' for k, q in res['quarters'].items())} quarters; {res['excerpts'][a]} and "
        f"{res['excerpts'][b]}). Cells: mean overlap over the 6 histogram and 12 scalar features of "
        "`deeporb.evaluation.music_stats` (1 = same distribution, 0 = disjoint); in brackets histograms / scalars. "
        f"The last rows are real training excerpts of each corpus (at most {args.real}), what a perfect style reaches.",
        "",
        f"| set | vs {a} test | vs {b} test | closer to |",
        "|---|---:|---:|---|",
    ]
    for name, label in (*((f"style {s}", f"`style={s}` samples") for s in CORPORA),
                        *((f"real {s}", f"real {s} training excerpts") for s in CORPORA)):
        cells = []
        for corpus in CORPORA:
            s = res["overlap"][name][corpus]
            cells.append(f"**{fmt(s['all'])}** ({fmt(s['histogram'])} / {fmt(s['scalar'])})")
        own = res["overlap"][name]
        closer = max(CORPORA, key=lambda c: own[c]["all"])
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {closer} |")
    lines += [
        "",
        "Ensembles the model drew per style (instruments that played, counted per sample): "
        + "; ".join(f"`{s}`: " + ", ".join(f"{k} {n}" for k, n in res["ensembles"][s].items()) for s in CORPORA)
        + ". Features won (higher overlap with the own corpus than with the other, of "
        + f"{res['features']}): " + ", ".join(f"`{s}` {res['won'][s]}" for s in CORPORA) + ".",
        "",
        "Means of a few features (per excerpt or sample):",
        "",
        f"| feature | {a} test | `style={a}` | `style={b}` | {b} test |",
        "|---|---:|---:|---:|---:|",
    ]
    for feature in SHOWN:
        ra = res["overlap"][f"style {a}"]
        rb = res["overlap"][f"style {b}"]
        lines.append(f"| {feature} | {fmt(ra[a]['rows'][feature]['ref_mean'], 2)} | "
                     f"{fmt(ra[a]['rows'][feature]['gen_mean'], 2)} | {fmt(rb[a]['rows'][feature]['gen_mean'], 2)} | "
                     f"{fmt(rb[b]['rows'][feature]['ref_mean'], 2)} |")
    lines += ["", "Each style is written in its own commonest meter (`SessionFacts.meter(style)`). "
              "The ensemble the style word makes the model draw (above) sets polyphony and much of the pitch "
              "range by itself; the per-feature counts show how far the rest of the statistics follow."]
    holds = all(res["verdict"].values())
    lines += ["", "Claim (each style's samples closer to their own corpus than to the other): "
              + ("**holds**" if holds else "**does not hold**") + " ("
              + ", ".join(f"`{s}`: {fmt(res['overlap'][f'style {s}'][s]['all'])} own vs "
                          f"{fmt(res['overlap'][f'style {s}'][o]['all'])} other"
                          for s, o in (CORPORA, CORPORA[::-1])) + ")."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget")
    parser.add_argument("--samples", type=int, default=16, help="samples per style")
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--limit", type=int, default=None, help="encode only the first N Nottingham tunes")
    parser.add_argument("--real", type=int, default=64, help="real training excerpts per corpus (the ceiling rows)")
    training_options(parser, "outputs/benchmarks/styles")
    args = parser.parse_args()
    use_threads(args.threads)
    out = (ROOT / args.out).resolve()
    t0 = time.perf_counter()
    for corpus in CORPORA:
        print(f"encoding {corpus}", flush=True)
        limit = [f"dataset_limit={args.limit}"] if args.limit and corpus == "nottingham" else []
        run([sys.executable, "encode.py", f"dataset={corpus}", "progress=false", *limit], out / f"encode_{corpus}.log")
    metrics = train("bach_chorales", "lstm_small", args.minutes, out, args.reuse_runs,
                    overrides=("experiment=demo", f"data.session=[{','.join(CORPORA)}]", "data.encode=null"),
                    name="demo_two_styles")
    ckpt = metrics["best_checkpoint"]

    from deeporb.checkpoints import facts, load_generator

    model = load_generator(ckpt)
    session = facts(model)
    if set(session.styles) != set(CORPORA):
        raise SystemExit(f"the checkpoint's styles are {session.styles}, not {CORPORA}")
    samples, seconds_sampling = {}, {}
    for style in CORPORA:
        print(f"sampling style={style}", flush=True)
        samples[style], seconds_sampling[style] = sample_style(model, style, out / f"samples_{style}",
                                                               args.samples, args.bars)
    # each style is written in its own commonest meter, so each has its own bar and length
    bar = {s: 4 * session.meter(s).signatures[0][0] / session.meter(s).signatures[0][1] for s in CORPORA}
    quarters = {}
    for s in CORPORA:
        lengths = [r.bars * 4 * int(r.time_signature.split("/")[0]) / int(r.time_signature.split("/")[1])
                   for r in samples[s]]
        quarters[s] = math.ceil(float(np.median(lengths)) / bar[s] - 1e-9) * bar[s]
    print("comparing", flush=True)
    split = {name: reference_pieces(session, name) for name in ("train", "val", "test")}
    test, train_pieces = ({c: [p for p in split[name] if p["session"] == c] for c in CORPORA}
                          for name in ("test", "train"))
    # a set is compared with excerpts as long as its own pieces: reference[style whose length, corpus]
    reference = {(s, c): [e for p in test[c] for e in excerpts(p, quarters[s])] for s in CORPORA for c in CORPORA}
    real = {c: evenly([e for p in train_pieces[c] for e in excerpts(p, quarters[c])], args.real) for c in CORPORA}
    sets = {**{f"style {s}": ([as_piece(r) for r in samples[s]], s) for s in CORPORA},
            **{f"real {c}": (real[c], c) for c in CORPORA}}
    res: dict = {
        "checkpoint": ckpt, "steps": metrics["global_step"], "meter": {s: ", ".join(sorted({str(r.time_signature) for r in samples[s]})) for s in CORPORA},
        "quarters": quarters, "test": {c: len(test[c]) for c in CORPORA},
        "pieces": {c: sum(p["session"] == c for pieces in split.values() for p in pieces) for c in CORPORA},
        "excerpts": {c: len(reference[c, c]) for c in CORPORA},
        "ensembles": {s: dict(Counter("+".join(sorted(r.played)) or "(silent)" for r in samples[s]).most_common())
                      for s in CORPORA},
        "notes_median": {s: int(np.median([r.notes for r in samples[s]])) for s in CORPORA},
        "sample_seconds": seconds_sampling,
        "overlap": {name: {c: summary(compare_sets(pieces, reference[length, c], beats_per_bar=bar[length],
                                                   resolution=session.encoding.resolution))
                           for c in CORPORA}
                    for name, (pieces, length) in sets.items()},
    }
    res["verdict"] = {s: res["overlap"][f"style {s}"][s]["all"] > res["overlap"][f"style {s}"][o]["all"]
                      for s, o in (CORPORA, CORPORA[::-1])}
    won = {}
    for s, o in (CORPORA, CORPORA[::-1]):
        own, other = res["overlap"][f"style {s}"][s]["rows"], res["overlap"][f"style {s}"][o]["rows"]
        finite = [f for f in own if f in other and own[f]["kind"] in ("histogram", "scalar")
                  and not (math.isnan(own[f]["overlap"]) or math.isnan(other[f]["overlap"]))]
        won[s] = sum(own[f]["overlap"] > other[f]["overlap"] for f in finite)
        res["features"] = len(finite)
    res["won"] = won
    seconds = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    text = markdown(res, args, seconds)
    print(text)
    if not args.no_write:
        write_section("styles", text)


if __name__ == "__main__":
    main()
