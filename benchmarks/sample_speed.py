"""Words per second of batched, grammar-constrained generation against the original sampling loop,
in the tracks view and the score view.

    python benchmarks/sample_speed.py [--samples 64] [--bars 8] [--repeats 3] [--ckpt PATH] [--threads N]

The original approach generated one sample at a time, one word per network step, and
picked each word in Python: logits to numpy, top-k, softmax, ``rng.choice`` (here it
carries the LSTM state too, so it re-feeds nothing: the fairest version of it). The new
sampler steps ``--samples`` rows together with the grammar mask, top-p filtering and the
draw all in torch (``deeporb.generation.loop.generate``). Both run on the same model (lstm_small:
2 x 256, random weights unless ``--ckpt`` is given) in this one process, in alternating
rounds so that a busy machine slows both alike; the best round of each is reported.

The score view writes a whole ensemble in one row (``<bos> inst_A inst_B ... bar ts ...``,
every part named, each made to play at least once, as ``sample.py instruments=[...]`` does);
its rows are timed beside the tracks view's one-row-per-part batches, and a 16-bar 4-part
piece is timed both ways (4 rows of one part, or 1 row of four).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

from deeporb.builtin_corpora.export import export_dataset  # noqa: E402
from deeporb.checkpoints import facts, load_generator  # noqa: E402
from deeporb.encoding.words import BOS, EncodingConfig, Vocabulary  # noqa: E402
from deeporb.generation.compose import Fill, Settings, generate_plans, plan  # noqa: E402
from deeporb.generation.loop import generate  # noqa: E402
from deeporb.generation.prompts import (  # noqa: E402
    MAX_PRIMER_BARS,
    Primer,
    build_prompts,
    load_primer,
    score_prompt,
)
from deeporb.model import LSTMGenerator  # noqa: E402

INSTRUMENTS = ("acoustic_bass", "acoustic_grand_piano", "drums", "violin")
VOICES = ("alto", "bass", "soprano", "tenor")  # the chorales' parts, for the fill rows


def lstm_small(seed: int = 0) -> LSTMGenerator:
    """configs/model/lstm_small.yaml's network with random weights."""
    torch.manual_seed(seed)
    vocab = Vocabulary(EncodingConfig(), INSTRUMENTS)
    return LSTMGenerator(vocab.to_dict(), embed_dim=256, hidden_size=256, num_layers=2,
                         dropout=0.1, tie_weights=True).eval()


def lstm_small_filling(seed: int = 0) -> LSTMGenerator:
    """The same network on the chorales' four voices, in the score view, with the fill words."""
    torch.manual_seed(seed)
    vocab = Vocabulary(EncodingConfig(), VOICES, fills=True)
    session = {"view": "score", "qpm_median": 100.0, "time_signatures": {"4/4": 1}, "instrument_key": "name",
               "instruments": {k: {"program": 52, "is_drum": False} for k in VOICES}}
    return LSTMGenerator(vocab.to_dict(), embed_dim=256, hidden_size=256, num_layers=2, dropout=0.1,
                         tie_weights=True, session=session).eval()


def chorale_primer(vocab: Vocabulary, bars: int) -> Primer:
    """The first built-in chorale of at least ``bars`` bars in one meter, read as a primer."""
    with tempfile.TemporaryDirectory(prefix="deeporb-sample-speed-") as cache:  # read, then removed
        folder = export_dataset("bach_chorales", cache, limit=12).folder
        primers = (load_primer(path, vocab, MAX_PRIMER_BARS, "name") for path in sorted(folder.glob("*.mid")))
        return next(p for p in primers if p.bars >= bars and len(p.meter.starts) == 1)


CANDIDATES = 8  # fill.candidates of the last fill row


def fill(model, primer: Primer, asked: Fill, samples: int, seed: int) -> tuple[int, float]:
    """``samples`` fills of ``primer`` (top-p 0.95): planned, then written. -> (words, seconds)."""
    t0 = time.perf_counter()
    planned = plan(model, Settings(fill=asked, seed=seed), samples, primer)
    rows = generate_plans(model, [planned])[0]
    return sum(len(r) for r in rows), time.perf_counter() - t0


