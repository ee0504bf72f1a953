"""Held-out bits per note of an n-gram, the original LSTM (``experiment=original_baseline``) and ``lstm_small``/``lstm_medium``
after the same CPU training budget, and music statistics of ``lstm_small`` samples.

    python benchmarks/evaluate_baselines.py [--minutes 3] [--models original lstm_small lstm_medium]
        [--corpora beethoven bach_chorales] [--samples 16] [--bars 16] [--reuse-runs] [--no-write]

For each corpus the script encodes it (``python encode.py midi_dir=../shared/data/beethoven
session=beethoven``, ``python encode.py dataset=bach_chorales``), trains every model with
``python train.py`` in a subprocess under the same wall-clock budget (``trainer.max_time``;
``trainer.min_epochs=0`` and a high ``trainer.max_epochs`` so that the budget alone stops it;
default callbacks, so the checkpoint kept is the best by ``val/loss``), then, in this process, scores the n-gram and
every checkpoint on the same test split and the same words (``python evaluate.py``'s scoring, whole
tracks), and compares 16-bar ``lstm_small`` samples with the held-out test pieces, beside
real training excerpts (the ceiling) and white noise (the floor). Writes its section of
docs/benchmarks.md and ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from report import machine, write_section  # noqa: E402

from deeporb.evaluation.compare import (  # noqa: E402
    compare_samples,
    excerpts,
    overlap_summary,
    reference_pieces,
)
from deeporb.evaluation.likelihood import evaluate_checkpoints  # noqa: E402

CORPORA = {
    "beethoven": ["midi_dir=../shared/data/beethoven", "session=beethoven"],
    "bach_chorales": ["dataset=bach_chorales"],
}
SHOWN_FEATURES = (
    "pitch_class_histogram",
    "pitch_histogram",
    "note_length_histogram",
    "onset_position_histogram",
    "scale_consistency",
    "polyphony",
    "note_density",
    "pitch_range",
)


THREADS = {"n": 1}


def training_options(parser, out: str) -> None:
    """The options every benchmark that trains through :func:`train` takes."""
    parser.add_argument("--out", default=out)
    parser.add_argument("--reuse-runs", action="store_true", help="skip training where a run folder has metrics.json")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process (on a shared machine, more threads than free "
                             "cores spin: 2 threads beside another busy process ran lstm_small 12x slower)")


def use_threads(n: int) -> None:
    """Torch threads for this process and for every stage it runs."""
    import torch

    THREADS["n"] = n
    torch.set_num_threads(n)


def run(cmd: list[str], log: Path) -> None:
    """Run a stage as the user would, its output kept in ``log``; fail loudly with its tail."""
    n = str(THREADS["n"])
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")


def train(corpus: str, model: str, minutes: float, out: Path, reuse: bool,
          overrides: tuple[str, ...] = (), name: str | None = None) -> dict:
    """``python train.py`` under a wall-clock budget; returns its metrics.json (+ seconds taken).

    ``overrides`` are extra train.py arguments (e.g. ``data.view=tracks``); ``name`` names the run folder.
    """
    run_dir = out / corpus / (name or model)
    metrics_path = run_dir / "metrics.json"
    if reuse and metrics_path.is_file():
        print(f"  {model}: reusing {run_dir}", flush=True)
        return {**json.loads(metrics_path.read_text()), "reused": True}
    budget = time.strftime("00:%H:%M:%S", time.gmtime(round(minutes * 60)))
    print(f"  {name or model}: training for {budget} ...", flush=True)
    t0 = time.perf_counter()
    run([sys.executable, "train.py", "data=default", f"data.session={corpus}",
         "experiment=original_baseline" if model == "original" else f"model={model}",
         "trainer=cpu", "logger=csv", f"trainer.max_time={budget}", "trainer.min_epochs=0", "trainer.max_epochs=1000",
         "callbacks.rich_progress_bar=null", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}",
         *overrides],
        run_dir.with_suffix(".log"))
    metrics = json.loads(metrics_path.read_text())
    metrics["seconds"] = time.perf_counter() - t0
    if not metrics.get("best_checkpoint"):  # the budget ran out before the first validation
        metrics["best_checkpoint"] = metrics["last_checkpoint"]
        metrics["no_validation"] = True
    metrics_path.write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def noise_pieces(n: int, quarters: float, notes: int, seed: int = 0) -> list[dict]:
    """White noise: uniform onsets, durations (1/4 to 4 quarters) and pitches over 0..127."""
    rng = np.random.default_rng(seed)
    return [
        {"onset": np.sort(rng.uniform(0, quarters, notes)), "duration": rng.uniform(0.25, 4.0, notes),
         "pitch": rng.integers(0, 128, notes), "velocity": np.full(notes, 64)}
        for _ in range(n)
    ]


def music_statistics(ckpt: str, out: Path, samples: int, bars: int) -> dict:
    """lstm_small samples, real training excerpts and noise, each against the test pieces."""
    from deeporb.checkpoints import facts, load_generator
    from deeporb.stages.sample import RenderConfig, SampleConfig, sample

    model = load_generator(ckpt)
    session = facts(model)
    held_out = reference_pieces(session, "test")
    instruments = sorted({k for p in held_out for k in p["instruments"]})
    t0 = time.perf_counter()
    results = sample(SampleConfig(out_dir=str(out), num_samples=samples, bars=bars, seed=0, instruments=instruments,
                                  render=RenderConfig(piano_roll=False)), model=model)
    sample_seconds = time.perf_counter() - t0
    length = float(np.median([r.bars * 4 * int(r.time_signature.split("/")[0]) / int(r.time_signature.split("/")[1])
                              for r in results]))
    real = [e for p in reference_pieces(session, "train", instruments) for e in excerpts(p, length)]
    notes = int(np.median([r.notes for r in results]))
    noise = noise_pieces(samples, length, max(notes, 8))
    sizes = {"real training excerpts": len(real), "lstm_small samples": len(results), "white noise": len(noise)}
    sets = {
        "real training excerpts": compare_samples(real, session, instruments=instruments),
        "lstm_small samples": compare_samples(results, session),
        "white noise": compare_samples(noise, session, instruments=instruments),
    }
    return {
        "instruments": instruments,
        "test_pieces": len(held_out),
        "test_tracks": sum(p["tracks"] for p in held_out),
        "excerpt_quarters": length,
        "sets": {name: {"summary": overlap_summary(rows), "n": sizes[name], "with_notes": rows[0]["n_gen"],
                        "n_ref": rows[0]["n_ref"],
                        "rows": {r["feature"]: {k: r[k] for k in ("overlap", "kl", "gen_mean", "ref_mean")}
                                 for r in rows}}
                 for name, rows in sets.items()},
        "sample_notes_median": notes,
        "sample_seconds": sample_seconds,
    }


def fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def corpus_markdown(corpus: str, result: dict, minutes: float) -> str:
    ev = result["evaluation"]
    d = ev["data"]
    rows = ev["rows"]
    ngram = rows[0]
    lines = [
        f"### {corpus}",
        "",
        f"Test split: {d['pieces']['test']} pieces, {d['test_tracks']} tracks, {ngram['words']:,} predicted words, "
        f"{ngram['notes']:,} notes (train {d['pieces']['train']}, val {d['pieces']['val']} pieces; "
        f"split by piece hash, val/test fractions {d['val_fraction']}/{d['test_fraction']}).",
        "",
        f"| model | parameters | steps in {minutes:g} min | test bits/note | bits/word | "
        "train.py test bits/note (own windows) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| {ngram['name']} | – | – | **{fmt(ngram['bits_per_note'])}** | {fmt(ngram['bits_per_word'])} | – |",
    ]
    for r in rows[1:]:
        m = result["runs"][r["name"]]
        windowed = (m.get("test") or {}).get("test/bits_per_note")
        kept = " (last weights: no validation within the budget)" if m.get("no_validation") else ""
        lines.append(
            f"| {r['name']} ({r['num_layers']}×{r['hidden_size']}, seq_len {r['seq_len']}){kept} | {r['params']:,} | "
            f"{m['global_step']:,} | **{fmt(r['bits_per_note'])}** | {fmt(r['bits_per_word'])} | {fmt(windowed)} |"
        )
    best = min(rows[1:], key=lambda r: r["bits_per_note"]) if len(rows) > 1 else None
    if best is not None:
        gap = ngram["bits_per_note"] - best["bits_per_note"]
        lines += ["", f"Best network: {best['name']}, {fmt(best['bits_per_note'])} bits/note, "
                      f"{fmt(abs(gap))} {'below' if gap > 0 else 'above'} the n-gram."]
    stats = result.get("music")
    if stats:
        sets = stats["sets"]
        lines += [
            "",
            f"Music statistics against the {stats['test_pieces']} held-out test pieces "
            f"({', '.join(stats['instruments'])}; the tracks of a piece concatenated, {stats['test_tracks']} tracks "
            f"in all, while a sample has one part per instrument), cut into {fmt(stats['excerpt_quarters'], 0)}-quarter "
            f"excerpts ({sets['lstm_small samples']['n_ref']} excerpts). Overlap 1 = same distribution, 0 = disjoint.",
            "",
            "| set | pieces | mean overlap, 6 histograms | mean overlap, 12 scalars |",
            "|---|---:|---:|---:|",
        ]
        for name, s in sets.items():
            count = f"{s['n']}" if s["with_notes"] == s["n"] else f"{s['n']} ({s['with_notes']} with notes)"
            lines.append(f"| {name} | {count} | {fmt(s['summary']['histogram'])} | {fmt(s['summary']['scalar'])} |")
        names = list(sets)
        lines += [
            "",
            "| feature | " + " | ".join(f"overlap: {n}" for n in names) + " | mean: test pieces | mean: lstm_small |",
            "|---|" + "---:|" * (len(names) + 2),
        ]
        for feature in SHOWN_FEATURES:
            cells = [fmt(sets[n]["rows"][feature]["overlap"]) for n in names]
            model_row = sets["lstm_small samples"]["rows"][feature]
            lines.append(f"| {feature} | " + " | ".join(cells) + f" | {fmt(model_row['ref_mean'], 2)} | "
                         f"{fmt(model_row['gen_mean'], 2)} |")
    return "\n".join(lines)


def markdown(results: dict, args, seconds: float) -> str:
    models = ", ".join(f"`{m}`" for m in args.models)
    text = [
        "## Held-out likelihood: n-gram, original and LSTMs after the same CPU budget; music statistics",
        "",
        f"`python benchmarks/evaluate_baselines.py --minutes {args.minutes:g} --models {' '.join(args.models)}`; "
        f"{machine()}; {args.threads} torch thread(s) per process; {seconds / 60:.1f} minutes in all. The "
        "machine was shared with other jobs, so the optimizer steps each model got in its budget are shown.",
        "",
        f"Each of {models} trained by `python train.py data.session=CORPUS model=MODEL trainer=cpu logger=csv "
        f"trainer.max_time=...` for {args.minutes:g} wall-clock minutes (`trainer.min_epochs=0 trainer.max_epochs=1000`: the budget alone stops it; "
        "default callbacks: the best checkpoint by val/loss is kept; `original` is the original 1×64 LSTM, SGD, "
        "windows of 16 words: `experiment=original_baseline` in place of `model=MODEL`). All rows are scored on the same test split and the same predicted words: every "
        "test track whole, `<bos> inst_KEY ... <eos>`, every word after `<bos>` predicted once "
        "(`python evaluate.py`, the default `mode=tracks`); bits/note = all bits / predicted notes. "
        "The n-gram is interpolated Kneser-Ney fitted on the train tracks, order 1-10 and plain/modified "
        "discounts chosen on the validation tracks. The last column is what `train.py` reports (its own "
        "`seq_len` windows, context restarting at each window).",
    ]
    for corpus, result in results.items():
        text += ["", corpus_markdown(corpus, result, args.minutes)]
    text += [
        "",
        f"Samples: {args.samples} per corpus, {args.bars} bars, temperature 1.0, top-p 0.95, seed 0, the "
        "instruments of the test pieces; real training excerpts (same length, same instruments) give the "
        "overlap real music reaches, white noise (uniform pitches 0-127, onsets and durations) the floor. "
        "Drum tracks are left out of every set. Histograms are averaged over a set's pieces, so a "
        "pitch-class histogram pooled over pieces in many keys is nearly flat, and noise matches it about "
        "as well as music does: read it with the pitch histogram and scale consistency.",
    ]
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per model")
    parser.add_argument("--models", nargs="+", default=["original", "lstm_small", "lstm_medium"])
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=list(CORPORA))
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--bars", type=int, default=16)
    training_options(parser, "outputs/benchmarks/evaluate_baselines")
    args = parser.parse_args()
    use_threads(args.threads)
    out = (ROOT / args.out).resolve()
    t0 = time.perf_counter()
    results: dict = {}
    for corpus in args.corpora:
        print(f"{corpus}: encoding", flush=True)
        run([sys.executable, "encode.py", *CORPORA[corpus], "progress=false"], out / corpus / "encode.log")
        runs = {m: train(corpus, m, args.minutes, out, args.reuse_runs) for m in args.models}
        print(f"{corpus}: n-gram and test scores", flush=True)
        [ev] = evaluate_checkpoints([(m, runs[m]["best_checkpoint"]) for m in args.models], mode="tracks",
                                    log=lambda msg: print("  " + msg, flush=True))
        result = {"evaluation": ev.as_dict(), "runs": runs}
        if "lstm_small" in runs:
            print(f"{corpus}: sampling lstm_small and comparing with the test pieces", flush=True)
            result["music"] = music_statistics(runs["lstm_small"]["best_checkpoint"], out / corpus / "samples",
                                               args.samples, args.bars)
        results[corpus] = result
        for r in ev.as_dict()["rows"]:
            print(f"  {r['name']:<40} test bits/note {r['bits_per_note']:.4f}  bits/word {r['bits_per_word']:.4f}")
    # a --reuse-runs invocation adds the training time recorded by the runs it reused
    seconds = time.perf_counter() - t0 + sum(m.get("seconds", 0.0) for r in results.values()
                                            for m in r["runs"].values() if m.get("reused"))
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    text = markdown(results, args, seconds)
    print(text)
    if not args.no_write:
        write_section("evaluate_baselines", text)


if __name__ == "__main__":
    main()
