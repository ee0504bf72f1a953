"""The train stage behind ``train.py``: build data, model, trainer and loggers from the Hydra
config, fit, evaluate the best checkpoint, and leave everything in the run folder.

A run folder (``outputs/train/DATE/TIME``) holds ``checkpoints/`` (best by ``val/loss`` and
``last.ckpt``), the loggers' files (``wandb/offline-run-*``, ``csv/``, ``tensorboard/``) and
``metrics.json`` (final val and test metrics, best checkpoint). Checkpoints are
self-contained: the model's hyper-parameters hold the vocabulary and the ``session`` facts
(:class:`deeporb.data.facts.SessionFacts`, read through :mod:`deeporb.checkpoints`), and the resolved run config rides
along under ``deeporb_config``, all plain data: every checkpoint this stage reads, its own
included, is loaded as data only (``weights_only=True``), by DeepOrb and by Lightning alike.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import pickle
import re
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue
from pytorch_lightning.loggers import TensorBoardLogger

from deeporb.checkpoints import (
    facts,
    load_generator,
    read_checkpoint,
    resolve_checkpoint,
    unreadable,
)
from deeporb.data.facts import SessionFacts, plain_data
from deeporb.encoding.words import Vocabulary
from deeporb.errors import UserError
from deeporb.model import LSTMGenerator
from deeporb.render.page import PAGE
from deeporb.session_store import session_name_for
from deeporb.stages.callbacks import SampleLogger

SIZE_KEYS = ("embed_dim", "hidden_size", "num_layers", "tie_weights", "attention_heads", "attention_window", "attention_dim")


def model_setting(settings, key: str):
    """A model setting from a checkpoint's hyper-parameters or a config; where it predates the
    key, ``LSTMGenerator``'s default (the one place it is written)."""
    return settings.get(key, inspect.signature(LSTMGenerator).parameters[key].default)


# ---------------------------------------------------------------------------------------
# config helpers


def wandb_offline() -> bool:
    """wandb syncs live only when the user has an API key and did not ask for offline mode."""
    if not os.environ.get("WANDB_API_KEY"):
        return True
    return os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun", "disabled")


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("wandb_offline", wandb_offline, replace=True)
    OmegaConf.register_new_resolver("wandb_online", lambda: not wandb_offline(), replace=True)
    OmegaConf.register_new_resolver("session_name", session_name_for, replace=True)


register_resolvers()


