"""Fills (issue 20): does writing a gap after reading what surrounds it help, on held-out chorales?

    python benchmarks/fill.py [--minutes 6] [--samples 2] [--pieces N] [--orders 1 2 ... 10]
        [--parallel 2] [--reuse-runs] [--no-write] [--report-only] [--threads 1]

Two models train with ``python train.py data=bach_chorales`` under the same wall-clock budget
(``--minutes`` each, ``trainer.max_time``; two side by side, one thread each, so they share the
machine alike): ``today`` with ``data.fill_share=0`` (left to right only, the model before fills)
and ``fills`` with the default fill share. Both are the demo-sized network (lstm_small at 192
units) on 4,096 words a step in windows of 1,024 words (whole chorales, as the bundled model),
best checkpoint by val/loss. Then, on the held-out test chorales:

* **likelihood**: bits/note of the notes in a gap (``deeporb.evaluation.fills``, what
  ``python evaluate.py`` prints): 4 middle bars of every voice, and each voice throughout. The
  fill model reads the piece up to 2 bars past the gap before writing it, the voices it keeps
  given (:mod:`deeporb.encoding.fills`); today's model and an
  interpolated Kneser-Ney n-gram (order and discounts chosen on the validation chorales) score
  the same notes' words left to right. Goal: fills at most 0.85x today's.
* **harmonization**: the real soprano kept, alto, tenor and bass written by the fill model
  (``Fill(parts=["alto", "tenor", "bass"])``, ``--samples`` per chorale, the chorale given as a
  MIDI primer; again with ``fill.candidates=--candidates``, one of that many fills drawn by the
  probability the model gives the kept soprano); consonance between the parts and one-key fit (``deeporb.evaluation.cross_part``)
  beside Bach's own four voices and a shuffled-voice floor (the soprano kept, each lower voice
  taken from another held-out chorale and cut to its length, as ``benchmarks/ensemble.py``'s
  floor). Goal: within 0.03 of Bach.
* **seams**: the 4 middle bars of every voice written anew; the leap in semitones of each voice
  into the span (its last note before -> its first inside) and out of it (last inside -> first
  after), beside Bach's leaps at the same seams and at every bar line of the same voices.

Writes its section of docs/benchmarks.md and ``OUT/results.json``; ``--report-only`` rewrites
the section from that file.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_baselines import ROOT, fmt, run, training_options, use_threads  # noqa: E402
from report import machine, write_section  # noqa: E402

sys.path.insert(0, str(ROOT))
from deeporb.checkpoints import facts as facts_of  # noqa: E402
from deeporb.checkpoints import load_generator  # noqa: E402
from deeporb.encoding.fills import bar_lines  # noqa: E402
from deeporb.encoding.score import encode_score  # noqa: E402
from deeporb.errors import UserError  # noqa: E402
from deeporb.evaluation.cross_part import CROSS_PART_FEATURES, cross_part_features  # noqa: E402
from deeporb.evaluation.fills import (  # noqa: E402
    GAP_KINDS,
    HeldOutPiece,
    describe_gaps,
    fill_scores,
    held_out_pieces,
    score_fill,
    standard_gaps,
)
from deeporb.evaluation.likelihood import DEFAULT_ORDERS, datamodule_for, fit_ngram, split_sequences  # noqa: E402
from deeporb.fileio import claim_folder, owned_folder  # noqa: E402
from deeporb.generation.compose import Fill, Settings, compose  # noqa: E402
from deeporb.generation.prompts import MAX_PRIMER_BARS, load_primer  # noqa: E402
from deeporb.midi import Track, write_midi  # noqa: E402

VARIANTS = {"today": ("data.fill_share=0",), "fills": ()}  # fills: the default data.fill_share
NETWORK = ("model=lstm_small", "model.embed_dim=192", "model.hidden_size=192", "data.seq_len=1024",
           "data.batch_size=4", "model.scheduler.warmup_steps=30")
RUN_KIND = "fill-benchmark-run"  # the marker of a training run folder this script made (and may replace)
VAL_EVERY = 100  # optimizer steps between validations (the best checkpoint by val/loss is kept)
LOWER = ["alto", "tenor", "bass"]  # what harmonizing a melody writes
GOAL_RATIO, GOAL_GAP = 0.85, 0.03
SHOWN = ("cross_part_consonance", "key_consistency")
BIG_LEAP = 7  # semitones: a leap wider than a fifth
LOOKAHEADS = (0, 1, 2, 4)  # bars read past a gap (sampling reads fills.LOOKAHEAD)


# ---------------------------------------------------------------------------------------
# training


def train(variant: str, minutes: float, out: Path, reuse: bool, overrides: tuple[str, ...] = ()) -> dict:
    """``python train.py data=bach_chorales`` for ``minutes`` of wall clock; its metrics.json."""
    run_dir = out / variant
    metrics_path = run_dir / "metrics.json"
    if reuse and metrics_path.is_file():
        print(f"  {variant}: reusing {run_dir}", flush=True)
        return {**json.loads(metrics_path.read_text()), "reused": True}
    budget = time.strftime("00:%H:%M:%S", time.gmtime(round(minutes * 60)))
    if owned_folder(run_dir, RUN_KIND):  # this script's earlier run: its checkpoints must not mix with this one's
        shutil.rmtree(run_dir)
    claim_folder(run_dir, RUN_KIND, "--out")  # a folder of anything else is refused, never emptied
    print(f"  {variant}: training for {budget} ...", flush=True)
    t0 = time.perf_counter()
    run([sys.executable, "train.py", "data=bach_chorales", *NETWORK, *VARIANTS[variant], *overrides, "trainer=cpu", "logger=csv",
         f"trainer.max_time={budget}", "trainer.min_epochs=0", "trainer.max_epochs=1000", "trainer.max_steps=-1",
         f"trainer.val_check_interval={VAL_EVERY}", "trainer.check_val_every_n_epoch=null",
         "trainer.num_sanity_val_steps=0", "callbacks.early_stopping=null", "callbacks.rich_progress_bar=null",
         "callbacks.samples=null", "trainer.enable_progress_bar=false", "test=false", "seed=0",
         f"hydra.run.dir={run_dir}"], run_dir.with_suffix(".log"))
    metrics = json.loads(metrics_path.read_text())
    metrics["seconds"] = time.perf_counter() - t0
    if not metrics.get("best_checkpoint"):  # the budget ran out before the first validation
        metrics["best_checkpoint"] = metrics["last_checkpoint"]
        metrics["no_validation"] = True
    metrics_path.write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


# ---------------------------------------------------------------------------------------
# pieces as note columns, primers as MIDI files


def as_columns(piece: HeldOutPiece, config, keys=None) -> dict:
    """A held-out piece as cross_part reads it: one part of note columns (quarters) per voice."""
    keys = sorted(piece.parts) if keys is None else keys
    return {"parts": [{**piece.parts[k].to_quarters(config), "instrument": k} for k in keys if k in piece.parts]}


def composition_columns(composition) -> dict:
    return {"parts": [{**t.notes, "instrument": t.name, "is_drum": t.is_drum} for t in composition.tracks]}


def lower_notes(columns: dict) -> int:
    """Notes of the voices a harmonization writes (alto, tenor, bass) in a piece's columns."""
    return sum(len(p["pitch"]) for p in columns["parts"] if str(p["instrument"]).lower() in LOWER)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def beats_per_bar(piece: HeldOutPiece) -> float:
    n, d = piece.meter.signatures[0]
    return 4.0 * n / d


