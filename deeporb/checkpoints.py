"""Checkpoints: resolve a run folder, read a checkpoint, load the model, the session facts it carries.

This is the package's one ``torch.load``, and it reads a checkpoint as data only
(``weights_only=True``: tensors, numbers, strings, lists and dicts). A checkpoint is a file
someone hands you, not code you chose to run: unpickling one in full would run whatever
objects it holds. Each way a checkpoint can be wrong (missing, truncated or not a torch file,
holding Python objects, someone else's checkpoint, an unreadable or mismatched vocabulary,
weights that do not fit) has its own one-line :class:`UserError`, whoever reads it: sampling,
evaluation, serving or training's resume and evaluate-only runs (whose second read, by
Lightning, is data only too).

A bundled model (``deeporb/pretrained/NAME.ckpt``, package data made by ``python -m deeporb.pretrained
export``) is a checkpoint like any other, named ``ckpt_path=pretrained:NAME``; :func:`checkpoint_or_default`
is what ``sample.py`` and ``serve.py`` load when no ``ckpt_path`` is given.
"""

from __future__ import annotations

import inspect
import json
import os
import pickle
import re
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from deeporb.data.facts import SessionFacts
from deeporb.encoding.words import Vocabulary
from deeporb.errors import UserError
from deeporb.model import LSTMGenerator

PRETRAINED = "pretrained:"  # ckpt_path=pretrained:NAME: the bundled model NAME
DEFAULT_PRETRAINED = "bach_chorales"  # what sample.py and serve.py load when no ckpt_path is given
PRETRAINED_DIR_ENV = "DEEPORB_PRETRAINED_DIR"  # another folder of bundled models (tests, models kept elsewhere)


def pretrained_dir() -> Path:
    """The folder of bundled models: ``$DEEPORB_PRETRAINED_DIR``, else the package's ``pretrained/``."""
    return Path(os.environ.get(PRETRAINED_DIR_ENV) or Path(__file__).with_name("pretrained")).expanduser()


def pretrained_names() -> list[str]:
    """The bundled models there (``NAME.ckpt``), by name."""
    folder = pretrained_dir()
    return sorted(p.stem for p in folder.glob("*.ckpt") if p.is_file()) if folder.is_dir() else []


def pretrained_path(name: str) -> Path:
    """The file of the bundled model ``name``; an unknown name is one line listing the bundled ones."""
    names = pretrained_names()
    if name not in names:  # a name, never a path: only the files listed are reachable
        have = ", ".join(PRETRAINED + n for n in names) or f"none in {pretrained_dir()} (make pretrained makes them)"
        raise UserError(f"no bundled model {name!r}; bundled: {have}")
    return pretrained_dir() / f"{name}.ckpt"


def checkpoint_or_default(path: str | Path | None) -> str:
    """``path`` when given; else the default bundled model (``pretrained:bach_chorales``), said in one
    line on stderr (stdout stays the app's own), or one error line when it is not there yet."""
    if path is not None and str(path) != "":
        return str(path)
    name = DEFAULT_PRETRAINED
    if name not in pretrained_names():
        raise UserError(f"no ckpt_path given, and the default bundled model {name!r} is not in {pretrained_dir()} "
                        "(make pretrained makes it); pass ckpt_path=PATH to a .ckpt file or a training run folder")
    card = pretrained_dir() / f"{name}.md"
    print(f"no ckpt_path given: using the bundled model {PRETRAINED}{name} (its card: {card})", file=sys.stderr)
    return PRETRAINED + name


def resolve_checkpoint(path: str | Path | None) -> Path:
    """A ``.ckpt`` file, ``pretrained:NAME`` (a bundled model), or a training run folder -> its best
    checkpoint (else ``last.ckpt``)."""
    if path is None or str(path) == "":
        raise UserError("pass ckpt_path=PATH (a .ckpt file, a training run folder or pretrained:NAME)")
    if str(path).startswith(PRETRAINED):
        return pretrained_path(str(path)[len(PRETRAINED):])
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise UserError(f"checkpoint {str(p)!r} not found; pass ckpt_path=PATH to a .ckpt file or a run folder")
    metrics = p / "metrics.json"
    if metrics.is_file():
        try:
            best = json.loads(metrics.read_text()).get("best_checkpoint")
        except (json.JSONDecodeError, AttributeError):
            best = None
        if best:  # absolute when written; the folder may have moved since
            for candidate in (Path(best), p / best, p / "checkpoints" / Path(best).name):
                if candidate.is_file():
                    return candidate
    for folder in (p / "checkpoints", p):
        best = sorted(folder.glob("best*.ckpt"), key=lambda f: (f.stat().st_mtime, f.name))
        if best:
            return best[-1]
    for candidate in (p / "checkpoints" / "last.ckpt", p / "last.ckpt"):
        if candidate.is_file():
            return candidate
    raise UserError(
        f"no checkpoint in run folder {str(p)!r} (looked for metrics.json best_checkpoint, "
        "checkpoints/best*.ckpt and last.ckpt); pass ckpt_path=FILE.ckpt"
    )


