"""Training speed of train.py's Trainer against a bare PyTorch loop, and lstm_small against
the original network (``experiment=original_baseline``) at equal wall-clock time.

    python benchmarks/train_speed.py [--midi-dir ../shared/data/beethoven] [--steps 30]
                                     [--rounds 2] [--minutes 3] [--skip-quality]

1. Throughput: the same model (``lstm_small``, same seed), the same batches (drawn once from
   the session's training windows, transposition on) and the same optimizer, schedule and
   gradient clipping, trained once by the Lightning Trainer that train.py builds (its trainer
   config, callbacks and a CSV logger; checkpointing and early stopping left out since no
   validation runs) and once by a plain loop. Words per second count the predicted (non-pad)
   words, timed from the end of the warm-up steps to the last step. Rounds alternate so a busy
   machine slows both alike; the best round of each is reported. Goal: >= 0.9 of the bare loop.
2. Quality at equal time: ``python train.py data=midi_folder midi_dir=... model=M
   trainer.max_time=...`` for lstm_small and original (with ``experiment=original_baseline``, its
   windows of 16 words in batches of 16), each in a fresh process; val bits per
   note of the best checkpoint (or the last weights when no validation ran in time).

Writes its section of docs/benchmarks.md (between ``<!-- train_speed -->`` markers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, write_section  # noqa: E402

import deeporb.stages.train  # noqa: E402,F401 - config resolvers


def compose_config(midi_dir: str, sessions_dir: str, out: Path, *overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[
            "data=midi_folder", f"midi_dir={midi_dir}", f"paths.sessions_dir={sessions_dir}",
            "model=lstm_small", "trainer=cpu", "logger=csv", f"paths.output_dir={out}", *overrides,
        ])


def fresh_model(cfg, dm):
    from hydra.utils import instantiate

    torch.manual_seed(0)
    return instantiate(cfg.model, vocab=dm.vocab.to_dict(), session=dm.session_info(), _convert_="all")


def words_in(batch: dict) -> int:
    return int((batch["tokens"][:, 1:] != 0).sum())


def bare_loop(cfg, dm, batches: list[dict], warmup: int) -> float:
    """Words per second of a plain loop: forward, cross-entropy, backward, clip, step."""
    model = fresh_model(cfg, dm)
    model.train()
    optimizer = model.optimizer_factory(model.parameters())
    scheduler = model.scheduler_factory(optimizer, total_steps=len(batches)) if model.scheduler_factory else None
    clip = cfg.trainer.gradient_clip_val
    start = None
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        tokens = batch["tokens"]
        logits, _ = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1), ignore_index=0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    elapsed = time.perf_counter() - start
    return sum(words_in(b) for b in batches[warmup:]) / elapsed


def trainer_loop(cfg, dm, batches: list[dict], warmup: int, out: Path) -> float:
    """Words per second of the Trainer train.py builds, on the same batches."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from torch.utils.data import DataLoader

    from deeporb.stages.train import instantiate_group

    marks: dict[str, float] = {}

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == warmup:
                marks["start"] = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            marks["end"] = time.perf_counter()

    kept = {name: c for name, c in cfg.callbacks.items() if name not in ("model_checkpoint", "early_stopping", "samples")}
    model = fresh_model(cfg, dm)
    trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_group(kept) + [Clock()],
        logger=[instantiate(c, save_dir=str(out)) for c in cfg.logger.values()],
        max_steps=len(batches), max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0,
        enable_checkpointing=False, _convert_="all",
    )
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(model, train_dataloaders=loader)
    return sum(words_in(b) for b in batches[warmup:]) / (marks["end"] - marks["start"])


def throughput(args, work: Path) -> dict:
    from hydra.utils import instantiate

    cfg = compose_config(args.midi_dir, args.sessions_dir, work / "speed")
    dm = instantiate(cfg.data, _convert_="all")
    dm.prepare_data()
    torch.manual_seed(0)
    loader = iter(dm.train_dataloader())
    batches = [next(loader) for _ in range(args.warmup + args.steps)]
    model = fresh_model(cfg, dm)
    bare, lightning = [], []
    for r in range(args.rounds):
        if r % 2 == 0:  # alternate which goes first
            bare.append(bare_loop(cfg, dm, batches, args.warmup))
            lightning.append(trainer_loop(cfg, dm, batches, args.warmup, work / f"speed{r}"))
        else:
            lightning.append(trainer_loop(cfg, dm, batches, args.warmup, work / f"speed{r}"))
            bare.append(bare_loop(cfg, dm, batches, args.warmup))
        print(f"round {r + 1}: bare {bare[-1]:,.0f} words/s, trainer {lightning[-1]:,.0f} words/s", flush=True)
    return {
        "bare": max(bare), "trainer": max(lightning), "rounds": args.rounds, "steps": args.steps,
        "warmup": args.warmup, "batch": tuple(batches[0]["tokens"].shape), "params": model.parameter_count(),
        "session": dm.names[0], "words_per_step": sum(words_in(b) for b in batches[args.warmup:]) / args.steps,
        "all_bare": bare, "all_trainer": lightning,
    }