def write_primer(piece: HeldOutPiece, facts, folder: Path) -> Path:
    """The piece as a MIDI file, one track per voice named by its key, as a user's primer."""
    config = facts.encoding
    tracks = [Track(k, *facts.instrument_program(k), g.to_quarters(config)) for k, g in sorted(piece.parts.items())]
    name = Path(piece.name).name
    return write_midi(folder / (name if name.endswith(".mid") else name + ".mid"), tracks,
                      [(0.0, float(facts.qpm_median))], piece.meter.changes(config))


def cut(part: dict, end: float) -> dict:
    """A part's notes that start before ``end`` (quarters), held at most to ``end``."""
    keep = np.asarray(part["onset"]) < end
    out = {k: (np.asarray(v)[keep] if isinstance(v, np.ndarray) else v) for k, v in part.items()}
    out["duration"] = np.minimum(out["duration"], end - out["onset"])
    return out


def shuffled_lower_voices(pieces: list[dict]) -> list[dict]:
    """Piece i's soprano with voice k of ``LOWER`` from piece i + 1 + k, cut to piece i's length:
    real voices that never sang together (``benchmarks/ensemble.py``'s floor, melody kept)."""
    out = []
    for i, piece in enumerate(pieces):
        by_voice = {p["instrument"]: p for p in piece["parts"]}
        end = max(float(np.max(p["onset"] + p["duration"])) for p in piece["parts"] if len(p["onset"]))
        parts = [by_voice["soprano"]]
        for k, voice in enumerate(LOWER):
            source = {p["instrument"]: p for p in pieces[(i + 1 + k) % len(pieces)]["parts"]}
            if voice in source:
                parts.append(cut(source[voice], end))
        out.append({"parts": parts})
    return out


