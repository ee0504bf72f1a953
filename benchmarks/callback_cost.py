"""The sampling callback's share of a demo run (issue 12: keep it under 10% at the defaults).

    python benchmarks/callback_cost.py [--max-epochs 4] [--sessions-dir data/sessions]

Runs ``train.py experiment=demo`` in this process (``make demo``'s training: the Bach chorales
session, which ``python encode.py dataset=bach_chorales`` writes), with the default callbacks,
so :class:`deeporb.stages.callbacks.SampleLogger` runs at its defaults (``num_samples``,
``bars``, ``every_n_epochs`` from ``configs/callbacks/samples.yaml``; audio on), and the CSV
and TensorBoard loggers so its logging is counted too (wandb left out: its background
process makes the wall clock noisy). The callback times itself (``SampleLogger.seconds``:
generating, writing MIDI, piano rolls, WAVs, the page, and logging); the share is that over
the wall time of ``trainer.fit``.

Writes its section of docs/benchmarks.md (between ``<!-- callback_cost -->`` markers).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=4, help="the demo's own: 4")
    parser.add_argument("--sessions-dir", default=str(ROOT / "data" / "sessions"))
    parser.add_argument("--out", default=str(ROOT / "outputs" / "benchmarks" / "callback_cost"))
    args = parser.parse_args()

    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import deeporb.stages.train as stage
    from deeporb.stages.callbacks import SampleLogger

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "experiment=demo", f"paths.output_dir={args.out}", f"paths.sessions_dir={args.sessions_dir}",
            "logger=[csv,tensorboard]", f"trainer.max_epochs={args.max_epochs}", "trainer.max_time=null",
            "trainer.enable_progress_bar=false", "~callbacks.rich_progress_bar", "test=false",
        ])
    samples_cfg = cfg.callbacks.samples
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    model = instantiate(cfg.model, vocab=datamodule.vocab.to_dict(), session=datamodule.session_info(),
                        _convert_="all")
    callbacks = stage.instantiate_group(cfg.callbacks)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=stage.instantiate_group(cfg.logger),
                          _convert_="all")
    load = os.getloadavg()[0]  # a busy machine slows training more than the one-thread callback
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    total = time.perf_counter() - start
    (logger,) = [cb for cb in callbacks if isinstance(cb, SampleLogger)]
    calls = len(logger.folders)
    share = logger.seconds / total
    print(f"fit {total:.1f} s, {trainer.current_epoch} epochs, {calls} callback runs, "
          f"callback {logger.seconds:.1f} s = {100 * share:.1f}%")

    lines = [
        "## Sampling callback: its share of a demo run",
        "",
        f"`python benchmarks/callback_cost.py --max-epochs {args.max_epochs}` ({machine()}; load average "
        f"{load:.1f} at the start: on a busy machine training slows more than the callback, so the share is lower). "
        f"`train.py experiment=demo` (lstm_small 2×192 on the Bach chorales, CPU) with the default callbacks; "
        f"the sampling callback at its defaults: {samples_cfg.num_samples} samples × {samples_cfg.bars} bars "
        f"every {samples_cfg.every_n_epochs} epoch(s), audio on, logged to CSV and TensorBoard. It times "
        "itself: generation, MIDI, piano rolls, WAVs, the page and the logging.",
        "",
        "| fit wall time | epochs | callback runs | callback time | share |",
        "|---:|---:|---:|---:|---:|",
        f"| {total:.1f} s | {trainer.current_epoch} | {calls} | {logger.seconds:.1f} s "
        f"({logger.seconds / max(calls, 1):.2f} s a run) | **{100 * share:.1f}%** |",
        "",
        "Goal: under 10% of the run at the defaults.",
    ]
    write_section("callback_cost", "\n".join(lines))


if __name__ == "__main__":
    main()