def unreadable(path: str | Path, e: Exception) -> UserError:
    """The one line for a ``torch.load(weights_only=True)`` of ``path`` that failed with ``e``:
    the Python object the file would have run when it names one (torch's error names the first
    global it refused), else what is wrong with the file; never torch's advice to load it unsafely."""
    where = repr(str(path))
    code = re.search(r"GLOBAL ([\w.]+)", str(e)) if isinstance(e, pickle.UnpicklingError) else None
    if code:
        return UserError(f"checkpoint {where} holds Python objects that loading would run ({code.group(1)}); "
                         "DeepOrb loads checkpoints as data only: use one written by train.py")
    text = str(e).split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    why = (lines[0] if lines else type(e).__name__)[:120]
    return UserError(f"cannot read checkpoint {where} (truncated, or not written by torch.save): {why}")


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict of a ``.ckpt`` file or run folder, checked to be a DeepOrb model
    whose weights match its own vocabulary (``state_dict``, ``hyper_parameters`` with
    ``vocab`` and ``session``, and what Lightning keeps for resuming)."""
    path = resolve_checkpoint(path)
    where = repr(str(path))
    try:
        with warnings.catch_warnings():  # a plain pickle's protocol warning: the error below says it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise unreadable(path, e) from None
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), Mapping)
            and isinstance(ckpt.get("hyper_parameters"), Mapping) and "vocab" in ckpt["hyper_parameters"]):
        raise UserError(f"{where} is not a DeepOrb checkpoint (no weights or vocabulary); pass a file written by train.py")
    try:
        vocab = Vocabulary.from_dict(ckpt["hyper_parameters"]["vocab"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"checkpoint {where} has an unreadable vocabulary ({e}); pass a file written by train.py") from None
    weights = ckpt["state_dict"].get("embedding.weight")
    if weights is None or weights.shape[0] != len(vocab):
        rows = None if weights is None else weights.shape[0]
        raise UserError(
            f"checkpoint {where} was trained with another vocabulary ({rows} words in its "
            f"weights, {len(vocab)} from its encoding config); sample with the code that trained it or retrain"
        )
    return ckpt


def load_generator(path: str | Path, device: str = "cpu") -> LSTMGenerator:
    """The ``LSTMGenerator`` of a checkpoint (file or run folder), in eval mode on ``device``;
    ``model.checkpoint_path`` says which file it came from."""
    path = resolve_checkpoint(path)
    ckpt = read_checkpoint(path)
    accepted = set(inspect.signature(LSTMGenerator.__init__).parameters) - {"self"}
    model = LSTMGenerator(**{k: v for k, v in ckpt["hyper_parameters"].items() if k in accepted})
    try:
        model.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as e:
        first = str(e).splitlines()[-1].strip()[:160]
        raise UserError(f"checkpoint {str(path)!r} does not fit its own model settings: {first}") from None
    missing = [k for k in model.state_dict() if k not in ckpt["state_dict"]]
    if missing:
        raise UserError(f"checkpoint {str(path)!r} lacks weights {', '.join(missing[:3])}; it is incomplete")
    model.checkpoint_path = path
    return model.to(device).eval()


def facts(source) -> SessionFacts:
    """The session facts of a model, a checkpoint (file or run folder), its hyper-parameters,
    or a bare ``hparams.session`` dict (which, unlike hyper-parameters, has no ``vocab``)."""
    if isinstance(source, SessionFacts):
        return source
    if isinstance(source, (str, Path)):
        source = read_checkpoint(source)["hyper_parameters"]
    hparams = getattr(source, "hparams", source)
    if "vocab" not in hparams:
        return SessionFacts.from_dict(hparams)
    return SessionFacts.from_dict(hparams.get("session"), Vocabulary.from_dict(hparams["vocab"]))