def mean_features(pieces: list[tuple[dict, float]]) -> dict:
    """Mean of each cross-part feature over (piece, beats per bar) pairs, NaNs skipped."""
    values = [cross_part_features(p, bpb) for p, bpb in pieces]
    out = {f: float(np.nanmean([v[f] for v in values])) if values else math.nan for f in CROSS_PART_FEATURES}
    out["pieces"] = len(values)
    return out


# ---------------------------------------------------------------------------------------
# seams


def top_at(steps: np.ndarray, pitch: np.ndarray, mask: np.ndarray, last: bool) -> int | None:
    """The highest pitch at the latest (``last``) or earliest onset among ``mask``; None if none."""
    if not mask.any():
        return None
    at = steps[mask].max() if last else steps[mask].min()
    return int(pitch[mask & (steps == at)].max())


def leap(notes: dict, a: int, b: int, c: int, resolution: int) -> int | None:
    """|first note in [b, c) - last note in [a, b)| in semitones (grid steps a <= b < c)."""
    steps = np.rint(np.asarray(notes["onset"]) * resolution).astype(np.int64)
    pitch = np.asarray(notes["pitch"])
    before = top_at(steps, pitch, (steps >= a) & (steps < b), last=True)
    after = top_at(steps, pitch, (steps >= b) & (steps < c), last=False)
    return None if before is None or after is None else abs(after - before)


def seam_leaps(parts: dict[str, dict], lines: np.ndarray, first: int, last: int, resolution: int) -> dict:
    """Each voice's leap into bars ``first``..``last`` (0-based) and out of them."""
    start, end, stop = int(lines[first]), int(lines[last + 1]), int(lines[-1]) + 10**9
    into = [leap(parts[k], 0, start, end, resolution) for k in sorted(parts)]
    out = [leap(parts[k], start, end, stop, resolution) for k in sorted(parts)]
    return {"into": [x for x in into if x is not None], "out_of": [x for x in out if x is not None]}


def bar_line_leaps(parts: dict[str, dict], lines: np.ndarray, resolution: int) -> list[int]:
    """Each voice's leap across every inner bar line: last note of a bar -> first of the next."""
    found = []
    for notes in parts.values():
        for b in range(1, len(lines) - 1):
            x = leap(notes, int(lines[b - 1]), int(lines[b]), int(lines[b + 1]), resolution)
            if x is not None:
                found.append(x)
    return found


def leap_summary(leaps: list[int]) -> dict:
    a = np.asarray(leaps, dtype=np.float64)
    return {"n": len(a), "mean": float(a.mean()) if len(a) else math.nan,
            "median": float(np.median(a)) if len(a) else math.nan,
            "share_over_fifth": float((a > BIG_LEAP).mean()) if len(a) else math.nan}


