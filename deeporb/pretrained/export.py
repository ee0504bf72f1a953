"""Make a bundled model: a training run's best checkpoint as a compact file, and its card.

``python -m deeporb.pretrained export RUN NAME`` (``make pretrained`` trains and exports each
bundled model) writes ``NAME.ckpt`` and ``NAME.md`` into the package's ``pretrained/`` folder:

* ``NAME.ckpt`` is a checkpoint that :func:`deeporb.checkpoints.read_checkpoint` reads like any
  other, and nothing more: ``state_dict`` (every weight in float16, half the bytes of float32;
  loading casts them back), ``hyper_parameters`` (sizes, vocabulary, session facts) and
  ``pretrained`` (where it came from and its figures). No optimizer state, no run config: plain
  data, read with ``torch.load(weights_only=True)``. The session facts' ``sessions_dir`` is
  made relative to the folder the export runs in (``data/sessions``), so ``sample.py
  compare=true`` finds the held-out pieces on any machine that encoded the same corpora.
* ``NAME.md``, its card: data, steps, test bits/note, and the music statistics of 16 samples
  beside the held-out real pieces (what ``sample.py compare=true`` computes), per style for a
  model of several.

The samples are drawn from the compact file itself, so the card's figures are the shipped
model's, float16 weights included.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import yaml

from deeporb.checkpoints import (
    facts,
    load_generator,
    pretrained_dir,
    read_checkpoint,
    resolve_checkpoint,
)
from deeporb.data.datamodule import session_styles
from deeporb.data.facts import SessionFacts, plain_data
from deeporb.errors import UserError
from deeporb.evaluation.compare import compare_samples, overlap_summary
from deeporb.evaluation.likelihood import sessions_dir_of
from deeporb.fileio import atomic_write_bytes, atomic_write_text
from deeporb.session_store import load_manifest
from deeporb.stages.sample import RenderConfig, SampleConfig, sample

FORMAT = "deeporb-pretrained-1"
WEIGHTS = torch.float16  # float16 over bfloat16: 3 more mantissa bits, and LSTM weights are small numbers
NAME = re.compile(r"[a-z0-9][a-z0-9_]*")
SHOWN = ("cross_part", "scalar")  # the card's rows: how the parts sound together, then per piece
HEADLINE = {"cross_part_consonance": "Consonance between parts", "key_consistency": "Key fit"}  # the card leads with them


@dataclass
class Exported:
    file: Path
    card: Path
    bytes: int
    record: dict


def compact(ckpt: dict, record: dict) -> dict:
    """The shipped checkpoint: weights in :data:`WEIGHTS` (a tensor shared by two names, as tied
    embedding and head weights are, stays one tensor), hyper-parameters, ``pretrained``; nothing else."""
    halves: dict[tuple, torch.Tensor] = {}
    weights = {}
    for key, value in ckpt["state_dict"].items():
        if value.is_floating_point():
            value = halves.setdefault((value.data_ptr(), *value.shape), value.detach().to(WEIGHTS).contiguous())
        weights[key] = value
    hparams = plain_data(dict(ckpt["hyper_parameters"]), "hyper_parameters")
    session = dict(hparams.get("session") or {})
    if session.get("sessions_dir"):
        session["sessions_dir"] = portable(session["sessions_dir"])
    hparams["session"] = session
    return {"format": FORMAT, "state_dict": weights, "hyper_parameters": hparams,
            "global_step": int(ckpt.get("global_step") or 0), "pretrained": plain_data(record, "pretrained")}


def portable(path: str) -> str:
    """``path`` relative to the current folder when it lies inside it (``data/sessions``), else as is."""
    here, there = Path.cwd().resolve(), Path(path).resolve()
    return str(there.relative_to(here)) if there.is_relative_to(here) else str(path)


def run_facts(run: str | Path) -> tuple[dict, list[str] | None]:
    """The run folder's ``metrics.json`` ({} when ``run`` is a file or has none) and the training
    command's overrides (``.hydra/overrides.yaml``; None when unknown)."""
    folder = Path(run).expanduser()
    if not folder.is_dir():
        return {}, None
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    overrides = folder / ".hydra" / "overrides.yaml"
    return metrics, ([str(o) for o in yaml.safe_load(overrides.read_text()) or []] if overrides.is_file() else None)


