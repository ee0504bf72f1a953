"""Listen and look while training: a few pieces from the current weights after validation.

:class:`SampleLogger` (``configs/callbacks/samples.yaml``, on by default, off in ``debug``
configs) runs the sample stage (:func:`deeporb.stages.sample.sample`) on the model being
trained, with fixed seeds so that the pieces of one epoch compare with the last epoch's,
into ``RUN/samples/epochNNN-stepNNNNNN/`` (MIDI, piano rolls, WAVs and ``index.html``; the
folder is claimed like any ``sample.py`` out_dir, so files DeepOrb did not write are never
overwritten), and hands them to every logger of the run:

* wandb: one ``wandb.Table`` per validation (piano roll, audio, the MIDI file as a download
  link, instruments, every music statistic of each sample), and each sample's piano roll and
  audio under its own key, so the media panels step through the epochs;
* TensorBoard: the piano rolls as images and the audio (mono, 22.05 kHz) as audio summaries;
* all of them (CSV too): the statistics' means over the samples as scalars, ``samples/*``, and
  the set's form figures (:func:`deeporb.evaluation.form.summarize_form`), ``samples/form/*``.

Only global rank 0 samples (the others go on to the next epoch and wait for it there).
Its cost is measured by ``benchmarks/callback_cost.py`` (``docs/benchmarks.md``).

:class:`TimeGuard` (``experiment=demo``'s ``callbacks.time_guard``) cuts a run counted in steps
short on a slow machine, and says so in one line.
"""

from __future__ import annotations

import base64
import html
import math
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

from deeporb.errors import UserError
from deeporb.evaluation.form import summarize_form
from deeporb.generation.compose import Settings
from deeporb.render.audio import read_wav, resample
from deeporb.render.page import beats_per_bar, sample_statistics
from deeporb.stages.sample import RenderConfig, SampleConfig, SampleResult, sample

LOG_RATE = 22_050  # TensorBoard audio: mono at this rate keeps the event files small