# ---------------------------------------------------------------------------------------
# the measurements


def likelihood(models: dict, pieces: list[HeldOutPiece], dm, orders) -> dict:
    print("  likelihood: fitting the n-gram, scoring the gaps ...", flush=True)
    baseline = fit_ngram(split_sequences(dm, "train", "tracks"), split_sequences(dm, "val", "tracks"),
                         len(dm.vocab), orders)
    scores = fill_scores(list(models.items()), pieces, baseline.lm, baseline.name, dm.vocab)
    out = {"data": describe_gaps(pieces, dm.vocab.config), "rows": [s.as_dict() for s in scores]}
    # bars4 split by whether the plain score writes a bar of the gap as `rep_K` (one word for a
    # whole repeated bar; a fill's bar may be one too)
    split = {True: [], False: []}
    for piece in pieces:
        gap = standard_gaps(piece, dm.vocab.config)["bars4"]
        if gap:
            split[holds_repeat(piece, gap[0], dm.vocab)].append(piece)
    out["bars4_by_repeat"] = {
        ("repeats" if k else "no_repeat"): {"pieces": len(v), "rows": [
            {"name": s.name, "how": s.how, "bits_per_note": s.bars4.bits_per_note, "notes": s.bars4.notes}
            for s in fill_scores(list(models.items()), v, baseline.lm, baseline.name, dm.vocab)]}
        for k, v in split.items() if v}
    # does the fill use what follows the gap? the 4-bar gaps read 0 to 4 bars past them
    out["bars4_by_lookahead"] = {str(n): score_fill("fills", models["fills"], pieces, lookahead=n).bars4.bits_per_note
                                 for n in LOOKAHEADS}
    return out


def holds_repeat(piece: HeldOutPiece, gap, vocab) -> bool:
    """Whether the plain score row of ``piece`` writes one of ``gap``'s bars as ``rep_K``."""
    row = encode_score(piece.parts, piece.meter, vocab, piece.style)
    bar = np.cumsum(row == vocab.index["bar"]) - 1
    first, end = vocab.rep_ids
    return bool(np.isin(bar[(row >= first) & (row < end)], gap.bars).any())


def harmonize(model, pieces: list[HeldOutPiece], samples: int, folder: Path, candidates: int = 1) -> dict:
    """Alto, tenor and bass written under each held-out soprano, beside Bach's and a floor: one
    fill per piece, and (``candidates`` > 1) one drawn from that many particles."""
    facts, vocab = facts_of(model), model.vocab
    config = facts.encoding
    done, bach, written, drawn = [], [], [], []
    for i, piece in enumerate(pieces):
        if not set(LOWER) | {"soprano"} <= set(piece.parts):
            continue
        primer = load_primer(write_primer(piece, facts, folder), vocab, MAX_PRIMER_BARS, facts.instrument_key)
        try:
            made = compose(model, Settings(fill=Fill(parts=list(LOWER), bars=None), seed=i), samples, primer)
            among = (compose(model, Settings(fill=Fill(parts=list(LOWER), bars=None, candidates=candidates), seed=i),
                             samples, primer) if candidates > 1 else [])
        except UserError as e:  # the meter changes: a fill's bars share one length
            print(f"    {piece.name}: skipped ({e})", flush=True)
            continue
        done.append(piece)
        bpb = beats_per_bar(piece)
        bach.append((as_columns(piece, config), bpb))
        written += [(composition_columns(c), bpb) for c in made]
        drawn += [(composition_columns(c), bpb) for c in among]
    floor = shuffled_lower_voices([p for p, _ in bach])
    return {"pieces": len(done), "skipped": len(pieces) - len(done), "samples": samples, "candidates": candidates,
            "bach": mean_features(bach), "fills": mean_features(written),
            **({"fills_candidates": mean_features(drawn)} if drawn else {}),
            "lower_notes": {k: float(np.mean([lower_notes(c) for c, _ in v])) if v else None
                            for k, v in (("bach", bach), ("fills", written), ("fills_candidates", drawn))},
            "shuffled": mean_features(list(zip(floor, [b for _, b in bach], strict=True)))}


