"""Fill likelihood: bits per note of the notes in a gap, given the rest of the piece.

A model trained with fill examples (``data.fill_share > 0``, ``vocab.fills``) can read a whole
piece with a gap before it writes the gap (:mod:`deeporb.encoding.fills`); a left-to-right
model sees only what comes before. This module measures what that buys, on the held-out
pieces (score view) and two standard gaps (:func:`standard_gaps`):

* ``bars4``: 4 bars of every part in the middle of each piece (at least one bar of context on
  each side, the 4 bars in one meter);
* ``part``: each part of a piece throughout it (the piece in one meter), one gap per part; its
  figure is the mean over the parts of each part's bits/note.

How each row scores a gap's notes:

* **fill** (a checkpoint with ``vocab.fills``): in the sequence
  :func:`deeporb.encoding.fills.encode_fill` writes (the piece up to a few bars past the gap,
  the gap's bars holes, then the gap's bars whole), the bits of the gap's words in the fill's
  bars, counted as below for a plain row (:func:`fill_weights`): the parts the fill keeps stand
  there too, as sampling gives them, and are not the gap's.
* **left to right** (any checkpoint, and the n-gram): the bits, in the plain score row
  (:func:`deeporb.encoding.score.encode_score`), of the words that belong to the gap's notes
  (:func:`plain_weights`): for ``bars4`` every word of those bars, from each bar's ``bar`` word
  to the word before the next ``bar``; for a part, its ``inst_``, ``vel_``, pitch and ``dur_``
  words plus the ``pos_`` words of onsets where only that part plays. Words the parts share
  (``bar``, ``ts_``, ``final``, a ``pos_`` several parts play at) belong to no part, and a ``rep_K`` word
  (a repeated bar, all parts at once) counts for a part by its share of the bar's notes.

Every row divides by the same number: the notes in the gap, counted from the piece's parts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeporb.encoding.fills import (
    LOOKAHEAD,
    Gap,
    bar_meters,
    encode_fill,
    in_gap,
    sounding_bar_lines,
)
from deeporb.encoding.grammar import KINDS, View
from deeporb.encoding.score import decode_score, encode_score
from deeporb.encoding.words import BAR, EOS, PAD, EncodingConfig, GridNotes, Meter, Vocabulary

GAP_BARS = 4  # bars of the "bars4" gap
GAP_KINDS = ("bars4", "part")
LN2 = math.log(2.0)
_KIND = {k: i for i, k in enumerate(KINDS)}


# ---------------------------------------------------------------------------------------
# held-out pieces and their gaps


@dataclass
class HeldOutPiece:
    """A test piece as notes (vocabulary-free, so checkpoints with other words share it)."""

    name: str
    parts: dict[str, GridNotes]
    meter: Meter
    style: str | None = None


def held_out_pieces(dm, split: str = "test") -> list[HeldOutPiece]:
    """The score-view rows of a split, read back into their parts (a loaded
    ``SessionDataModule`` in the score view, e.g. :func:`deeporb.evaluation.likelihood.datamodule_for`)."""
    from deeporb.evaluation.likelihood import split_sequences

    if View(dm.view) != View.SCORE:
        raise ValueError("fill likelihoods read score-view rows; this DataModule reads tracks")
    vocab = dm.vocab
    rows = [t for t in dm.rows if t["split"] == split]
    a, b = vocab.blocks["style"]
    out = []
    for row, ids in zip(rows, split_sequences(dm, split, "tracks"), strict=True):
        parts, meter = decode_score(vocab.decode_ids(ids), vocab, strict=True)
        style = next((vocab.styles[int(i) - a] for i in ids[:2] if a <= i < b), None)
        out.append(HeldOutPiece(f"{row['session']}/{row['piece']}", parts, meter, style))
    return out


def piece_bar_lines(piece: HeldOutPiece, config: EncodingConfig) -> np.ndarray:
    """Start steps of the piece's bars up to its last onset, and the end of its last bar."""
    return sounding_bar_lines(piece.parts, piece.meter, config)


def gap_notes(piece: HeldOutPiece, gap: Gap, lines: np.ndarray) -> int:
    """How many notes of the gap's parts start in its bars (``lines``: bar start steps)."""
    total = 0
    for key in gap.parts:
        grid = piece.parts.get(key)
        if grid is not None and len(grid):
            total += int(in_gap(grid.onset, lines, gap).sum())
    return total


