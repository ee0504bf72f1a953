"""The grammar (deeporb/encoding/grammar.py) as vectorised masks over a batch of rows.

Nothing here restates the grammar; every table below is built from its data once:

* which kinds may come next: (previous kind, predicate bits) -> (V,) bool, from ``RULES``;
* which words of a kind: ``CONDITIONS`` compared on whole vocabulary blocks at once;
* how the state moves: ``UPDATES`` are sums of fields, the word's value and constants, so a
  word's update is a matrix and a vector, and a step is one batched product.

The sampler only adds policy: when a row stops (or may end), how long a bar may grow, that
time signatures come from the prompt, and in the score view that the parts a user named each
play (:meth:`Grammar.mask`). Per step this is a few dozen small tensor operations whatever
the batch, so one row (a score) pays little beyond its network step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from deeporb.encoding.grammar import (
    ENSEMBLE,
    FIELDS,
    KINDS,
    OPS,
    PREDICATES,
    PREV_KINDS,
    UPDATES,
    conditions_of,
    initial,
    rules_for,
    terms,
)
from deeporb.encoding.words import BAR, EOS, PAD, Vocabulary

MAX_BAR_WORDS = 512  # words one generated bar may hold before only `bar` is allowed
COLUMNS = (*FIELDS, "bar_words")  # the grammar's integer fields, then the sampler's words in this bar
POLICY = ("room", "may_stop")  # the sampler's own flags, after the grammar's predicates
PLACE_WORDS = 5  # words that place one more part in a bar: pos, inst, vel, pitch, dur
TABLE_BUDGET = 1 << 22  # entries of one condition lookup table (neighbouring blocks share one)


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
    def fresh(cls, batch: int, bar_len: int, instruments: int, device="cpu") -> GrammarState:
        """Rows before their first word; ``bar_len`` is the meter until a ``ts`` word;
        ``instruments`` is the vocabulary's number of instruments (:meth:`Grammar.fresh` knows it)."""
        start = {**initial(bar_len), "bar_words": 0}
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