def seams(model, pieces: list[HeldOutPiece], samples: int, folder: Path) -> dict:
    """The 4 middle bars of every voice written anew: leaps into and out of them."""
    facts, vocab = facts_of(model), model.vocab
    config = facts.encoding
    res = config.resolution
    model_leaps = {"into": [], "out_of": []}
    bach_leaps = {"into": [], "out_of": []}
    every: list[int] = []
    used = 0
    for i, piece in enumerate(pieces):
        gaps = standard_gaps(piece, config)["bars4"]
        real = {k: g.to_quarters(config) for k, g in piece.parts.items()}
        primer_path = write_primer(piece, facts, folder)
        primer = load_primer(primer_path, vocab, MAX_PRIMER_BARS, facts.instrument_key)
        lines, _ = bar_lines(primer.meter, primer.bars, vocab)
        every += bar_line_leaps(real, lines, res)
        if not gaps:
            continue
        first, last = gaps[0].bars[0], gaps[0].bars[-1]
        made = compose(model, Settings(fill=Fill(parts=None, bars=[first + 1, last + 1]), seed=1000 + i), samples,
                       primer)
        used += 1
        for kind, found in seam_leaps(real, lines, first, last, res).items():
            bach_leaps[kind] += found
        for c in made:
            for kind, found in seam_leaps({t.name: t.notes for t in c.tracks}, lines, first, last, res).items():
                model_leaps[kind] += found
    return {"pieces": used, "samples": samples,
            "fills": {k: leap_summary(v) for k, v in model_leaps.items()},
            "bach_same_seams": leap_summary(bach_leaps["into"] + bach_leaps["out_of"]),
            "bach_bar_lines": leap_summary(every)}


# ---------------------------------------------------------------------------------------
# the report


def verdict(value: float, most: float) -> str:
    return "meets" if value <= most else "misses"