@torch.inference_mode()
def original_loop(model, key: str, words: int, top_k: int, seed: int) -> tuple[int, float]:
    """One sequence, one word per step, the choice made in numpy. -> (words, seconds)."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    state = None
    for word in (BOS, f"inst_{key}"):
        logits, state = model.step(torch.tensor([model.vocab.index[word]]), state)
    for _ in range(words):
        p = logits[0].numpy().astype(np.float64)
        top = np.argpartition(p, -top_k)[-top_k:]
        w = np.exp(p[top] - p[top].max())
        token = int(rng.choice(top, p=w / w.sum()))
        logits, state = model.step(torch.tensor([token]), state)
    return words, time.perf_counter() - t0


def batched(model, key: str, samples: int, bars: int, top_k: int, top_p: float, seed: int) -> tuple[int, float]:
    """``samples`` rows of ``bars`` bars in one batch. -> (words generated, seconds)."""
    t0 = time.perf_counter()
    meter = facts(model).meter()
    prompts = build_prompts(model.vocab, [key], meter, None)
    rows = generate(model, prompts, samples, bars, temperature=1.0, top_k=top_k, top_p=top_p, seed=seed)
    return sum(len(r) for sample in rows for r in sample), time.perf_counter() - t0


def score(model, samples: int, bars: int, top_k: int, top_p: float, seed: int) -> tuple[int, float]:
    """``samples`` score rows (all of the model's parts, each made to play) of ``bars`` bars."""
    t0 = time.perf_counter()
    parts = list(model.vocab.instruments)
    prompt = score_prompt(model.vocab, parts, facts(model).meter(), None)
    rows = generate(model, [prompt], samples, bars, temperature=1.0, top_k=top_k, top_p=top_p, seed=seed,
                    view="score", ensembles=[parts])
    return sum(len(r) for sample in rows for r in sample), time.perf_counter() - t0


def piece_tracks(model, bars: int, top_k: int, seed: int) -> tuple[int, float]:
    """One piece of every part in the tracks view: a row per part, in one batch."""
    t0 = time.perf_counter()
    prompts = build_prompts(model.vocab, list(model.vocab.instruments), facts(model).meter(), None)
    rows = generate(model, prompts, 1, bars, temperature=1.0, top_k=top_k, top_p=1.0, seed=seed)
    return sum(len(r) for sample in rows for r in sample), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--baseline-words", type=int, default=1500)
    parser.add_argument("--top-k", type=int, default=5, help="the original loop's top-k")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ckpt", type=Path, default=None, help="a trained checkpoint instead of random weights")
    parser.add_argument("--fill-ckpt", type=Path, default=None,
                        help="a checkpoint that can fill, on the chorales' voices, for the fill rows (default: random weights)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_generator(args.ckpt) if args.ckpt else lstm_small()
    key = model.vocab.instruments[0]
    k, n = args.top_k, args.samples
    runs = [  # (sampler, batch, run(seed) -> (words, seconds))
        (f"original loop, numpy top-{k}", 1, lambda r: original_loop(model, key, args.baseline_words, k, r)),
        (f"batched, top-{k}", 1, lambda r: batched(model, key, 1, args.bars, k, 1.0, r)),
        (f"batched, top-{k}", 16, lambda r: batched(model, key, 16, args.bars, k, 1.0, r)),
        (f"batched, top-{k}", n, lambda r: batched(model, key, n, args.bars, k, 1.0, r)),
        ("batched, top-p 0.95 (sample.py default)", n, lambda r: batched(model, key, n, args.bars, 0, 0.95, r)),
        (f"score view, top-{k}", 1, lambda r: score(model, 1, args.bars, k, 1.0, r)),
        (f"score view, top-{k}", 16, lambda r: score(model, 16, args.bars, k, 1.0, r)),
        (f"score view, top-{k}", n, lambda r: score(model, n, args.bars, k, 1.0, r)),
        ("score view, top-p 0.95", n, lambda r: score(model, n, args.bars, 0, 0.95, r)),
        (f"tracks view, one piece of {len(model.vocab.instruments)} parts, top-{k}",
         len(model.vocab.instruments), lambda r: piece_tracks(model, args.bars, k, r)),
    ]
    filling = load_generator(args.fill_ckpt) if args.fill_ckpt else lstm_small_filling()
    primer = chorale_primer(filling.vocab, 12)
    voices = ", ".join(VOICES)
    runs += [
        (f"score view, the 4 voices ({voices}), {args.bars} bars, top-p 0.95", n,
         lambda r: score(filling, n, args.bars, 0, 0.95, r)),
        (f"fill: alto, tenor and bass under the soprano, all {primer.bars} bars", n,
         lambda r: fill(filling, primer, Fill(parts=["alto", "tenor", "bass"]), n, r)),
        ("fill: bars 5-8 of every voice", n, lambda r: fill(filling, primer, Fill(parts=list(VOICES), bars=[5, 8]), n, r)),
        (f"fill: alto, tenor and bass, `fill.candidates={CANDIDATES}` (rows: pieces x {CANDIDATES})", n,
         lambda r: fill(filling, primer, Fill(parts=["alto", "tenor", "bass"], candidates=CANDIDATES), n // CANDIDATES, r)),
    ]
    fills = 4  # the last runs: the plain score rows of the filling model, then its fills
    for _, _, run in runs:  # warm-up: first calls allocate and initialise kernels
        run(99)
    best: list[tuple[int, float] | None] = [None] * len(runs)
    for _ in range(args.repeats):
        for i, (_, _, run) in enumerate(runs):
            words, seconds = run(0)  # the same work every round: only the clock differs
            if best[i] is None or words / seconds > best[i][0] / best[i][1]:
                best[i] = (words, seconds)
    base_rate = best[0][0] / best[0][1]
    parts = len(model.vocab.instruments)
    piece_score, piece_tracks_s = best[5][1], best[-fills - 1][1]
    rows = []
    for (name, batch, _), (words, seconds) in zip(runs[:-fills], best[:-fills], strict=True):
        rate = words / seconds
        rows.append(f"| {name} | {batch} | {words:,} | {seconds:.3f} | {rate:,.0f} | {rate / base_rate:.1f}× |")
    plain_rate = best[-fills][0] / best[-fills][1]
    fill_rows = []
    for (name, batch, _), (words, seconds) in zip(runs[-fills:], best[-fills:], strict=True):
        rate = words / seconds
        fill_rows.append(f"| {name} | {batch} | {words:,} | {seconds:.3f} | {rate:,.0f} | {rate / plain_rate:.2f}× |")
    weights = f"checkpoint `{args.ckpt.name}`" if args.ckpt else "random weights"
    options = {"samples": n, "bars": args.bars, "top-k": k, "repeats": args.repeats, "threads": args.threads}
    command = "python benchmarks/sample_speed.py" + "".join(f" --{o} {v}" for o, v in options.items())
    if args.ckpt:
        command += f" --ckpt {args.ckpt}"
    if args.fill_ckpt:
        command += f" --fill-ckpt {args.fill_ckpt}"
    fhp = filling.hparams
    fill_weights = f"checkpoint `{args.fill_ckpt}`" if args.fill_ckpt else "random weights"
    hp = model.hparams
    markdown = "\n".join([
        "## Sampling speed",
        "",
        f"`{command}`; {machine()}, {torch.get_num_threads()} torch thread(s). "
        f"Model: {hp.num_layers} × {hp.hidden_size} LSTM, embedding {hp.embed_dim} "
        f"({model.parameter_count():,} parameters, {weights}), "
        f"{len(model.vocab)} words. Best of {args.repeats} alternating rounds, one process.",
        "",
        "The original loop samples one sequence, one word per network step, choosing in numpy "
        f"(top-{k}); it carries the LSTM state and has no grammar. The batched sampler "
        "(`deeporb.generation.loop.generate`) steps all rows together with the grammar mask, the filter "
        f"and the draw in torch; each row writes {args.bars} bars and leaves the batch when done "
        "(words counted are the words the rows kept). The top-p row sorts candidates per step; "
        "random weights spread probability widely, so its nucleus is larger than a trained model's.",
        "",
        "| sampler | batch | words | seconds | words/s | vs original |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"One {args.bars}-bar piece of {parts} parts ({', '.join(model.vocab.instruments)}): "
        f"**{piece_score:.3f} s** in the score view (one row), {piece_tracks_s:.3f} s in the tracks view "
        f"({parts} rows in one batch). Random weights write different numbers of words per bar in each "
        "view, so compare words/s; a score row is one sequence, so it runs at the batch-1 rate.",
        "",
        f"**Fills.** A {fhp.num_layers} × {fhp.hidden_size} LSTM on the chorales' four voices with the fill words "
        f"({fill_weights}), the {primer.bars}-bar chorale `{primer.path.name}` as the primer, in the same rounds. A fill's prompt is the whole "
        "chorale with its gap, read once per request; the notes a fill keeps are given word by word "
        "(`deeporb.generation.forced.KeptNotes`, per row in Python at each step), beside plain score rows of "
        "the same network. Words counted are those the rows wrote, the given notes included; with "
        f"`fill.candidates={CANDIDATES}`, only the fills drawn (one piece's {CANDIDATES} rows write one piece)."
        + ("" if args.fill_ckpt else " With random weights a row may not close a bar or pass a kept note's onset "
           "before that note is given, so it writes up to the bar's word limit there (512): compare words/s."),
        "",
        "| sampler | batch | words | seconds | words/s | vs plain score rows |",
        "|---|---:|---:|---:|---:|---:|",
        *fill_rows,
    ])
    print(markdown)
    if not args.no_write:
        write_section("sample_speed", markdown)


if __name__ == "__main__":
    main()