def held_out_bits(metrics: dict, source: Path, log=print) -> tuple[float, str]:
    """Test bits per note: the run's own (train.py's test windows), else evaluate.py's on the same windows."""
    value = (metrics.get("test") or {}).get("test/bits_per_note")
    if value is not None:
        return float(value), "train.py's test windows"
    from deeporb.evaluation.likelihood import evaluate_checkpoints

    log(f"no test metrics beside {source}: scoring its test windows as evaluate.py mode=windows does")
    [evaluation] = evaluate_checkpoints([("model", source)], mode="windows", log=log)
    score = next(s for s in evaluation.scores if s.name == "model")
    return score.bits_per_note, "evaluate.py mode=windows"


def sets_to_compare(session: SessionFacts) -> list[tuple[str | None, SessionFacts]]:
    """(style, the facts of its session alone) per style of a model of several; else (None, all).
    Each session's style is read from its manifest where it is on disk (it must be, to compare):
    older checkpoints hold their styles sorted, not in their sessions' order."""
    if len(session.names) > 1 and len(session.styles) == len(session.names):
        styles = dict(zip(session.names, session.styles, strict=True))
        with contextlib.suppress(UserError):
            styles = session_styles({n: load_manifest(sessions_dir_of(session) / n) for n in session.names})
        return [(styles[name], replace(session, names=(name,), time_signatures=session.style_time_signatures.get(
                    styles[name], session.time_signatures)))
                for name in session.names]
    return [(None, session)]


def ensemble_statistics(model, file: Path, folder: Path, num_samples: int, bars: int, seed: int) -> dict:
    """{style or "all": {pieces, summary, rows}}: ``num_samples`` samples of ``bars`` bars (seed,
    sample.py's other defaults; the model draws the ensemble) beside the held-out test pieces."""
    out = {}
    for style, session in sets_to_compare(facts(model)):
        cfg = SampleConfig(ckpt_path=str(file), num_samples=num_samples, bars=bars, seed=seed, style=style,
                           out_dir=str(folder / f"samples_{style or 'all'}"),
                           render=RenderConfig(piano_roll=False, page=False))
        results = sample(cfg, model=model)
        # against every held-out piece of the style, whatever ensemble the model drew for it
        rows = compare_samples(results, session, instruments=list(session.instrument_keys))
        shown = [{k: r[k] for k in ("feature", "kind", "overlap", "gen_mean", "ref_mean", "n_gen", "n_ref")}
                 for r in sorted(rows, key=lambda r: SHOWN.index(r["kind"]) if r["kind"] in SHOWN else 0)
                 if r["kind"] in SHOWN]
        out[style or "all"] = {"sessions": list(session.names), "summary": overlap_summary(rows), "rows": shown}
    return out


def export(run: str | Path, name: str, out_dir: str | Path | None = None, num_samples: int = 16,
           bars: int = 16, seed: int = 0, log=print) -> Exported:
    """Write ``NAME.ckpt`` and ``NAME.md`` (into ``out_dir``, else :func:`pretrained_dir`) from the
    best checkpoint of ``run`` (a run folder, or a .ckpt file)."""
    if not NAME.fullmatch(name):
        raise UserError(f"name {name!r} must be lower-case letters, digits and _ (it becomes pretrained:{name})")
    source = resolve_checkpoint(run)
    ckpt = read_checkpoint(source)
    metrics, overrides = run_facts(run)
    bits, bits_from = held_out_bits(metrics, source, log)
    record = {
        "name": name,
        "source": source.name,
        "step": int(ckpt.get("global_step") or 0),  # the step of these weights (best by val/loss)
        "steps_trained": metrics.get("global_step"),
        "max_steps": ((ckpt.get("deeporb_config") or {}).get("trainer") or {}).get("max_steps"),
        "trained_by": "python train.py " + " ".join(overrides) if overrides is not None else None,
        "test_bits_per_note": bits,
        "test_bits_per_note_from": bits_from,
        "weights": str(WEIGHTS).removeprefix("torch."),
        "samples": {"num_samples": num_samples, "bars": bars, "seed": seed},
    }
    folder = Path(out_dir).expanduser() if out_dir else pretrained_dir()
    with tempfile.TemporaryDirectory(prefix="deeporb-export-") as tmp:
        draft = Path(tmp) / f"{name}.ckpt"  # the samples come from the very weights that ship
        torch.save(compact(ckpt, record), draft)
        model = load_generator(draft)
        log(f"sampling {num_samples} pieces of {bars} bars per set from {name} for its card")
        record["ensemble"] = ensemble_statistics(model, draft, Path(tmp), num_samples, bars, seed)
    data = io.BytesIO()
    torch.save(compact(ckpt, record), data)
    file, card = folder / f"{name}.ckpt", folder / f"{name}.md"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(file, data.getvalue())
    atomic_write_text(card, card_text(name, record, model, len(data.getvalue())))
    log(f"wrote {file} ({len(data.getvalue()) / 1e6:.2f} MB) and its card {card}")
    return Exported(file, card, len(data.getvalue()), record)


