"""The evaluate stage: checkpoints beside an n-gram on the same held-out words, as tables.

``python evaluate.py ckpt_path=RUN_OR_CKPT`` (or ``checkpoints={small: RUN1, original: RUN2}``
for several, by label) runs :func:`evaluate` with an :class:`EvaluateConfig`; the scoring
itself is :func:`deeporb.evaluation.likelihood.evaluate_checkpoints`; with ``fills=true`` (the
default) a second table per test split scores the notes of standard gaps given the rest of each
piece (:mod:`deeporb.evaluation.fills`), so a checkpoint that fills is seen beside the same
checkpoint, or another, reading left to right.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeporb.errors import UserError
from deeporb.evaluation.fills import FillEvaluation, evaluate_fills
from deeporb.evaluation.likelihood import DEFAULT_ORDERS, Evaluation, evaluate_checkpoints


@dataclass
class EvaluateConfig:
    """The settings of ``python evaluate.py``: the one home of their defaults
    (``configs/evaluate.yaml`` composes this schema and adds only Hydra's own settings)."""

    ckpt_path: str | None = None  # a .ckpt file, or a training run folder (its best checkpoint)
    checkpoints: Any = None  # {label: .ckpt or run folder}; typed Any so an override can set it whole
    mode: str = "tracks"  # tracks: whole test tracks; windows: each checkpoint's own test windows
    orders: list[int] = field(default_factory=lambda: list(DEFAULT_ORDERS))  # n-gram orders to choose from
    sessions_dir: str | None = None  # where the sessions are, when not where training found them
    batch_size: int = 32
    device: str = "cpu"  # or cuda
    json: str | None = None  # also write the rows to this JSON file
    fills: bool = True  # also score fills (score-view checkpoints): bits/note of 4 middle bars and of each part, given the rest


def describe(ev: Evaluation) -> str:
    """The title of a table: which pieces, how they were framed, what the n-gram saw."""
    d = ev.data
    framing = (
        "full tracks (<bos> inst_KEY ... <eos>)"
        if d["mode"] == "tracks"
        else f"the DataModule's test windows of seq_len {d['seq_len']}"
    )
    return (
        f"test split of {', '.join(d['sessions'])}: {d['pieces']['test']} pieces, {d['test_tracks']} tracks, "
        f"scored as {framing}; n-gram fitted on {d['pieces']['train']} train pieces, order chosen on "
        f"{d['pieces']['val']} val pieces"
    )


def print_tables(evaluations: Sequence[Evaluation], console=None) -> None:
    """One rich table per test split: the n-gram row, then each checkpoint."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for ev in evaluations:
        table = Table(title=describe(ev), title_justify="left")
        table.add_column("model")
        for col in ("test bits/note", "bits/word", "words", "notes"):
            table.add_column(col, justify="right")
        table.add_column("about")
        for s in ev.scores:
            table.add_row(s.name, f"{s.bits_per_note:.4f}", f"{s.bits_per_word:.4f}",
                          f"{s.words:,}", f"{s.notes:,}", s.about)
        console.print(table)


def print_fill_tables(fills: Sequence[FillEvaluation], console=None) -> None:
    """One rich table per test split: bits/note of the standard gaps' notes, each row read as
    it can (a fill given the whole piece, or left to right)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for fe in fills:
        d = fe.data
        b, p = d["bars4"], d["part"]
        title = f"fills, test split of {', '.join(d['sessions'])}: bits/note of the notes in a gap, given the rest"
        caption = (f"bars4: 4 middle bars of every part ({b['gaps']} gaps, {b['notes']:,} notes; {b['skipped_pieces']} "
                   f"pieces skipped: too short). part: each part throughout, the mean over {', '.join(p['parts']) or 'no parts'} "
                   f"({p['gaps']} gaps, {p['notes']:,} notes; {p['skipped_pieces']} pieces change meter). fill: the "
                   "fill's words after the piece with its gap; left to right: the words of the same notes in the plain row")
        table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
        table.add_column("model")
        table.add_column("reads")
        for col in ("bars4 bits/note", "part bits/note"):
            table.add_column(col, justify="right")
        table.add_column("each part")
        for s in fe.scores:
            each = ", ".join(f"{k} {g.bits_per_note:.3f}" for k, g in sorted(s.parts.items()))
            table.add_row(s.name, s.how, f"{s.bars4.bits_per_note:.4f}", f"{s.part_bits_per_note:.4f}", each)
        console.print(table)


def attach_fills(ev: Evaluation, fe: FillEvaluation) -> None:
    """Put a fill table into its evaluation's rows (``fills``, by how each row reads) and data,
    so ``json`` holds it beside the test bits/note."""
    ev.data["fills"] = fe.data
    for row, s in zip(fe.rows, fe.scores, strict=True):
        found = ev.scores[row].detail.setdefault("fills", {})
        found["fill" if s.how == "fill" else "left_to_right"] = s.as_dict()


def evaluate(cfg: EvaluateConfig) -> list[Evaluation]:
    """Score the labelled ``checkpoints`` then ``ckpt_path``, print the tables, write ``json``."""
    checkpoints = [(str(label), str(path)) for label, path in (cfg.checkpoints or {}).items()]
    if cfg.ckpt_path:
        checkpoints.append((None, str(cfg.ckpt_path)))
    if not checkpoints:
        raise UserError("pass ckpt_path=RUN_OR_CKPT, or checkpoints={LABEL: RUN_OR_CKPT, ...} for several")
    evaluations = evaluate_checkpoints(
        checkpoints, cfg.mode, cfg.orders, cfg.sessions_dir, cfg.batch_size, cfg.device,
        log=lambda m: print(m, file=sys.stderr),
    )
    print_tables(evaluations)
    if cfg.fills:
        baselines: dict = {}
        tables = [(ev, evaluate_fills(ev, cfg.sessions_dir, cfg.batch_size, cfg.device,
                                      log=lambda m: print(m, file=sys.stderr), baselines=baselines))
                  for ev in evaluations]
        for ev, fe in tables:
            if fe is not None:
                attach_fills(ev, fe)
        print_fill_tables([fe for _, fe in tables if fe is not None])
    if cfg.json:
        Path(cfg.json).write_text(json.dumps([e.as_dict() for e in evaluations], indent=1) + "\n")
    return evaluations
