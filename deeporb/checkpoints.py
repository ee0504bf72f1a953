"""Checkpoints: resolve a run folder, read a checkpoint, load the model, the session facts it carries."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch

from deeporb.encoding.words import Vocabulary
from deeporb.errors import UserError
from deeporb.instruments import key_program


def resolve_checkpoint(path: str | Path | None) -> Path:
    """A ``.ckpt`` file, or a training run folder -> its best checkpoint (else ``last.ckpt``)."""
    if path is None or str(path) == "":
        raise UserError("pass ckpt_path=PATH (a .ckpt file or a training run folder)")
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


def load_generator(path: str | Path, device: str = "cpu"):
    """Load an ``LSTMGenerator`` for sampling, with a clear error for a wrong or broken file."""
    from deeporb.model import LSTMGenerator

    path = resolve_checkpoint(path)
    try:  # full unpickling, as Lightning does: a checkpoint is trusted like any code you run
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise UserError(f"cannot read checkpoint {str(path)!r}: {first}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "vocab" not in ckpt.get("hyper_parameters", {}):
        raise UserError(f"{str(path)!r} is not a DeepOrb checkpoint (no weights or vocabulary); pass a file written by train.py")
    hparams = dict(ckpt["hyper_parameters"])
    try:
        vocab = Vocabulary.from_dict(hparams["vocab"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"checkpoint {str(path)!r} has an unreadable vocabulary ({e})") from None
    weights = ckpt["state_dict"].get("embedding.weight")
    if weights is None or weights.shape[0] != len(vocab):
        rows = None if weights is None else weights.shape[0]
        raise UserError(
            f"checkpoint {str(path)!r} was trained with another vocabulary ({rows} words in its "
            f"weights, {len(vocab)} from its encoding config); sample with the code that trained it or retrain"
        )
    accepted = set(inspect.signature(LSTMGenerator.__init__).parameters) - {"self"}
    model = LSTMGenerator(**{k: v for k, v in hparams.items() if k in accepted})
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


def session_info(model) -> dict:
    """The checkpoint's session facts, with defaults for anything a trainer left out."""
    session = dict(model.hparams.get("session") or {})
    session.setdefault("qpm_median", 120.0)
    session.setdefault("time_signatures", {"4/4": 1})
    session.setdefault("instruments", {})
    session.setdefault("instrument_key", "program")
    return session


def instrument_program(key: str, session: dict) -> tuple[int, bool]:
    """Instrument key -> (GM program, is_drum): the session's record first, then the GM name."""
    info = (session.get("instruments") or {}).get(key) or {}
    program, is_drum = key_program(key)
    if "program" in info:
        program = int(info["program"])
    if "is_drum" in info:
        is_drum = bool(info["is_drum"])
    return program, is_drum