# ---------------------------------------------------------------------------------------
# the card


def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def card_text(name: str, record: dict, model, size: int) -> str:
    """The card: what the model is, how it was made, and how its samples compare with real music."""
    session, h = facts(model), model.hparams
    pieces = session.pieces or {}
    split = ", ".join(f"{pieces.get(s, '?')} {s}" for s in ("train", "val", "test"))
    styles = ", ".join(session.styles) or "– (one corpus)"
    made = f"`{record['trained_by']}`" if record["trained_by"] else "a run (its folder has no .hydra/overrides.yaml)"
    lines = [
        f"# pretrained:{name}",
        "",
        f"`python sample.py ckpt_path=pretrained:{name}` (or `serve.py`"
        + (", and both with no ckpt_path" if name == "bach_chorales" else "") + ") composes with it.",
        "",
        "| | |",
        "|---|---|",
        f"| data | {', '.join(session.names)} ({split} pieces, split by piece hash, val/test "
        f"{session.val_fraction}/{session.test_fraction}); {session.view} view; windows of {session.seq_len} words |",
        f"| styles | {styles} |",
        f"| instruments | {', '.join(session.instrument_keys)} |",
        f"| model | LSTM {h.num_layers} × {h.hidden_size}, embedding {h.embed_dim}, "
        f"{model.parameter_count():,} parameters, {len(model.vocab)} words |",
        f"| training | {_num(record['steps_trained'])} steps (max_steps {_num(record['max_steps'])}); "
        f"these weights: step {record['step']:,}, best by val/loss |",
        f"| made by | {made}, then `python -m deeporb.pretrained export RUN {name}` (`make pretrained` runs both "
        "for each bundled model) |",
        f"| file | `{name}.ckpt`, {size / 1e6:.2f} MB, {record['weights']} weights, no optimizer state |",
        f"| test bits/note | **{_num(record['test_bits_per_note'])}** ({record['test_bits_per_note_from']}) |",
        "",
    ]
    s = record["samples"]
    for key, stats in record["ensemble"].items():
        title = ", ".join(stats["sessions"]) if key == "all" else f"style={key}"
        summary = stats["summary"]
        n_ref = max((r["n_ref"] for r in stats["rows"]), default=0)
        lines += [
            f"## Samples beside real music ({title})",
            "",
            f"{s['num_samples']} samples of {s['bars']} bars (`sample.py num_samples={s['num_samples']} "
            f"bars={s['bars']} seed={s['seed']}" + ("" if key == "all" else f" style={key}")
            + "`, the other settings at their defaults, the model drawing the ensemble) beside the held-out "
            f"test pieces of {', '.join(stats['sessions'])} cut to the same length ({n_ref} excerpts), as "
            "`sample.py compare=true` computes them. Overlap: 1 = the same distribution, 0 = disjoint.",
            "",
            f"Mean overlap: histograms {_num(summary['histogram'])}, scalars {_num(summary['scalar'])}, "
            f"cross-part {_num(summary['cross_part'])}."
            + "".join(f" {HEADLINE[r['feature']]}: samples **{_num(r['gen_mean'])}**, real {_num(r['ref_mean'])}."
                      for r in stats["rows"] if r["feature"] in HEADLINE),
            "",
            "| feature | samples (mean) | real (mean) | overlap |",
            "|---|---:|---:|---:|",
            *(f"| {r['feature']} | {_num(r['gen_mean'])} | {_num(r['ref_mean'])} | {_num(r['overlap'])} |"
              for r in stats["rows"]),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m deeporb.pretrained export RUN NAME [--out DIR] [--samples 16] [--bars 16] [--seed 0]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m deeporb.pretrained",
                                     description="Bundle a trained model: a compact checkpoint and its card.")
    commands = parser.add_subparsers(dest="command", required=True)
    ex = commands.add_parser("export", help="write NAME.ckpt and NAME.md from a run's best checkpoint")
    ex.add_argument("run", help="a training run folder (or a .ckpt file)")
    ex.add_argument("name", help="the bundled model's name: ckpt_path=pretrained:NAME")
    ex.add_argument("--out", default=None, help=f"folder to write to (default: {pretrained_dir()})")
    ex.add_argument("--samples", type=int, default=16, help="samples compared with real music on the card")
    ex.add_argument("--bars", type=int, default=16)
    ex.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    export(args.run, args.name, args.out, args.samples, args.bars, args.seed)