def resolved(cfg: DictConfig) -> dict:
    """The whole config as plain data; a missing mandatory value is a one-line user error."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        key = e.full_key or "a value"
        raise UserError(f"missing value for {key}: pass {key}=...") from None
    except InterpolationResolutionError as e:
        m = re.search(r"Missing mandatory value: ([\w.]+)", str(e))
        if m:
            raise UserError(f"missing value for {m.group(1)}: pass {m.group(1)}=...") from None
        raise


def instantiate_group(group: DictConfig | None) -> list:
    """Instantiate each ``_target_`` entry of a callbacks/logger group (None entries are off)."""
    if not group:
        return []
    return [instantiate(c, _convert_="all") for c in group.values() if c and "_target_" in c]


class ConfigInCheckpoint(pl.Callback):
    """Store the resolved run config in every checkpoint (reproducibility, not needed to sample)."""

    def __init__(self, config: dict) -> None:
        self.config = plain_data(config, "the run config")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["deeporb_config"] = self.config


class LastCheckpointAtEnd(pl.Callback):
    """Refresh ``last.ckpt`` when fitting stops between validations (max_steps, max_time,
    Ctrl-C), so ``ckpt_path=.../last.ckpt`` resumes from where training really stopped."""

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        from pytorch_lightning.callbacks import ModelCheckpoint

        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        for cb in trainer.callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.save_last and cb.dirpath:
                if getattr(cb, "_last_global_step_saved", -1) != trainer.global_step:
                    path = Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
                    trainer.save_checkpoint(path)
                    cb.last_model_path = str(path)
                return


# ---------------------------------------------------------------------------------------
# checkpoints


# the data settings that make a vocabulary (beside the sessions and instruments): a resumed run
# takes them from its checkpoint, since its weights fit no other
VOCABULARY_SETTINGS = ("score_order", "repeat_bars", "final_bar")


def check_compatible(hparams: dict, vocab: Vocabulary, ckpt_path: str, model_cfg: DictConfig | None) -> None:
    """A checkpoint must share the data's vocabulary (and, to resume, the model's sizes)."""
    theirs = Vocabulary.from_dict(hparams["vocab"])
    if theirs != vocab:
        raise UserError(
            f"checkpoint {ckpt_path} has a different vocabulary ({len(theirs)} words, instruments: "
            f"{', '.join(theirs.instruments)}) than the data ({len(vocab)} words, instruments: "
            f"{', '.join(vocab.instruments)}); use the checkpoint's data.session/data.instruments "
            "or train a new model without ckpt_path"
        )
    if model_cfg is not None:
        diff = [f"{k}={model_setting(hparams, k)} vs {model_setting(model_cfg, k)}" for k in SIZE_KEYS
                if model_setting(hparams, k) != model_setting(model_cfg, k)]
        if diff:
            raise UserError(
                f"checkpoint {ckpt_path} is a different model ({', '.join(diff)}); "
                "resume with the same model= config"
            )


def check_attention(model_cfg: DictConfig, carry_state: bool) -> None:
    """The look-back attention's settings, one line each (before the network is built)."""
    heads, window = int(model_setting(model_cfg, "attention_heads")), int(model_setting(model_cfg, "attention_window"))
    if not heads:
        return
    dim = int(model_setting(model_cfg, "attention_dim"))
    if heads < 0 or dim % heads:
        raise UserError(f"model.attention_heads={heads} must divide model.attention_dim={dim}")
    if window < 2:
        raise UserError(f"model.attention_window={window} must be at least 2 words")
    if carry_state:
        raise UserError("data.carry_state=true carries the LSTM state, not the attention's memory; "
                        "set model.attention_heads=0 with it (or data.carry_state=false)")


def data_config_from_checkpoint(cfg: DictConfig, session: SessionFacts) -> DictConfig:
    """To evaluate a checkpoint: the sessions, split, instruments and view it was trained on
    (the config's own values where the checkpoint does not know them)."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    asked = [data["session"]] if isinstance(data["session"], str) else list(data["session"])
    data.update({k: v for k, v in session.data_settings().items() if v is not None or k == "instruments"})
    if list(session.names) != asked:
        data["encode"] = None
    return OmegaConf.create(data)


def best_checkpoint(trainer: pl.Trainer) -> str:
    cb = trainer.checkpoint_callback
    return str(Path(cb.best_model_path).resolve()) if cb is not None and cb.best_model_path else ""


# ---------------------------------------------------------------------------------------
# logging


def log_run_facts(loggers: list, config: dict, model: LSTMGenerator, stats: dict) -> None:
    """Full config, parameter counts and dataset statistics, once, to every logger."""
    params = {
        "total": model.parameter_count(),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    facts = {**config, "params": params, "dataset": stats}
    for logger in loggers:
        logger.log_hyperparams(facts)


def wandb_run_dir(loggers: list) -> Path | None:
    from pytorch_lightning.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            return Path(logger.experiment.dir).parent
    return None


def finish_wandb(loggers: list) -> None:
    """Close the wandb run so a multirun's next job starts its own."""
    from pytorch_lightning.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()


def _plain(metrics: dict) -> dict:
    return {k: float(v) for k, v in sorted(metrics.items())}


def print_report(out_dir: Path, summary: dict, wandb_dir: Path | None, offline: bool,
                 tensorboard_dir: Path | None = None, samples_page: Path | None = None) -> None:
    """Where the run is and what it scored (plain lines: paths must stay copyable)."""
    print(f"run folder: {out_dir}")
    if summary.get("best_checkpoint"):
        print(f"best checkpoint: {summary['best_checkpoint']}")
    for split in ("val", "test"):
        m = summary.get(split) or {}
        shown = [f"{k.split('/')[1]} {v:.4f}" for k, v in m.items() if k.split("/")[1] in ("loss", "ppl", "acc", "bits_per_note")]
        if shown:
            print(f"{split}: {', '.join(shown)}")
    if wandb_dir is not None:
        if offline:
            print(f"wandb run (offline): {wandb_dir}\nupload it with: wandb sync {wandb_dir}")
        else:
            print(f"wandb run: {wandb_dir}")
    if tensorboard_dir is not None:
        print(f"tensorboard: tensorboard --logdir {tensorboard_dir}")
    if samples_page is not None:
        print(f"samples of the last validation: {samples_page}")