def markdown(results: dict) -> str:
    s = results["settings"]
    runs = results["runs"]
    lik = results["likelihood"]
    d = lik["data"]
    rows = lik["rows"]
    steps = ", ".join(f"`{v}` {runs[v]['global_step']:,} steps" + (" (no validation: last weights)"
                                                                      if runs[v].get("no_validation") else "")
                      for v in runs)
    lines = [
        "## Fills: a gap written from what surrounds it (`benchmarks/fill.py`)",
        "",
        f"{s['machine']}. `python benchmarks/fill.py --minutes {s['minutes']:g} --samples {s['samples']}"
        + (f" --pieces {s['pieces']}" if s.get("pieces") else "")
        + (f" --fill-share {s['fill_share']:g}" if s.get("fill_share") is not None else "")
        + (f" --attention-heads {s['attention_heads']}" if s.get("attention_heads") else "") + "`; "
        f"{s['seconds'] / 60:.1f} minutes in all. Two models trained by `python train.py data=bach_chorales` for "
        f"{s['minutes']:g} wall-clock minutes each, side by side (one torch thread each): `today` with "
        "`data.fill_share=0` (left to right only) and `fills` with "
        + (f"`data.fill_share={s['fill_share']:g}`" if s.get("fill_share") is not None else "the default fill share")
        + (f" and look-back attention (`model.attention_heads={s['attention_heads']}`)" if s.get("attention_heads") else "")
        + "; both lstm_small at 192 "
        f"units on 4 windows of 1,024 words a step, best checkpoint by val/loss ({steps}). Everything below is "
        f"measured on the {d['pieces']} held-out test chorales.",
        "",
        f"**Likelihood.** Bits/note of the notes in a gap: `bars4` = 4 middle bars of every voice ({d['bars4']['gaps']} "
        f"gaps, {d['bars4']['notes']:,} notes), `part` = each voice throughout the chorale, the mean of the four "
        f"voices' bits/note ({d['part']['gaps']} gaps, {d['part']['notes']:,} notes; {d['part']['skipped_pieces']} "
        "chorales that change meter left out). *fill*: the gap's own words in the fill's bars, written after the "
        "chorale up to 2 bars past the gap with the gap's bars as holes, the voices it keeps given (a voice throughout: "
        "the plain score, the other voices given) (`python evaluate.py`'s fill table); *left to right*: the words of the same notes in the plain score "
        "(all words of the 4 bars; a voice's own words, and the onsets only it sings). Every row divides by the "
        "same notes.",
        "",
        "| model | reads | bars4 bits/note | part bits/note | " + " | ".join(d["part"]["parts"]) + " |",
        "|---|---|---:|---:|" + "---:|" * len(d["part"]["parts"]),
    ]
    for r in rows:
        each = [fmt(r["part"]["parts"].get(k, {}).get("bits_per_note")) for k in d["part"]["parts"]]
        lines.append(f"| {r['name']} | {r['how']} | {fmt(r['bars4']['bits_per_note'])} | "
                     f"{fmt(r['part']['bits_per_note'])} | " + " | ".join(each) + " |")
    fill = next((r for r in rows if r["name"] == "fills" and r["how"] == "fill"), None)
    today = next((r for r in rows if r["name"] == "today"), None)
    split = results["likelihood"].get("bars4_by_repeat")
    if split:
        lines += ["", "`bars4` split by whether the plain score writes a bar of the gap as one `rep_K` word (a bar "
                  "repeating an earlier one, one word in a fill's bars too):",
                  "", "| gaps | chorales | " + " | ".join(f"{r['name']} ({r['how']})" for r in
                                                       next(iter(split.values()))["rows"]) + " |",
                  "|---|---:|" + "---:|" * len(next(iter(split.values()))["rows"])]
        for key, label in (("no_repeat", "no bar repeats an earlier one"), ("repeats", "some bar repeats one")):
            if key in split:
                lines.append(f"| {label} | {split[key]['pieces']} | "
                             + " | ".join(fmt(r["bits_per_note"]) for r in split[key]["rows"]) + " |")
    by_lookahead = results["likelihood"].get("bars4_by_lookahead")
    if by_lookahead:
        lines += ["", "`bars4` under `fills`, the chorale read 0 to 4 bars past the gap before the fill (sampling reads 2):",
                  "", "| bars read past the gap | " + " | ".join(by_lookahead) + " |",
                  "|---|" + "---:|" * len(by_lookahead),
                  "| bars4 bits/note | " + " | ".join(fmt(v) for v in by_lookahead.values()) + " |"]
    if fill and today:
        ratios = {k: fill[k]["bits_per_note"] / today[k]["bits_per_note"] for k in GAP_KINDS}
        lines += ["", "Fills over today's: " + ", ".join(
            f"{k} {fmt(v)}x ({verdict(v, GOAL_RATIO)} the goal of at most {GOAL_RATIO}x)" for k, v in ratios.items()) + "."]
    h = results["harmonization"]
    lines += [
        "",
        f"**Harmonization.** For each of {h['pieces']} held-out chorales (of {h['pieces'] + h['skipped']}; "
        "the others change meter or lack a voice), the real soprano kept and alto, tenor and bass written by `fills` "
        f"(`Fill(parts=[alto, tenor, bass])`, the chorale as the primer, {plural(h['samples'], 'sample')} each, temperature "
        "1.0, top-p 0.95). Consonance: share of simultaneous note pairs of different voices whose interval mod 12 "
        "is in {0,3,4,5,7,8,9}; one-key fit: share of each voice's notes in the scale of the ensemble's "
        "Krumhansl-Schmuckler key. Shuffled floor: each lower voice from another held-out chorale.",
        "",
        "| set | " + " | ".join(f.replace("_", " ") for f in CROSS_PART_FEATURES) + " | alto, tenor, bass notes a piece |",
        "|---|" + "---:|" * (len(CROSS_PART_FEATURES) + 1),
    ]
    counts = h.get("lower_notes", {})
    written = {"fills": "soprano + fills' alto/tenor/bass"}
    if "fills_candidates" in h:
        written["fills_candidates"] = f"the same, one of `fill.candidates={h['candidates']}` fills"
    for key, label in (("bach", "Bach's four voices"), *written.items(), ("shuffled", "soprano + shuffled voices")):
        lines.append(f"| {label} | " + " | ".join(fmt(h[key][f]) for f in CROSS_PART_FEATURES)
                     + f" | {fmt(counts.get(key), 1)} |")
    for key, label in written.items():
        gaps = {f: abs(h[key][f] - h["bach"][f]) for f in SHOWN}
        lines += ["", f"Distance from Bach ({label}): " + ", ".join(
            f"{f.replace('_', ' ')} {fmt(v)} ({verdict(v, GOAL_GAP)} the goal of {GOAL_GAP})"
            for f, v in gaps.items()) + "."]
    if "fills_candidates" in h:
        lines += ["", f"`fill.candidates={h['candidates']}`: the sampler writes that many fills per piece and draws one by "
                  "the probability the model gave the kept soprano in each (importance resampling), so the soprano "
                  "notes that come after a written note count too. Nothing but the model's own probabilities chooses."]
    m = results["seams"]
    lines += [
        "",
        f"**Seams.** The 4 middle bars of every voice written anew by `fills` ({m['pieces']} chorales, "
        f"{plural(m['samples'], 'sample')} each); the leap of each voice into the span (its last note before -> first "
        "inside) and out of it (last inside -> first after), in semitones (the top note where a voice sings two), "
        "beside Bach's at the same seams and across every bar line of the same voices.",
        "",
        "| leaps | count | mean | median | wider than a fifth |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, x in (("fills: into the span", m["fills"]["into"]), ("fills: out of the span", m["fills"]["out_of"]),
                     ("Bach: the same seams", m["bach_same_seams"]), ("Bach: every bar line", m["bach_bar_lines"])):
        lines.append(f"| {label} | {x['n']:,} | {fmt(x['mean'], 2)} | {fmt(x['median'], 1)} | "
                     f"{fmt(x['share_over_fifth'])} |")
    return "\n".join(lines)