def quality(args, work: Path) -> list[dict]:
    """train.py in a fresh process per model, each for the same wall-clock time."""
    minutes = args.minutes
    limit = f"00:00:{int(minutes):02d}:{int(round((minutes % 1) * 60)):02d}"
    rows = []
    for model in ("lstm_small", "original"):
        out = work / f"quality_{model}"
        cmd = [
            sys.executable, str(ROOT / "train.py"), "data=midi_folder", f"midi_dir={args.midi_dir}",
            f"paths.sessions_dir={args.sessions_dir}", "experiment=original_baseline" if model == "original" else f"model={model}", "trainer=cpu", "logger=csv",
            f"trainer.max_time={limit}", "test=false", f"hydra.run.dir={out}",
            "trainer.enable_progress_bar=false", "++callbacks.rich_progress_bar=null",
        ]
        print(" ".join(cmd[1:]), flush=True)
        started = time.perf_counter()
        env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if proc.returncode:
            raise SystemExit(f"train.py failed for {model}:\n{proc.stderr[-3000:]}")
        metrics = json.loads((out / "metrics.json").read_text())
        config = yaml.safe_load((out / ".hydra" / "config.yaml").read_text())
        from deeporb.checkpoints import load_generator

        params = load_generator(metrics["last_checkpoint"]).parameter_count()
        seq_len, batch = config["data"]["seq_len"], config["data"]["batch_size"]
        rows.append({
            "model": model, "params": params, "seq_len": seq_len, "batch": batch,
            "steps": metrics["global_step"], "seen": metrics["global_step"] * batch * seq_len, "wall": wall, **{k.split("/")[1]: v for k, v in metrics["val"].items()},
        })
        print(f"{model}: val bits/note {metrics['val']['val/bits_per_note']:.3f} after {metrics['global_step']} steps", flush=True)
    return rows


def markdown(args, speed: dict | None, rows: list[dict] | None) -> str:
    cmd = "python benchmarks/train_speed.py " + " ".join(sys.argv[1:])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "## Training speed and the original baseline", "",
        f"`{cmd.strip()}`; {machine()}; torch threads: {torch.get_num_threads()}; "
        f"load average when the script started: {args.load}, at the end: {load} (the machine is shared).", "",
    ]
    shown_dir = os.path.relpath(args.midi_dir, ROOT)
    if speed:
        b, t, s = speed["batch"], speed["trainer"], speed
        lines += [
            f"**Trainer vs bare loop.** Model `lstm_small` ({s['params']:,} parameters), {s['steps']} batches of "
            f"{b[0]} × {b[1] - 1} words from session `{s['session']}` (≈{s['words_per_step']:,.0f} predicted words "
            f"per batch), after {s['warmup']} warm-up steps; AdamW, warm-up/cosine schedule, clipping at 1.0 in both. "
            f"The Trainer is train.py's (trainer=cpu, its progress bar, learning-rate monitor and model summary, "
            f"CSV logger, per-step metric sums and logging). Best of {s['rounds']} alternating rounds.",
            "",
            "| loop | words/s | vs bare loop |",
            "|---|---:|---:|",
            f"| bare PyTorch loop | {s['bare']:,.0f} | 1.00 |",
            f"| train.py's Lightning Trainer | {t:,.0f} | {t / s['bare']:.2f} |",
            "",
            "All rounds (words/s): bare " + ", ".join(f"{x:,.0f}" for x in s["all_bare"])
            + "; trainer " + ", ".join(f"{x:,.0f}" for x in s["all_trainer"]) + ".",
            "",
        ]
    if rows:
        lines += [
            f"**lstm_small vs original at equal wall-clock time.** `python train.py data=midi_folder midi_dir={shown_dir} "
            f"model=M trainer=cpu trainer.max_time=…` for {args.minutes:g} minutes each (validation inside the limit), "
            "one process each, one after the other. Validation bits per note of the best checkpoint on the "
            "held-out pieces (split by piece hash, 10%); each model is scored on windows of its own sequence length.",
            "",
            "| model | parameters | seq_len × batch | steps | words seen (M) | process wall s | val loss | val acc | val bits/note |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['model']} | {r['params']:,} | {r['seq_len']} × {r['batch']} | {r['steps']:,} | {r['seen'] / 1e6:.1f} | {r['wall']:.0f} | "
                f"{r['loss']:.3f} | {r['acc']:.3f} | {r['bits_per_note']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--midi-dir", default=str(ROOT.parent / "shared" / "data" / "beethoven"))
    p.add_argument("--sessions-dir", default=str(ROOT / "data" / "sessions"))
    p.add_argument("--workdir", default="/tmp/deeporb_train_speed")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--no-write", action="store_true", help="print the section instead of writing docs/benchmarks.md")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    speed = None if args.skip_speed else throughput(args, work)
    rows = None if args.skip_quality else quality(args, work)
    text = markdown(args, speed, rows)
    print(text)
    if not args.no_write:
        write_section("train_speed", text)


if __name__ == "__main__":
    main()