# ---------------------------------------------------------------------------------------
# the run


def train(cfg: DictConfig) -> float | None:
    """Fit and/or evaluate as the config says; write metrics.json; return ``optimized_metric``."""
    config = resolved(cfg)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    offline = wandb_offline()
    if offline and not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    ckpt_path = str(resolve_checkpoint(cfg.ckpt_path)) if cfg.get("ckpt_path") else None
    hparams = read_checkpoint(ckpt_path)["hyper_parameters"] if ckpt_path else None
    if not cfg.train and hparams is None:
        raise UserError("train=false needs ckpt_path=PATH to the checkpoint to evaluate")

    data_cfg = data_config_from_checkpoint(cfg, facts(hparams)) if (hparams and not cfg.train) else cfg.data
    if hparams and cfg.train:  # resuming: the data settings its vocabulary was made from
        settings = facts(hparams).data_settings()
        data_cfg = OmegaConf.merge(data_cfg, {k: settings[k] for k in VOCABULARY_SETTINGS})
    datamodule = instantiate(data_cfg, _convert_="all")
    datamodule.prepare_data()
    vocab = datamodule.vocab
    if hparams is not None:
        check_compatible(hparams, vocab, ckpt_path, cfg.model if cfg.train else None)

    if cfg.train:
        check_attention(cfg.model, datamodule.carry_state)
        model = instantiate(cfg.model, vocab=vocab.to_dict(), session=datamodule.session_info(), _convert_="all")
    else:
        model = load_generator(ckpt_path)

    loggers = instantiate_group(cfg.get("logger"))
    callbacks = instantiate_group(cfg.get("callbacks")) + [ConfigInCheckpoint(config), LastCheckpointAtEnd()]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, _convert_="all")
    log_run_facts(loggers, config, model, datamodule.statistics())

    summary: dict = {"output_dir": str(out_dir.resolve()), "optimized_metric": cfg.get("optimized_metric")}
    loading = ckpt_path  # the checkpoint Lightning reads next
    try:
        if cfg.train:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            best = best_checkpoint(trainer)
            summary["best_checkpoint"] = best
            last = out_dir / "checkpoints" / "last.ckpt"
            summary["last_checkpoint"] = str(last.resolve()) if last.is_file() else ""
            evaluate_from = best or None
        else:
            summary["best_checkpoint"] = str(Path(ckpt_path).resolve())
            evaluate_from = None
        summary["global_step"] = int(trainer.global_step)
        loading = evaluate_from
        loaded = {"datamodule": datamodule, "ckpt_path": evaluate_from, "weights_only": True, "verbose": False}
        summary["val"] = _plain(trainer.validate(model, **loaded)[0])
        if cfg.test:
            summary["test"] = _plain(trainer.test(model, **loaded)[0])
    except FloatingPointError as e:
        raise UserError(str(e).splitlines()[0]) from None
    except pickle.UnpicklingError as e:  # the file changed since read_checkpoint read it as data
        raise unreadable(loading, e) from None
    finally:
        wandb_dir = wandb_run_dir(loggers) if trainer.is_global_zero else None
        finish_wandb(loggers)

    if wandb_dir is not None:
        summary["wandb_dir"] = str(wandb_dir.resolve())
    if trainer.is_global_zero:
        (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
        tensorboard_dir = next((Path(lg.log_dir) for lg in loggers if isinstance(lg, TensorBoardLogger)), None)
        pages = [cb.folders[-1] / PAGE for cb in callbacks if isinstance(cb, SampleLogger) and cb.folders]
        print_report(out_dir, summary, wandb_dir, offline, tensorboard_dir, pages[-1] if pages else None)
    name = cfg.get("optimized_metric")
    if not name:
        return None
    value = summary.get(name.split("/")[0], {}).get(name)
    return None if value is None or math.isnan(value) else float(value)