class SampleLogger(pl.Callback):
    """Generate ``num_samples`` pieces every ``every_n_epochs`` validations and log them (see the
    module doc). ``settings``: any sampling setting of :class:`deeporb.generation.compose.Settings`
    (bars, seed, temperature, top_p, instruments, ...), the rest at its defaults; unlike sample.py
    the callback writes 4 bars from seed 0 unless told otherwise, so epochs compare. ``seconds``
    adds up the time it took, for the benchmark."""

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 2, audio: bool = True, out_dir: str | None = None,
                 **settings) -> None:
        unknown = sorted(set(settings) - {f.name for f in fields(Settings)})
        if unknown:
            raise UserError(f"callbacks.samples has no setting {', '.join(unknown)}; its sampling settings are "
                            f"those of sample.py: {', '.join(f.name for f in fields(Settings))}")
        self.every_n_epochs, self.num_samples, self.audio, self.out_dir = every_n_epochs, num_samples, audio, out_dir
        self.settings = {"bars": 4, "seed": 0, **settings}
        self.seconds = 0.0
        self.folders: list[Path] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        fitting = trainer.state.fn == TrainerFn.FITTING  # not the final trainer.validate() of train.py
        if not fitting or trainer.sanity_checking or trainer.fast_dev_run or not trainer.is_global_zero:
            return
        if self.every_n_epochs < 1 or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        start = time.perf_counter()
        root = Path(self.out_dir) if self.out_dir else Path(trainer.default_root_dir) / "samples"
        folder = root / f"epoch{trainer.current_epoch:03d}-step{trainer.global_step:06d}"
        cfg = SampleConfig(**self.settings, num_samples=self.num_samples, device=str(pl_module.device),
                           out_dir=str(folder), render=RenderConfig(audio=self.audio))
        was_training = pl_module.training
        try:
            results = sample(cfg, model=pl_module)
        finally:
            pl_module.train(was_training)
        stats = [sample_statistics(r.tracks, beats_per_bar(r.time_signature)) for r in results]
        scalars = {f"samples/{k}": mean for k in stats[0] if math.isfinite(mean := _nanmean([s[k] for s in stats]))}
        scalars["samples/notes"] = float(np.mean([r.notes for r in results]))
        scalars |= {f"samples/{k}": v for k, v in summarize_form([r.form for r in results]).items() if math.isfinite(v)}
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=trainer.global_step)
            kind = type(logger).__name__
            if kind == "WandbLogger":
                log_wandb(logger, results, stats, trainer.current_epoch, trainer.global_step)
            elif kind == "TensorBoardLogger":
                log_tensorboard(logger, results, trainer.global_step)
        self.folders.append(folder)
        self.seconds += time.perf_counter() - start


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def midi_link(path: Path) -> str:
    """The MIDI file inside the page as a data-URI download link (a few kB), so the table
    carries the file itself, offline runs included."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = html.escape(path.name)
    return f'<a download="{name}" href="data:audio/midi;base64,{data}">{name}</a>'


def log_wandb(logger, results: list[SampleResult], stats: list[dict], epoch: int, step: int) -> None:
    """One ``wandb.Table`` row per sample under ``samples/table``, and each sample's piano roll
    and audio under its own key (``samples/sample_000/piano_roll``, ``.../audio``): wandb's
    media panels then step through the epochs, and the files land in the run's own folder
    (``files/media``; the table's copies go to wandb's artifact staging until it syncs)."""
    import wandb

    names = list(stats[0])
    table = wandb.Table(columns=["epoch", "step", "sample", "piano_roll", "audio", "midi", "instruments",
                                 "notes", "bars", *names])
    media = {}
    for r, s in zip(results, stats, strict=True):
        image = wandb.Image(str(r.png), caption=r.midi.name) if r.png else None
        audio = wandb.Audio(str(r.wav), caption=r.midi.name) if r.wav else None
        table.add_data(
            epoch, step, r.midi.name, image, audio, wandb.Html(midi_link(r.midi), inject=False),
            ", ".join(f"{t.name} ({len(t)})" for t in r.tracks),
            r.notes, r.bars, *(None if not math.isfinite(s[k]) else s[k] for k in names),
        )
        media |= {f"samples/{r.midi.stem}/piano_roll": image, f"samples/{r.midi.stem}/audio": audio}
    logger.experiment.log({"samples/table": table, **{k: v for k, v in media.items() if v is not None},
                           "trainer/global_step": step})


def log_tensorboard(logger, results: list[SampleResult], step: int) -> None:
    """Piano rolls as images (``samples/NAME/piano_roll``), audio as mono audio summaries."""
    import matplotlib.image as mpimg

    writer = logger.experiment
    for r in results:
        tag = f"samples/{r.midi.stem}"
        if r.png:
            writer.add_image(f"{tag}/piano_roll", mpimg.imread(r.png)[..., :3], step, dataformats="HWC")
        if r.wav:
            audio, rate = read_wav(r.wav)
            mono = resample(audio.mean(0, keepdims=True), rate, LOG_RATE)
            writer.add_audio(f"{tag}/audio", mono, step, sample_rate=LOG_RATE)
    writer.flush()


class TimeGuard(pl.Callback):
    """Stop fitting after ``max_seconds`` of training and say so in one line: a run whose budget
    is counted in steps (``trainer.max_steps``) still ends in time on a busy machine, and its
    user learns that the model got fewer steps than the config asks. Lightning's own
    ``trainer.max_time`` stops as quietly as a finished run (one log line, no steps)."""

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = float(max_seconds)
        self.start: float | None = None
        self.stopped_at: int | None = None  # the step training was cut at, when it was

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start, self.stopped_at = time.perf_counter(), None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        if self.start is not None and self.stopped_at is None and time.perf_counter() - self.start >= self.max_seconds:
            trainer.should_stop = True
            self.stopped_at = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.stopped_at is not None and trainer.is_global_zero:
            planned = f" of {trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else ""
            print(f"time guard: training stopped at step {self.stopped_at}{planned} after {self.max_seconds:g} s "
                  "(the machine is busy or slow), so the model is less trained than its config asks; "
                  "callbacks.time_guard=null trains every step", flush=True)
