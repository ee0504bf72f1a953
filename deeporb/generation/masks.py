"""The grammar (deeporb/encoding/grammar.py) as (batch, vocabulary) masks for the sampler.

Nothing here restates the grammar; each part of :class:`Grammar` is built once from one of its
tables:

* which kinds may come next (``RULES``, ``PREDICATES``): a table from (previous kind, the flags
  that hold) to the words of the kinds allowed there, so a step looks each row up once;
* which words of a kind (``CONDITIONS``): each condition compares its vocabulary block's values
  with one state column, every row at once (:class:`Check`; lookup tables of the conditions
  measured no faster);
* how the state moves (``UPDATES``): a word keeps some fields, sets some from its value and
  constants, and adds one field to another (:meth:`Grammar.advance`: a few whole-batch sums).

The sampler adds only policy, named where :meth:`Grammar.mask` applies it. A step is a few
dozen small tensor operations whatever the batch, so one row (a score) pays little beyond its
network step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from deeporb.encoding.grammar import (
    CONDITIONS,
    ENSEMBLE,
    FIELDS,
    KINDS,
    OPS,
    PREDICATES,
    PREV_KINDS,
    UPDATES,
    View,
    initial,
    rules_for,
    terms,
)
from deeporb.encoding.words import BAR, EOS, FINAL, PAD, Vocabulary

MAX_BAR_WORDS = 512  # words one generated bar may hold before only `bar` is allowed
COLUMNS = (*FIELDS, "bar_words")  # the grammar's integer fields, then the sampler's words in this bar
POLICY_FLAGS = ("room", "may_stop")  # the sampler's own flags, after the grammar's predicates
PLACE_WORDS = 5  # words that place one more part in a bar: pos, inst, vel, pitch, dur


@dataclass
class GrammarState:
    """Per-row state: ``values`` (B, len(COLUMNS)) holds the grammar's integer fields and
    ``bar_words``; ``ensemble`` (B, instruments) the parts the header named (the parts that
    may play); ``required`` (B, instruments) the parts that must still play before the row
    may end (sampler policy, score view); ``done`` (B,). A field reads as a (B,) column:
    ``state.bars``."""

    values: torch.Tensor
    ensemble: torch.Tensor
    required: torch.Tensor
    done: torch.Tensor

    def __getattr__(self, name: str) -> torch.Tensor:
        if name in COLUMNS:
            return self.values[:, COLUMNS.index(name)]
        raise AttributeError(name)

    @classmethod
    def fresh(cls, batch: int, bar_len: int, instruments: int, device="cpu", final_bar: bool = False) -> GrammarState:
        """Rows before their first word; ``bar_len`` is the meter until a ``ts`` word;
        ``instruments`` is the vocabulary's number of instruments and ``final_bar`` whether it
        has the word ``final`` (:meth:`Grammar.fresh` knows both)."""
        start = {**initial(bar_len, final_bar), "bar_words": 0}
        values = torch.tensor([[start[c] for c in COLUMNS]] * batch, dtype=torch.long, device=device)
        ensemble = torch.zeros(batch, instruments, dtype=torch.bool, device=device)
        return cls(values, ensemble, ensemble.clone(), torch.zeros(batch, dtype=torch.bool, device=device))

    def map(self, fn) -> GrammarState:
        return GrammarState(fn(self.values), fn(self.ensemble), fn(self.required), fn(self.done))

    def repeat(self, n: int) -> GrammarState:
        """The rows ``n`` times over (row order: all rows, then all rows again, ...)."""
        return self.map(lambda t: t.repeat(n, *([1] * (t.dim() - 1))))

    @classmethod
    def cat(cls, states: list[GrammarState]) -> GrammarState:
        return cls(*(torch.cat([getattr(s, f) for s in states]) for f in ("values", "ensemble", "required", "done")))


@dataclass(frozen=True)
class Check:
    """One of ``CONDITIONS`` on its block of the vocabulary (words ``first:end``, their
    ``values``): ``values OP column`` for every row at once, passed where flag ``unless`` holds.
    ``column`` None compares with the set ``GrammarState.ensemble`` (``in``)."""

    name: str
    first: int
    end: int
    values: torch.Tensor
    op: Callable
    column: int | None
    unless: int | None

    def restrict(self, allowed: torch.Tensor, s: GrammarState, flags: torch.Tensor) -> None:
        field = s.ensemble if self.column is None else s.values[:, self.column : self.column + 1]
        ok = self.op(self.values, field)
        if self.unless is not None:
            ok |= flags[:, self.unless : self.unless + 1]
        allowed[:, self.first : self.end] &= ok


class Grammar:
    """What may follow what, so every row decodes (``decode_words``/``decode_score``, strict).

    Policy on top of the grammar: a row stops at the ``bar`` that would open bar ``target + 1``,
    or at an ``<eos>``, which is refused before bar ``min_target`` (by default ``target``: a
    sample is then never shorter than asked). With the word ``final`` (``vocab.final_bar``) a
    piece ends after the bar it opens: the model may write it from bar ``min_target`` on, and
    bar ``target``, the last asked for, is opened with it (the model is told, not left to be
    cut off mid-phrase). A bar holding ``max_bar_words`` words may only
    be closed, which bounds the number of steps. ``ts``, ``hole`` and ``fill`` words only come
    from prompts (:func:`deeporb.encoding.fills.fill_prompt`: the loop then writes the fill's bars). In the
    score view only the parts of the header's ensemble may play (``GrammarState.ensemble``,
    one row of bools per sample).

    **Required parts** (``GrammarState.required``: the parts a user named, each to play at
    least once) constrain only which ``inst_`` word stands and when a row may close, never a
    pitch. A row with a part still to play may not end (no ``<eos>``; no closing ``bar`` in its
    last bar); at the last onset of its last bar (``pos == bar_len - 1``) an ``inst_`` word may
    name no part above the lowest one still to play, since parts come in ascending order and
    no later onset is left. So every part still to play can always be placed: no row can reach
    a dead end (nor may the last bar be a ``rep_K``, which closes it). A full last bar (``max_bar_words``) with parts still to play may name only
    those parts, one note each, which bounds it by ``PLACE_WORDS`` words a part.
    """

    def __init__(
        self, vocab: Vocabulary, max_bar_words: int = MAX_BAR_WORDS, device="cpu", view: View = View.TRACKS
    ) -> None:
        self.vocab, self.view, self.max_bar_words, self.device = vocab, view, max_bar_words, device
        self.bar_id, self.eos_id, self.pad_id = vocab.index[BAR], vocab.index[EOS], vocab.index[PAD]
        self.final_id = vocab.index.get(FINAL)
        self.col = {c: i for i, c in enumerate(COLUMNS)}
        kinds, values = torch.as_tensor(vocab.kinds), torch.as_tensor(vocab.values)

        # flags: each predicate, then the policy's, as "column < threshold" (flipped for ">=")
        tests = [(f, op, c) for f, op, c, _ in PREDICATES.values()]
        tests += [("bar_words", "<", max_bar_words), ("bars", ">=", 0)]  # room, may_stop (>= min_target)
        self.flag_names = (*PREDICATES, *POLICY_FLAGS)
        self.flag_columns = torch.tensor([self.col[f] for f, _, _ in tests], device=device)
        self.thresholds = torch.tensor([c for _, _, c in tests], device=device)
        self.flipped = torch.tensor([op == ">=" for _, op, _ in tests], device=device)
        self.flag_weights = 2 ** torch.arange(len(tests), device=device)
        self.flag_combinations = 2 ** len(tests)
        self.room, self.may_stop = self.flag_names.index("room"), self.flag_names.index("may_stop")
        self.min_target = None
        # bars a row must hold for a word to end it (policy): <eos> always, bar from target on
        self.ends_from = torch.full((len(vocab),), torch.iinfo(torch.long).max, device=device)
        self.ends_from[self.eos_id] = torch.iinfo(torch.long).min
        self.target = None

        # which kinds may follow: one row per (previous kind, flags)
        self.follows = torch.from_numpy(np.stack([self._may_follow(prev, flags) for prev in PREV_KINDS
                                                  for flags in range(self.flag_combinations)])).to(device)

        # which words of a kind: a Check per condition (a kind with no words has nothing to check)
        self.checks = []
        for name, c in CONDITIONS.items():
            first, end = vocab.blocks[c.kind]
            if end > first:
                column = None if c.field == "ensemble" else self.col[c.field]
                unless = None if c.unless is None else self.flag_names.index(c.unless)
                self.checks.append(Check(name, first, end, values[first:end].to(device), OPS[c.op], column, unless))

        # how a word moves the state: keeps, sets, carries (see advance)
        keep, sets, carries = self._updates()
        self.keep, self.sets = keep.to(device), sets.to(device)
        self.carries = [(dst, src, by_word.to(device)) for dst, src, by_word in carries]
        # ENSEMBLE: per word, the part it adds (one-hot for its kind), while the predicate holds
        parts = torch.arange(len(vocab.instruments))
        self.joins = ((kinds[:, None] == KINDS.index(ENSEMBLE[0])) & (values[:, None] == parts)).to(device)
        field, op, constant, _ = PREDICATES[ENSEMBLE[1]]
        self.join_test = self.col[field], OPS[op], constant
        self.clears = torch.as_tensor(vocab.kinds == KINDS.index(ENSEMBLE[2]), device=device)  # a fill names its own

        # the required-parts policy reads these
        self.inst_block, self.chord_blocks = vocab.blocks["inst"], (vocab.blocks["vel"], vocab.blocks["pitch"])
        self.part_values = torch.arange(len(vocab.instruments), device=device)
        self.dur_kind = KINDS.index("dur")

    def _may_follow(self, prev: str, flags: int) -> np.ndarray:
        """(V,) bool: the words whose kind a rule lets follow ``prev`` where the flags of the
        bits of ``flags`` hold, less what the policy forbids."""
        on = {name for i, name in enumerate(self.flag_names) if flags >> i & 1}
        kinds = {kind for rule in rules_for(self.view) if prev in rule.after and set(rule.when) <= on
                 for kind in rule.words}
        kinds -= {"ts", "hole", "fill"}  # policy: the meter, a fill's holes and its start come from the prompt
        row = np.zeros(len(self.vocab), dtype=bool)
        for kind in kinds:
            row[slice(*self.vocab.blocks[kind])] = True
        row[self.eos_id] &= "may_stop" in on  # policy: <eos> from bar min_target on
        if "room" not in on and row[self.bar_id]:  # policy: a full bar may only be closed
            closes = np.zeros_like(row)
            closes[[self.bar_id, self.eos_id]] = True
            row &= closes
        return row

    def _updates(self):
        """UPDATES per word: new columns = old * keep + sets, plus each carry's source column
        where it applies. -> keep (V, C), sets (V, C), [(column, source column, (V,) 0/1)]."""
        keep = np.ones((len(KINDS), len(COLUMNS)), dtype=np.int64)
        constant = np.zeros((len(KINDS), len(COLUMNS)), dtype=np.int64)
        takes_value = np.zeros((len(KINDS), len(COLUMNS)), dtype=np.int64)
        carried: dict[tuple[int, int], np.ndarray] = {}
        for k, kind in enumerate(KINDS):
            keep[k, self.col["prev"]], constant[k, self.col["prev"]] = 0, k
            # policy: words since the last bar, this word included
            keep[k, self.col["bar_words"]], constant[k, self.col["bar_words"]] = int(kind != "bar"), 1
            for field, by_kind in UPDATES.items():
                if kind not in by_kind:
                    continue
                i = self.col[field]
                keep[k, i] = 0
                for t in terms(by_kind[kind]):
                    if t == "value":
                        takes_value[k, i] += 1
                    elif t == field:
                        keep[k, i] += 1
                    elif isinstance(t, str):
                        carried.setdefault((i, self.col[t]), np.zeros(len(KINDS), dtype=np.int64))[k] += 1
                    else:
                        constant[k, i] += t
        kinds, values = self.vocab.kinds, self.vocab.values
        per_word = [torch.from_numpy(keep[kinds]), torch.from_numpy(constant[kinds] + takes_value[kinds] * values[:, None])]
        return *per_word, [(dst, src, torch.from_numpy(by_kind[kinds])) for (dst, src), by_kind in carried.items()]

    def fresh(self, batch: int, bar_len: int) -> GrammarState:
        return GrammarState.fresh(batch, bar_len, len(self.vocab.instruments), self.device, self.vocab.final_bar)

    def flags(self, s: GrammarState, min_target: int) -> torch.Tensor:
        """(B, flags) bool: which predicates and policy flags hold for each row."""
        if min_target != self.min_target:
            self.min_target = min_target
            self.thresholds[-1] = min_target
        return (s.values.index_select(1, self.flag_columns) < self.thresholds) != self.flipped

    def mask(self, s: GrammarState, target: int, min_target: int | None = None) -> torch.Tensor:
        """(B, V) bool: the words each row may take next (``<eos>`` from bar ``min_target`` on,
        default ``target``)."""
        flags = self.flags(s, target if min_target is None else min_target)
        owing = self._owing(s, flags, target) if s.required.shape[1] else None
        row = s.values[:, self.col["prev"]] * self.flag_combinations + (flags * self.flag_weights).sum(1)
        allowed = self.follows.index_select(0, row)  # the kinds RULES let follow, then each condition:
        for check in self.checks:
            check.restrict(allowed, s, flags)
        if self.final_id is not None:
            self._final_bar(s, allowed, target, flags)
        if owing is not None:
            self._place_required_parts(s, allowed, *owing)
        allowed[:, self.pad_id] = s.done  # policy: finished rows wait on <pad>
        return allowed

    def _final_bar(self, s: GrammarState, allowed: torch.Tensor, target: int, flags: torch.Tensor) -> None:
        """Policy: ``final`` from bar ``min_target`` on (``may_stop``), and bar ``target`` is final
        (``target`` 0: no bar is asked for, as while reading a header)."""
        allowed[:, self.final_id] &= flags[:, self.may_stop]
        if target < 1:
            return
        last = allowed[:, self.final_id] & (s.values[:, self.col["bars"]] >= target)
        if bool(last.any()):
            allowed[last] = False
            allowed[last, self.final_id] = True

    def _owing(self, s: GrammarState, flags: torch.Tensor, target: int):
        """Rows with a part still to play (may not end) and those of them in their last bar
        (may not close it: they get room however full the bar). None where there are none."""
        bars = s.values[:, self.col["bars"]]
        pending = s.required.any(1) & (bars >= 1)
        if not bool(pending.any()):
            return None
        owing = pending & ((bars >= target) | (s.values[:, self.col["may_open"]] < 1))  # in the last bar
        full = owing & ~flags[:, self.room]
        flags[:, self.room] |= owing
        return pending, owing, full

    def _place_required_parts(self, s: GrammarState, allowed, pending, owing, full) -> None:
        """The required-parts policy (see the class docstring), on rows with parts to play."""
        allowed[:, self.eos_id] &= ~pending
        allowed[:, self.bar_id] &= ~owing
        r, e = self.vocab.rep_ids  # a repeated last bar could only be closed, and may not be
        allowed[:, r:e] &= ~owing[:, None]
        a, b = self.inst_block
        lowest = torch.where(s.required, self.part_values, b - a).min(1).values  # lowest part still to play
        pos, bar_len = s.values[:, self.col["pos"]], s.values[:, self.col["bar_len"]]
        last_onset = owing & (pos == bar_len - 1)
        allowed[:, a:b] &= ~last_onset[:, None] | (self.part_values <= lowest[:, None])
        if bool(full.any()):  # a full last bar: name a part still to play, one note each
            allowed[:, a:b] &= ~full[:, None] | s.required
            after_note = full & (s.values[:, self.col["prev"]] == self.dur_kind)
            for c, d in self.chord_blocks:
                allowed[:, c:d] &= ~after_note[:, None]

    def advance(self, s: GrammarState, token: torch.Tensor, target: int | None = None) -> torch.Tensor:
        """Update ``s`` in place with the chosen words (B,); return which rows just finished (B,)."""
        finished = self._finishing(s, token, target)
        if s.ensemble.shape[1]:  # ENSEMBLE: a part named while the predicate holds joins the ensemble
            s.ensemble &= ~self.clears.index_select(0, token)[:, None]
            joined = self.joins.index_select(0, token)
            column, op, constant = self.join_test
            in_header = op(s.values[:, column : column + 1], constant)
            s.ensemble |= joined & in_header
            if s.required.shape[1]:
                s.required &= ~(joined & ~in_header)  # a part named in the body plays there
        new = torch.addcmul(self.sets.index_select(0, token), s.values, self.keep.index_select(0, token))
        for dst, src, by_word in self.carries:  # "bar_start + bar_len": one field added to another
            new[:, dst].addcmul_(s.values[:, src], by_word.index_select(0, token))
        s.values = new
        s.done |= finished
        return finished

    def _finishing(self, s: GrammarState, token: torch.Tensor, target: int | None) -> torch.Tensor:
        """Policy: a row ends at ``<eos>``, or at the ``bar`` that would open bar ``target + 1``:
        where its bars reach the word's ``ends_from``."""
        if target is None:
            return torch.zeros_like(s.done)
        if target != self.target:
            self.target = target
            self.ends_from[self.bar_id] = target
        return (s.values[:, self.col["bars"]] >= self.ends_from.index_select(0, token)) & ~s.done

    def state_after(self, prompt: list[int], bar_len: int) -> GrammarState:
        """The state after reading a prompt (one row)."""
        s = self.fresh(1, bar_len)
        for t in prompt:
            self.advance(s, torch.tensor([t], device=self.device))
        return s