def harmonize_only(ckpt: str, args, out: Path) -> None:
    """The harmonization table for one checkpoint that fills (a bundled model, a run), on its
    own held-out chorales: the figures a user of that model gets, at its own budget."""
    model = load_generator(ckpt)
    if not model.vocab.fills:
        raise SystemExit(f"{ckpt} has no fill words: it cannot harmonize")
    pieces = held_out_pieces(datamodule_for(facts_of(model)))[: args.pieces]
    folder = out / "primers"
    folder.mkdir(parents=True, exist_ok=True)
    h = harmonize(model, pieces, args.samples, folder, args.candidates)
    (out / "harmonization.json").write_text(json.dumps({"checkpoint": ckpt, **h}, indent=1, default=float) + "\n")
    rows = [("Bach's four voices", "bach"), (f"soprano + {ckpt}'s alto/tenor/bass", "fills"),
            (f"the same, one of `fill.candidates={h['candidates']}`", "fills_candidates"), ("shuffled voices", "shuffled")]
    print(f"{h['pieces']} held-out chorales ({h['skipped']} skipped), {h['samples']} samples each")
    for label, key in rows:
        if key in h:
            print(f"  {label}: " + ", ".join(f"{name} {h[key][name]:.3f}" for name in ("cross_part_consonance",
                                                                                    "key_consistency")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget per model")
    parser.add_argument("--samples", type=int, default=2, help="fills written per chorale (harmonization, seams)")
    parser.add_argument("--candidates", type=int, default=8,
                        help="harmonization also with fill.candidates=N (fills written per piece; 1: not)")
    parser.add_argument("--pieces", type=int, default=None, help="only the first N test chorales (a quick check)")
    parser.add_argument("--orders", type=int, nargs="+", default=list(DEFAULT_ORDERS), help="n-gram orders to choose from")
    parser.add_argument("--parallel", type=int, default=2, choices=(1, 2))
    parser.add_argument("--fill-share", type=float, default=None, help="data.fill_share of the fills model (default: the config's)")
    parser.add_argument("--attention-heads", type=int, default=0,
                        help="model.attention_heads of the fills model (0: none, the default model)")
    parser.add_argument("--harmonize-only", metavar="CKPT", default=None,
                        help="only the harmonization, by this checkpoint (e.g. pretrained:bach_chorales): "
                             "printed and written to OUT/harmonization.json, no training, no section")
    parser.add_argument("--report-only", action="store_true", help="rewrite the section from OUT/results.json")
    training_options(parser, "outputs/benchmarks/fill")
    args = parser.parse_args()
    out = (ROOT / args.out).resolve()
    if args.report_only:
        text = markdown(json.loads((out / "results.json").read_text()))
        print(text)
        if not args.no_write:
            write_section("fill", text)
        return
    use_threads(args.threads)
    if args.harmonize_only:
        harmonize_only(args.harmonize_only, args, out)
        return
    t0 = time.perf_counter()
    print("encoding the Bach chorales", flush=True)
    run([sys.executable, "encode.py", "dataset=bach_chorales", "progress=false"], out / "encode.log")
    runs: dict = {}

    def one(variant: str) -> None:
        extra: tuple[str, ...] = ()
        if variant == "fills" and args.fill_share is not None:
            extra += (f"data.fill_share={args.fill_share}",)
        if variant == "fills" and args.attention_heads:
            extra += (f"model.attention_heads={args.attention_heads}",)
        runs[variant] = train(variant, args.minutes, out, args.reuse_runs, extra)

    jobs = [threading.Thread(target=one, args=(v,)) for v in VARIANTS]
    for i in range(0, len(jobs), args.parallel):  # side by side, so they share the machine alike
        [j.start() for j in jobs[i : i + args.parallel]]
        [j.join() for j in jobs[i : i + args.parallel]]
    if set(runs) != set(VARIANTS):
        raise SystemExit("a training run failed; see its log under " + str(out))
    models = {v: load_generator(runs[v]["best_checkpoint"]) for v in VARIANTS}
    if not models["fills"].vocab.fills:
        raise SystemExit("the fills run has no fill words: train it with data.fill_share above 0")
    dm = datamodule_for(facts_of(models["today"]))
    pieces = held_out_pieces(dm)[: args.pieces]
    folder = out / "primers"
    folder.mkdir(parents=True, exist_ok=True)
    results = {"runs": {v: {k: runs[v].get(k) for k in ("global_step", "seconds", "best_checkpoint", "no_validation")}
                        for v in VARIANTS}}
    results["likelihood"] = likelihood(models, pieces, dm, args.orders)
    print("  harmonization: writing alto, tenor and bass under each soprano ...", flush=True)
    results["harmonization"] = harmonize(models["fills"], pieces, args.samples, folder, args.candidates)
    print("  seams: writing the 4 middle bars anew ...", flush=True)
    results["seams"] = seams(models["fills"], pieces, args.samples, folder)
    # reused runs add the time they trained, side by side: the longer of them
    seconds = time.perf_counter() - t0 + max((r.get("seconds", 0.0) for r in runs.values() if r.get("reused")), default=0.0)
    results["settings"] = {"minutes": args.minutes, "samples": args.samples, "pieces": args.pieces, "fill_share": args.fill_share,
                           "attention_heads": args.attention_heads,
                           "orders": args.orders, "network": list(NETWORK), "machine": machine(), "seconds": seconds}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    text = markdown(results)
    print(text)
    if not args.no_write:
        write_section("fill", text)


if __name__ == "__main__":
    main()
