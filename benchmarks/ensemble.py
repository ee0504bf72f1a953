"""Do the parts listen to each other? The score view against the tracks view on the Bach chorales.

    python benchmarks/ensemble.py [--minutes 4] [--samples 16] [--bars 16] [--reuse-runs] [--no-write]

One run, the same CPU budget per model: ``lstm_small`` trained by ``python train.py`` with
``data.view=score`` and with ``data.view=tracks`` (everything else equal). Then, in this process:

* test bits/note of each model beside an interpolated Kneser-Ney n-gram fitted on the same
  view's words (``python evaluate.py``'s scoring: whole test rows, every word predicted once);
  bits/note divides all bits by the same notes in both views, so the four figures compare;
* 16 samples of each model for the four voices, and the cross-part statistics of
  ``deeporb.evaluation.cross_part`` (consonance of simultaneous notes from different parts,
  pitch-class agreement, tonal distance, key consistency) beside real held-out chorales and
  shuffled-voice chorales (each voice from a different held-out chorale), all cut to the
  samples' length; plus the per-part music statistics of each model's samples against the
  held-out pieces (mean overlap of histograms and scalars), which should not get worse.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402
from evaluate_baselines import fmt, run, train, training_options, use_threads  # noqa: E402
from report import machine, write_section  # noqa: E402

from deeporb.evaluation.columns import NOTE_COLUMNS  # noqa: E402
from deeporb.evaluation.compare import compare_samples, excerpts, overlap_summary, reference_pieces  # noqa: E402
from deeporb.evaluation.cross_part import CROSS_PART_FEATURES, ensemble_statistics  # noqa: E402
from deeporb.evaluation.likelihood import evaluate_checkpoints  # noqa: E402

VOICES = ["alto", "bass", "soprano", "tenor"]
VIEWS = ("score", "tracks")


def shuffled_voices(pieces: list[dict]) -> list[dict]:
    """Voice k of piece i taken from piece i + k: four real voices that never played together."""
    out = []
    by_voice = [{p["instrument"]: p for p in piece["parts"]} for piece in pieces]
    for i in range(len(pieces)):
        parts = []
        for k, voice in enumerate(VOICES):
            source = by_voice[(i + k) % len(pieces)]
            if voice in source:
                parts.append(source[voice])
        columns = {c: np.concatenate([part[c] for part in parts]) for c in NOTE_COLUMNS}
        out.append({**columns, "parts": parts})
    return out


def first_excerpts(pieces: list[dict], quarters: float) -> list[dict]:
    """The opening ``quarters`` of each piece (as samples start at a piece's start)."""
    return [cuts[0] for p in pieces if (cuts := excerpts(p, quarters))]


def sample_view(ckpt: str, out: Path, samples: int, bars: int) -> tuple[list, float]:
    from deeporb.checkpoints import load_generator
    from deeporb.stages.sample import RenderConfig, SampleConfig, sample

    model = load_generator(ckpt)
    t0 = time.perf_counter()
    results = sample(SampleConfig(out_dir=str(out), num_samples=samples, bars=bars, min_bars=bars, seed=0,
                                  instruments=VOICES, render=RenderConfig(piano_roll=False, audio=False)),
                     model=model)
    return results, time.perf_counter() - t0


def as_piece(result) -> dict:
    return {"parts": [{**t.notes, "instrument": t.name, "is_drum": t.is_drum} for t in result.tracks]}


def markdown(res: dict, args, seconds: float) -> str:
    lines = [
        "## The ensemble: score view vs tracks view (Bach chorales)",
        "",
        f"`python benchmarks/ensemble.py --minutes {args.minutes:g} --samples {args.samples} --bars {args.bars}`; "
        f"{machine()}; {args.threads} torch thread(s) per process; {seconds / 60:.1f} minutes in all. "
        f"Each model is `lstm_small` trained {args.minutes:g} wall-clock minutes on the built-in Bach chorales "
        "(`python train.py model=lstm_small data.view=VIEW trainer=cpu trainer.max_time=...`), best checkpoint "
        "by val/loss. The machine was shared, so the optimizer steps each model got are shown.",
        "",
        "| view | steps | test bits/note: LSTM | test bits/note: n-gram on the same words | words per note |",
        "|---|---:|---:|---:|---:|",
    ]
    for view in VIEWS:
        r = res["views"][view]
        lines.append(f"| {view} | {r['steps']:,} | **{fmt(r['lstm_bits_per_note'])}** | {fmt(r['ngram_bits_per_note'])} "
                     f"| {fmt(r['words'] / r['notes'], 2)} |")
    names = {"real": "real held-out chorales", "shuffled": "shuffled-voice chorales",
             "score": "score-view samples", "tracks": "tracks-view samples"}
    lines += [
        "",
        f"Cross-part statistics of {args.samples} samples per model ({args.bars} bars, the four voices named, "
        "temperature 1.0, top-p 0.95, seed 0) beside the opening "
        f"{fmt(res['quarters'], 0)} quarters of the {res['test_pieces']} held-out chorales, and of the same "
        "chorales with each voice taken from another chorale. Consonance: share of simultaneous note pairs from "
        "different parts whose interval mod 12 is in {0,3,4,5,7,8,9} (uniformly random pitches: 7/12 = 0.583). "
        "Tonal distance: lower is closer.",
        "",
        "| set | pieces | " + " | ".join(f.replace("_", " ") for f in CROSS_PART_FEATURES) + " |",
        "|---|---:|" + "---:|" * len(CROSS_PART_FEATURES),
    ]
    for key, label in names.items():
        s = res["ensemble"][key]
        lines.append(f"| {label} | {s['pieces']} | " + " | ".join(fmt(s[f]) for f in CROSS_PART_FEATURES) + " |")
    lines += [
        "",
        "Per-part statistics of each model's samples against the held-out pieces (mean overlap, 1 = same "
        "distribution), and what the samples hold:",
        "",
        "| samples | mean overlap, histograms | mean overlap, scalars | notes per sample (median) | "
        "silent samples | seconds to sample all |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for view in VIEWS:
        r = res["views"][view]
        lines.append(f"| {view} view | {fmt(r['overlap']['histogram'])} | {fmt(r['overlap']['scalar'])} | "
                     f"{r['notes_median']} | {r['silent']} of {args.samples} | {fmt(r['sample_seconds'], 1)} |")
    gap = res["ensemble"]["real"]["cross_part_consonance"] - res["ensemble"]["score"]["cross_part_consonance"]
    lines += ["", f"Consonance gap between real chorales and score-view samples: {fmt(gap)} (goal: within 0.05)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget per model")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--bars", type=int, default=16)
    training_options(parser, "outputs/benchmarks/ensemble")
    args = parser.parse_args()
    use_threads(args.threads)
    out = (ROOT / args.out).resolve()
    t0 = time.perf_counter()
    print("encoding the Bach chorales", flush=True)
    run([sys.executable, "encode.py", "dataset=bach_chorales", "progress=false"], out / "encode.log")
    res: dict = {"views": {}, "ensemble": {}}
    samples = {}
    for view in VIEWS:
        metrics = train("bach_chorales", "lstm_small", args.minutes, out, args.reuse_runs,
                        overrides=(f"data.view={view}",), name=f"lstm_small_{view}")
        ckpt = metrics["best_checkpoint"]
        print(f"{view}: n-gram and test scores", flush=True)
        [ev] = evaluate_checkpoints([(view, ckpt)], mode="tracks", log=lambda m: print("  " + m, flush=True))
        ngram, lstm = ev.as_dict()["rows"]
        print(f"{view}: sampling", flush=True)
        results, sample_seconds = sample_view(ckpt, out / f"samples_{view}", args.samples, args.bars)
        samples[view] = results
        rows = compare_samples(results, ckpt)
        res["views"][view] = {
            "steps": metrics["global_step"], "lstm_bits_per_note": lstm["bits_per_note"],
            "ngram_bits_per_note": ngram["bits_per_note"], "words": lstm["words"], "notes": lstm["notes"],
            "overlap": overlap_summary(rows), "notes_median": int(np.median([r.notes for r in results])),
            "silent": sum(r.notes == 0 for r in results), "sample_seconds": sample_seconds, "checkpoint": ckpt,
        }
    held_out = reference_pieces(res["views"]["score"]["checkpoint"], "test", VOICES)
    bar = 4.0  # the chorales' commonest meter is 4/4; samples are written in it
    quarters = args.bars * bar
    real = first_excerpts(held_out, quarters)
    res["quarters"], res["test_pieces"] = quarters, len(held_out)
    res["ensemble"]["real"] = ensemble_statistics(real, bar)
    res["ensemble"]["shuffled"] = ensemble_statistics(first_excerpts(shuffled_voices(held_out), quarters), bar)
    for view in VIEWS:
        res["ensemble"][view] = ensemble_statistics([as_piece(r) for r in samples[view]], bar)
    seconds = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    text = markdown(res, args, seconds)
    print(text)
    if not args.no_write:
        write_section("ensemble", text)
    if not math.isfinite(res["ensemble"]["score"]["cross_part_consonance"]):
        raise SystemExit("the score-view samples hold fewer than two sounding parts")


if __name__ == "__main__":
    main()