class Grammar:
    """What may follow what, so every row decodes (``decode_words``/``decode_score``, strict).

    Policy on top of the grammar: a row stops at the ``bar`` that would open bar ``target + 1``,
    or at an ``<eos>``, which is refused before bar ``min_target`` (by default ``target``: a
    sample is then never shorter than asked). A bar holding ``max_bar_words`` words may only
    be closed, which bounds the number of steps. ``ts`` words only come from prompts. In the
    score view only the parts of the header's ensemble may play (``GrammarState.ensemble``,
    one row of bools per sample).

    **Required parts** (``GrammarState.required``: the parts a user named, each to play at
    least once) constrain only which ``inst_`` word stands and when a row may close, never a
    pitch. A row with a part still to play may not end (no ``<eos>``; no closing ``bar`` in its
    last bar); at the last onset of its last bar (``pos == bar_len - 1``) an ``inst_`` word may
    name no part above the lowest one still to play, since parts come in ascending order and
    no later onset is left. So every part still to play can always be placed: no row can reach
    a dead end. A full last bar (``max_bar_words``) with parts still to play may name only
    those parts, one note each, which bounds it by ``PLACE_WORDS`` words a part.
    """

    def __init__(
        self, vocab: Vocabulary, max_bar_words: int = MAX_BAR_WORDS, device="cpu", view: str = "tracks"
    ) -> None:
        self.vocab, self.view, self.max_bar_words = vocab, view, max_bar_words
        self.device = device
        self.bar_id, self.eos_id, self.pad_id = vocab.index[BAR], vocab.index[EOS], vocab.index[PAD]
        kinds, values = torch.as_tensor(vocab.kinds), torch.as_tensor(vocab.values)
        col = COLUMNS.index
        # predicates and policy flags: "column < threshold", flipped for ">="; bit i of the flags
        flags = [(f, op, c) for f, op, c, _ in PREDICATES.values()]
        flags += [("bar_words", "<", max_bar_words), ("bars", ">=", None)]  # room, may_stop (min_target)
        self.flag_cols = torch.tensor([col(f) for f, _, _ in flags], device=device)
        self.flag_flip = torch.tensor([op == ">=" for _, op, _ in flags], device=device)
        self.flag_bits = 2 ** torch.arange(len(flags), device=device)
        self.thresholds = torch.tensor([c or 0 for _, _, c in flags], device=device)
        self.table = self._kind_table(rules_for(view), (*PREDICATES, *POLICY)).to(device)
        self.prev_col, self.bars_col = col("prev"), col("bars")
        self._tabulate_conditions(values)
        matrix, offset = self._updates(kinds, values)
        self.update_matrix, self.update_offset = matrix.to(device), offset.to(device)
        # ENSEMBLE: per word, the parts it adds (one-hot for its kind), while the predicate holds
        joins = (kinds[:, None] == KINDS.index(ENSEMBLE[0])) & (values[:, None] == torch.arange(len(vocab.instruments)))
        self.joins = joins.to(device)
        field, op, constant, _ = PREDICATES[ENSEMBLE[1]]
        self.join_when = (col(field), OPS[op], constant)
        self.room_bit = len(PREDICATES)  # index of the "room" flag
        self.pos_col, self.part_col, self.bar_len_col = col("pos"), col("part"), col("bar_len")
        self.dur_kind = KINDS.index("dur")
        self.inst_block, self.chord_blocks = vocab.blocks["inst"], (vocab.blocks["vel"], vocab.blocks["pitch"])
        self.min_target = None

    def _kind_table(self, rules, flags: tuple[str, ...]) -> torch.Tensor:
        """(previous kind x flag combination, V) bool: the words whose kind may come next."""
        v = self.vocab
        n = 2 ** len(flags)
        table = torch.zeros(len(PREV_KINDS), n, len(v), dtype=torch.bool)
        closers = torch.zeros(len(v), dtype=torch.bool)
        closers[[self.bar_id, self.eos_id]] = True
        for p, prev in enumerate(PREV_KINDS):
            for f in range(n):
                on = {name for i, name in enumerate(flags) if f >> i & 1}
                row = table[p, f]
                for rule in rules:
                    if prev in rule.after and set(rule.when) <= on:
                        for kind in rule.words:
                            a, b = v.blocks[kind]
                            row[a:b] = True
                a, b = v.blocks["ts"]
                row[a:b] = False  # policy: the meter comes from the prompt
                row[self.eos_id] &= "may_stop" in on
                if "room" not in on and row[self.bar_id]:
                    row &= closers  # policy: a full bar may only be closed
        return table.reshape(len(PREV_KINDS) * n, len(v))

    def _tabulate_conditions(self, values: torch.Tensor) -> None:
        """CONDITIONS as lookups. A comparison of a word's value with an integer field depends on
        the field only through where it falls among the block's values, so the field is
        clamped to [min - 1, max + 1]; a table has a row per combination of its conditions'
        clamped fields (and ``unless`` bits) and covers one or more neighbouring vocabulary
        blocks. Conditions on the set ``ensemble`` are read from the state directly."""
        cols, lows, spans, specs, self.blocks, self.set_checks = [], [], [], [], [], []
        for kind in KINDS:
            a, b = self.vocab.blocks[kind]
            if b == a:
                continue
            conds = []  # (condition, its field's term index, its unless term index)
            for c in conditions_of(kind):
                bit = None if c.unless is None else list(PREDICATES).index(c.unless)
                if c.field == "ensemble":
                    self.set_checks.append((a, b, values[a:b].to(self.device), c.op, bit))
                    continue
                u = None
                if bit is not None:  # an unless bit is a term with values 0..1
                    cols.append(("bit", bit))
                    lows.append(0)
                    spans.append(1)
                    u = len(cols) - 1
                lo, hi = int(values[a:b].min()) - 1, int(values[a:b].max()) + 1
                cols.append(("column", COLUMNS.index(c.field)))
                lows.append(lo)
                spans.append(hi - lo)
                conds.append((c, len(cols) - 1, u))
            if conds:
                specs.append((a, b, conds))
        # neighbouring blocks share one table (fewer lookups per step) while it stays small
        groups: list[list] = []
        for spec in specs:
            group = [*groups[-1], spec] if groups else None
            if group and self._table_size(group, spans) <= TABLE_BUDGET:
                groups[-1] = group
            else:
                groups.append([spec])
        for group in groups:
            first, end = group[0][0], group[-1][1]
            terms_used = sorted({i for *_, conds in group for _, f, u in conds for i in (f, u) if i is not None})
            sizes = [spans[i] + 1 for i in terms_used]
            grid = torch.cartesian_prod(*(torch.arange(n) for n in sizes)).reshape(-1, len(sizes))
            ok = torch.ones(len(grid), end - first, dtype=torch.bool)
            for a, b, conds in group:
                for c, f, u in conds:
                    field = grid[:, terms_used.index(f)] + lows[f]
                    test = OPS[c.op](values[a:b][None, :], field[:, None])
                    if u is not None:
                        test = test | grid[:, terms_used.index(u)][:, None].bool()
                    ok[:, a - first : b - first] &= test
            strides = torch.tensor(sizes[1:] + [1]).flip(0).cumprod(0).flip(0)  # row-major, as the grid
            self.blocks.append((first, end, ok.to(self.device), dict(zip(terms_used, strides.tolist(), strict=True))))
        radix = torch.zeros(len(cols), len(self.blocks), dtype=torch.long)
        for j, (*_, strides) in enumerate(self.blocks):
            for i, stride in strides.items():
                radix[i, j] = stride
        self.radix = radix.to(self.device)
        self.term_low = torch.tensor(lows, dtype=torch.long, device=self.device)
        self.term_span = torch.tensor(spans, dtype=torch.long, device=self.device)
        # a term reads a state column, or a predicate bit (placed after the columns)
        self.term_index = torch.tensor([c if t == "column" else len(COLUMNS) + c for t, c in cols],
                                       dtype=torch.long, device=self.device)

    @staticmethod
    def _table_size(group: list, spans: list[int]) -> int:
        terms_used = {i for *_, conds in group for _, f, u in conds for i in (f, u) if i is not None}
        return math.prod(spans[i] + 1 for i in terms_used) * (group[-1][1] - group[0][0])

    def _updates(self, kinds: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per word, the matrix A and vector b with new columns = A @ old columns + b."""
        c = len(COLUMNS)
        per_kind_a = torch.zeros(len(KINDS), c, c, dtype=torch.long)
        per_kind_value = torch.zeros(len(KINDS), c, dtype=torch.long)
        per_kind_b = torch.zeros(len(KINDS), c, dtype=torch.long)
        for k, kind in enumerate(KINDS):
            a, b, value = per_kind_a[k], per_kind_b[k], per_kind_value[k]
            for i, name in enumerate(COLUMNS):
                if name == "prev":
                    b[i] = k
                elif name == "bar_words":  # policy: words since the last bar, this word included
                    a[i, i], b[i] = (0, 1) if kind == "bar" else (1, 1)
                elif kind in UPDATES[name]:
                    for t in terms(UPDATES[name][kind]):
                        if t == "value":
                            value[i] += 1
                        elif isinstance(t, str):
                            a[i, COLUMNS.index(t)] += 1
                        else:
                            b[i] += t
                else:
                    a[i, i] = 1
        return per_kind_a[kinds], per_kind_b[kinds] + per_kind_value[kinds] * values[:, None]

    def fresh(self, batch: int, bar_len: int) -> GrammarState:
        return GrammarState.fresh(batch, bar_len, len(self.vocab.instruments), self.device)

    def mask(self, s: GrammarState, target: int, min_target: int | None = None) -> torch.Tensor:
        """(B, V) bool: the words each row may take next (``<eos>`` from bar ``min_target`` on,
        default ``target``)."""
        min_target = target if min_target is None else min_target
        if min_target != self.min_target:
            self.min_target = min_target
            self.thresholds[-1] = min_target
        bits = (s.values[:, self.flag_cols] < self.thresholds) != self.flag_flip
        owing = None
        if s.required.shape[1]:  # rows in their last bar with a part still to play
            pending = s.required.any(1) & (s.values[:, self.bars_col] >= 1)
            owing = pending & (s.values[:, self.bars_col] >= target)
            if bool(pending.any()):
                full = owing & ~bits[:, self.room_bit]
                bits[:, self.room_bit] |= owing  # they may not close, so "only close" cannot hold
            else:
                owing = None
        row = bits.long() @ self.flag_bits + s.values[:, self.prev_col] * (2 ** len(self.flag_bits))
        allowed = self.table[row]
        if self.blocks:
            terms_now = torch.cat([s.values, bits.long()], 1)[:, self.term_index]
            terms_now = torch.minimum((terms_now - self.term_low).clamp_(min=0), self.term_span)
            keys = terms_now @ self.radix
            for j, (a, b, table, _) in enumerate(self.blocks):
                allowed[:, a:b] &= table[keys[:, j]]
        for a, b, values, op, u in self.set_checks:
            ok = OPS[op](values, s.ensemble)
            if u is not None:
                ok = ok | bits[:, u : u + 1]
            allowed[:, a:b] &= ok
        if owing is not None:
            self._require(s, allowed, pending, owing, full)
        allowed[:, self.pad_id] = s.done
        return allowed

    def _require(self, s: GrammarState, allowed, pending, owing, full) -> None:
        """The required-parts policy (see the class docstring), on rows with parts to play."""
        allowed[:, self.eos_id] &= ~pending
        allowed[:, self.bar_id] &= ~owing
        a, b = self.inst_block
        values = torch.arange(b - a, device=allowed.device)
        lowest = torch.where(s.required, values, b - a).min(1).values  # lowest part still to play
        last_onset = owing & (s.values[:, self.pos_col] == s.values[:, self.bar_len_col] - 1)
        allowed[:, a:b] &= ~last_onset[:, None] | (values <= lowest[:, None])
        if bool(full.any()):  # a full last bar: name a part still to play, one note each
            allowed[:, a:b] &= ~full[:, None] | s.required
            after_note = full & (s.values[:, self.prev_col] == self.dur_kind)
            for c, d in self.chord_blocks:
                allowed[:, c:d] &= ~after_note[:, None]

    def advance(self, s: GrammarState, token: torch.Tensor, target: int | None = None) -> torch.Tensor:
        """Update ``s`` in place with the chosen words (B,); return which rows just finished (B,)."""
        bars = s.values[:, self.bars_col]
        if target is None:
            finished = torch.zeros_like(s.done)
        else:
            finished = (((token == self.bar_id) & (bars >= target)) | (token == self.eos_id)) & ~s.done
        if s.ensemble.shape[1]:
            column, op, constant = self.join_when
            joined = self.joins[token]
            in_header = op(s.values[:, column : column + 1], constant)
            s.ensemble |= joined & in_header
            if s.required.shape[1]:
                s.required &= ~(joined & ~in_header)  # a part named in the body plays there
        s.values = torch.bmm(self.update_matrix[token], s.values[:, :, None])[:, :, 0]
        s.values += self.update_offset[token]
        s.done |= finished
        return finished

    def state_after(self, prompt: list[int], bar_len: int) -> GrammarState:
        """The state after reading a prompt (one row)."""
        s = self.fresh(1, bar_len)
        for t in prompt:
            self.advance(s, torch.tensor([t], device=self.device))
        return s