def standard_gaps(piece: HeldOutPiece, config: EncodingConfig) -> dict[str, list[Gap]]:
    """The piece's ``bars4`` gap (none, or the 4 bars nearest its middle that share one meter
    and hold a note, a bar of context each side) and its ``part`` gaps (each part with notes,
    throughout; none where the meter changes, as a fill's bars are in one meter)."""
    lines = piece_bar_lines(piece, config)
    meters = bar_meters(piece.meter, lines)
    nbars = len(meters)
    out: dict[str, list[Gap]] = {"bars4": [], "part": []}
    keys = sorted(piece.parts)
    if nbars >= GAP_BARS + 2:
        centre = (nbars - GAP_BARS) // 2
        starts = sorted(range(1, nbars - GAP_BARS), key=lambda s: (abs(s - centre), s))
        for first in starts:
            gap = Gap(tuple(range(first, first + GAP_BARS)), tuple(keys))
            if len(set(meters[first : first + GAP_BARS].tolist())) == 1 and gap_notes(piece, gap, lines):
                out["bars4"].append(gap)
                break
    if nbars and len(set(meters.tolist())) == 1:
        out["part"] = [Gap(tuple(range(nbars)), (k,)) for k in keys if len(piece.parts[k])]
    return out


# ---------------------------------------------------------------------------------------
# which words of a plain row belong to a gap


def plain_weights(ids: np.ndarray, vocab: Vocabulary, gap: Gap) -> np.ndarray:
    """How much of each word of a plain score row (``<bos> ... <eos>``) belongs to the gap's
    notes: 1 or 0, a fraction for ``rep_K`` (see the module doc). The bits a left-to-right
    model spends on the gap are ``sum(weights[1:] * bits_per_target)``."""
    ids = np.asarray(ids, dtype=np.int64)
    kinds = vocab.kinds[ids]
    values = vocab.values[ids]
    n_inst = len(vocab.instruments)
    mine = np.zeros(n_inst, dtype=bool)
    mine[[vocab.inst_id(k) - vocab.inst0 for k in gap.parts]] = True
    header = ids[: int(np.argmax(ids == vocab.index[BAR]))] if (ids == vocab.index[BAR]).any() else ids
    ensemble = {int(values[i]) for i in range(len(header)) if kinds[i] == _KIND["inst"]}
    whole_bars = ensemble <= set(np.flatnonzero(mine).tolist())  # the gap holds every part of the piece
    in_gap = set(gap.bars)
    weights = np.zeros(len(ids))
    bar = -1
    part = -1
    per_bar: list[np.ndarray] = []  # notes per part in each bar (a rep_K bar: its source's)
    pos_at = -1  # index of the open onset's pos_ word, and the parts playing there
    pos_parts: set[int] = set()

    def close_onset() -> None:
        if pos_at >= 0 and bar in in_gap and pos_parts and all(mine[p] for p in pos_parts):
            weights[pos_at] = 1.0

    for i, (kind, value) in enumerate(zip(kinds.tolist(), values.tolist(), strict=True)):
        if kind in (_KIND["bar"], _KIND["eos"], _KIND["pos"], _KIND["rep"]):
            close_onset()
            pos_at, pos_parts = -1, set()
        if kind == _KIND["bar"]:
            bar += 1
            per_bar.append(np.zeros(n_inst, dtype=np.int64))
            weights[i] = float(whole_bars and bar in in_gap)
        elif kind == _KIND["eos"] or bar < 0:
            continue
        elif kind in (_KIND["ts"], _KIND["final"]):  # a bar's header: every part's
            weights[i] = float(whole_bars and bar in in_gap)
        elif kind == _KIND["pos"]:
            pos_at = i
        elif kind == _KIND["rep"]:
            if whole_bars:  # the bar's every word is the gap's, whatever it repeats
                weights[i] = float(bar in in_gap)
                continue
            if bar - value < 0:  # a fill's bar repeating one of the piece before the fill's bars
                raise ValueError("a rep_K before the row's first bar: its notes' parts are not known here")
            per_bar[bar] = per_bar[bar - value].copy()
            notes = per_bar[bar].sum()
            if bar in in_gap and notes:
                weights[i] = per_bar[bar][mine].sum() / notes
        else:
            if kind == _KIND["inst"]:
                part = value
                pos_parts.add(part)
            elif kind == _KIND["pitch"]:
                per_bar[bar][part] += 1
            weights[i] = float(bar in in_gap and mine[part])
    close_onset()
    return weights


# ---------------------------------------------------------------------------------------
# bits per target word


def lstm_token_bits(model, sequences: Sequence[np.ndarray], batch_size: int = 32, chunk: int = 1024) -> list[np.ndarray]:
    """-log2 p of every word after the first of each sequence under an ``LSTMGenerator``
    (as :func:`deeporb.evaluation.likelihood.score_lstm`, word by word): sorted by length,
    batched, fed ``chunk`` words at a time with the state carried."""
    import torch
    import torch.nn.functional as F

    model.eval()
    pad = model.vocab.index[PAD]
    device = next(model.parameters()).device
    out: list[np.ndarray] = [np.zeros(0)] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            which = order[b : b + batch_size]
            rows = [np.asarray(sequences[i], dtype=np.int64) for i in which]
            longest = max(len(r) for r in rows)
            if longest < 2:
                continue
            tokens = torch.full((len(rows), longest), pad, dtype=torch.long)
            for j, r in enumerate(rows):
                tokens[j, : len(r)] = torch.from_numpy(r)
            tokens = tokens.to(device)
            state, nll = None, []
            for c in range(0, longest - 1, chunk):
                targets = tokens[:, c + 1 : c + 1 + chunk]
                logits, state = model(tokens[:, c : c + targets.shape[1]], state)
                nll.append(F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none"))
            bits = (torch.cat(nll, dim=1).double() / LN2).cpu().numpy()
            for j, i in enumerate(which):
                out[i] = bits[j, : len(rows[j]) - 1]
    return out


def ngram_token_bits(lm, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
    """-log2 p of every word after the first under an :class:`~deeporb.evaluation.ngram.NGramLM`."""
    return [-lm.log2prob(np.asarray(s).tolist()) for s in sequences]


# ---------------------------------------------------------------------------------------
# scores


@dataclass
class GapScore:
    """Bits summed over gaps, the notes in them and the words the bits are of (a share of a
    ``rep_K`` word counts as that share)."""

    bits: float = 0.0
    notes: int = 0
    words: float = 0
    gaps: int = 0

    @property
    def bits_per_note(self) -> float:
        return self.bits / self.notes if self.notes else math.nan

    def add(self, bits: float, notes: int, words: float) -> None:
        self.bits += float(bits)
        self.notes += int(notes)
        self.words += words
        self.gaps += 1

    def as_dict(self) -> dict:
        return {"bits_per_note": self.bits_per_note, "bits": self.bits, "notes": self.notes,
                "words": self.words, "gaps": self.gaps}


@dataclass
class FillScore:
    """One model read one way (``how``: ``fill`` or ``left to right``) on every standard gap."""

    name: str
    how: str
    bars4: GapScore = field(default_factory=GapScore)
    parts: dict[str, GapScore] = field(default_factory=dict)
    about: str = ""

    @property
    def part_bits_per_note(self) -> float:
        """The mean over parts of each part's bits/note (so a part with many notes does not
        stand for the others)."""
        values = [s.bits_per_note for s in self.parts.values() if math.isfinite(s.bits_per_note)]
        return float(np.mean(values)) if values else math.nan

    def score(self, kind: str) -> float:
        return self.bars4.bits_per_note if kind == "bars4" else self.part_bits_per_note

    def as_dict(self) -> dict:
        return {"name": self.name, "how": self.how, "about": self.about,
                "bars4": self.bars4.as_dict(),
                "part": {"bits_per_note": self.part_bits_per_note,
                         "parts": {k: s.as_dict() for k, s in sorted(self.parts.items())}}}


def _gaps(pieces: Sequence[HeldOutPiece], config: EncodingConfig) -> list[tuple[int, str, Gap, int]]:
    """(piece index, kind, gap, notes in it) of every standard gap, in a fixed order."""
    out = []
    for i, piece in enumerate(pieces):
        lines = piece_bar_lines(piece, config)
        for kind, gaps in standard_gaps(piece, config).items():
            out += [(i, kind, g, gap_notes(piece, g, lines)) for g in gaps]
    return out


def _record(score: FillScore, kind: str, gap: Gap, bits: float, notes: int, words: float) -> None:
    if kind == "bars4":
        score.bars4.add(bits, notes, words)
    else:
        score.parts.setdefault(gap.parts[0], GapScore()).add(bits, notes, words)


def score_left_to_right(
    name: str, token_bits: Callable[[list[np.ndarray]], list[np.ndarray]], pieces: Sequence[HeldOutPiece],
    vocab: Vocabulary, about: str = "",
) -> FillScore:
    """The gaps' notes scored in each piece's plain score row (:func:`plain_weights`);
    ``token_bits`` maps rows to per-target bits (:func:`lstm_token_bits`, :func:`ngram_token_bits`)."""
    rows = [encode_score(p.parts, p.meter, vocab, p.style) for p in pieces]
    bits = token_bits(rows)
    score = FillScore(name, "left to right", about=about)
    for i, kind, gap, notes in _gaps(pieces, vocab.config):
        w = plain_weights(rows[i], vocab, gap)
        _record(score, kind, gap, float((w[1:] * bits[i]).sum()), notes, float(w.sum()))
    return score


def fill_sequences(
    pieces: Sequence[HeldOutPiece], vocab: Vocabulary, lookahead: int = LOOKAHEAD,
) -> list[tuple[int, str, Gap, int, np.ndarray, int]]:
    """(piece index, kind, gap, notes, fill sequence, length of its head) of every standard gap,
    each read ``lookahead`` bars past the gap (as sampling does, by default)."""
    out = []
    for i, kind, gap, notes in _gaps(pieces, vocab.config):
        p = pieces[i]
        head, fill = encode_fill(p.parts, p.meter, vocab, gap, p.style, lookahead,
                                 bars=len(piece_bar_lines(p, vocab.config)) - 1)
        out.append((i, kind, gap, notes, np.concatenate([head, fill]), len(head)))
    return out


def fill_weights(seq: np.ndarray, head: int, vocab: Vocabulary, gap: Gap) -> np.ndarray:
    """How much of each word of a fill's bars (``seq[head:]``) belongs to the gap's notes: the
    fill writes its bars whole, the parts it keeps given at sampling, so the gap's words there
    are counted as :func:`plain_weights` counts them in a plain row (its ``<eos>`` too, when the
    gap holds every part: the fill ends there)."""
    header = seq[: int(np.argmax(seq == vocab.index[BAR]))]
    bars = Gap(tuple(range(len(gap.bars))), gap.parts)
    weights = plain_weights(np.concatenate([header, seq[head:]]), vocab, bars)[len(header):]
    every_part = {vocab.instruments[int(i) - vocab.inst0] for i in header if vocab.kinds[i] == _KIND["inst"]}
    weights[-1] = float(every_part <= set(gap.parts))
    return weights


def score_fill(
    name: str, model, pieces: Sequence[HeldOutPiece], batch_size: int = 32, about: str = "", lookahead: int = LOOKAHEAD,
) -> FillScore:
    """The gaps' notes as a fill checkpoint writes them: the bits of the gap's words in each
    fill's bars (:func:`fill_weights`) given the piece with its holes and the notes it keeps."""
    vocab = model.vocab
    if not vocab.fills:
        raise ValueError("this checkpoint has no fill words; score it left to right")
    made = fill_sequences(pieces, vocab, lookahead)
    bits = lstm_token_bits(model, [s for *_, s, _ in made], batch_size)
    score = FillScore(name, "fill", about=about)
    for (_, kind, gap, notes, seq, head), b in zip(made, bits, strict=True):
        assert seq[-1] == vocab.index[EOS]
        w = fill_weights(seq, head, vocab, gap)
        _record(score, kind, gap, float((w * b[head - 1 :]).sum()), notes, float(w.sum()))
    return score


@dataclass
class FillEvaluation:
    """One fill table: the n-gram's row, then each checkpoint's (fill, then left to right)."""

    data: dict
    scores: list[FillScore]
    rows: list[int]  # per score: the index of its row in the evaluate table (0: the n-gram)

    def as_dict(self) -> dict:
        return {"data": self.data, "rows": [s.as_dict() for s in self.scores]}


def describe_gaps(pieces: Sequence[HeldOutPiece], config: EncodingConfig) -> dict:
    """How many pieces, gaps and notes each gap kind holds, and the pieces it skips."""
    gaps = _gaps(pieces, config)
    out: dict = {"pieces": len(pieces)}
    for kind in GAP_KINDS:
        mine = [(i, g, n) for i, k, g, n in gaps if k == kind]
        out[kind] = {"gaps": len(mine), "notes": sum(n for *_, n in mine),
                     "pieces": len({i for i, *_ in mine}),
                     "skipped_pieces": len(pieces) - len({i for i, *_ in mine})}
    out["part"]["parts"] = sorted({g.parts[0] for _, k, g, _ in gaps if k == "part"})
    return out


def fill_scores(
    models: Sequence[tuple[str, object]], pieces: Sequence[HeldOutPiece], ngram=None, ngram_name: str = "n-gram",
    vocab: Vocabulary | None = None, batch_size: int = 32,
) -> list[FillScore]:
    """The n-gram's row (when ``ngram`` is given, its ``vocab``), then per checkpoint its fill
    row (where it can fill) and its left-to-right row: all on the same gaps and notes."""
    out = []
    if ngram is not None:
        out.append(score_left_to_right(ngram_name, lambda rows: ngram_token_bits(ngram, rows), pieces, vocab))
    for label, model in models:
        about = f"{model.hparams.num_layers}×{model.hparams.hidden_size}"
        if model.vocab.fills:
            out.append(score_fill(label, model, pieces, batch_size, about))
        out.append(score_left_to_right(label, lambda rows, m=model: lstm_token_bits(m, rows, batch_size), pieces,
                                       model.vocab, about))
    return out


# ---------------------------------------------------------------------------------------
# beside evaluate.py's tables


def evaluate_fills(evaluation, sessions_dir: str | Path | None = None, batch_size: int = 32, device: str = "cpu",
                   log=print, baselines: dict | None = None) -> FillEvaluation | None:
    """The fill table of one of :func:`deeporb.evaluation.likelihood.evaluate_checkpoints`'
    tables: its score-view checkpoints reloaded, its n-gram refitted (same order and discounts,
    same train rows: the same model; ``baselines`` keeps it across tables), on its test pieces.
    None where no checkpoint of the table reads scores (the tracks view has no score row)."""
    from deeporb.checkpoints import facts as facts_of
    from deeporb.checkpoints import load_generator
    from deeporb.evaluation.likelihood import datamodule_for, split_sequences
    from deeporb.evaluation.ngram import NGramLM

    members = []  # (row in the table, its score, the model)
    for row, s in enumerate(evaluation.scores[1:], start=1):
        model = load_generator(s.detail["checkpoint"], device)
        if facts_of(model).view == View.SCORE:
            members.append((row, s, model))
    if not members:
        log(f"fills: not scored for {', '.join(evaluation.data['sessions'])}: its checkpoints read tracks "
            "(fills need the score view)")
        return None
    facts = facts_of(members[0][2])
    dm = datamodule_for(facts, sessions_dir)
    pieces = held_out_pieces(dm)
    ngram = evaluation.scores[0]
    key = (tuple(evaluation.data["sessions"]), str(dm.sessions_dir), len(dm.vocab), ngram.detail["order"],
           ngram.detail["modified"])
    baselines = {} if baselines is None else baselines
    if key not in baselines:
        log(f"fills: refitting {ngram.name} on the train split ...")
        train = [s.tolist() for s in split_sequences(dm, "train", "tracks")]
        baselines[key] = NGramLM(ngram.detail["order"], vocab_size=len(dm.vocab), modified=ngram.detail["modified"]).fit(train)
    log(f"fills: scoring {len(pieces)} test pieces ...")
    scores = fill_scores([(s.name, m) for _, s, m in members], pieces, baselines[key], ngram.name, dm.vocab, batch_size)
    rows = [0] + [row for row, _, m in members for _ in range(2 if m.vocab.fills else 1)]
    data = {"sessions": list(evaluation.data["sessions"]), **describe_gaps(pieces, dm.vocab.config)}
    return FillEvaluation(data, scores, rows)
