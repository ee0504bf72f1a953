"""The grammar of the words, declared once as data: what may follow what, in both views.

The tables below say everything (docs/words.md prints them, from :func:`markdown`):

* :data:`KINDS`: the word kinds, in vocabulary order. Every word has a kind and a *value*
  (``pos_K`` -> K, ``C4`` -> 60, ``ts_3/4`` -> its bar length in grid steps, ``dur_K`` -> K,
  ``inst_X``/``style_X`` -> the key's index in the vocabulary, ``rep_K`` -> K; the others 0).
* :data:`RULES`: which kind may follow which, in which view, where which :data:`PREDICATES`
  hold (thresholds on the state, such as "before the first bar": the header).
* :data:`CONDITIONS`: which words of a kind may stand: ``value OP state.FIELD`` (a position
  moves forward and stays inside the bar, ...).
* :data:`UPDATES`: how a word of each kind changes the state's integer fields (sums of
  fields, the word's value and constants), and :data:`ENSEMBLE`: how the header's parts
  become the set of parts that may play.

Two readers are derived from these tables and add no rule of their own: :class:`Walk` reads
one sequence word by word (strict decoding, :func:`deeporb.encoding.words.read_words`), and
``deeporb.generation.masks.Grammar`` turns them into (batch, vocabulary) masks for the
sampler. So every sequence the sampler may write decodes, and every sequence the encoder
writes is one the sampler may write: tests/test_grammar.py checks both on random walks and
real music. To extend the grammar, give the vocabulary a block for a new kind (if any) and
add rows here; neither reader changes.

The rules are what the encoder writes, not a stricter ideal: pitches of one part at one onset
are non-decreasing (real files repeat (onset, pitch) pairs: the sampler's output is tidied
after decoding instead), and ``vel_`` stands only where the velocity bin changes, right
before a pitch (the first note of a sequence always names its velocity).
"""

from __future__ import annotations

import enum
import functools
import operator
from dataclasses import dataclass

import numpy as np


class View(enum.StrEnum):
    """How training reads a session, and so which rules hold: ``score`` (all parts of a piece in
    one stream, each note knowing every part) or ``tracks`` (one sequence per track, the
    original's). A ``str``, so configs, JSON and checkpoints keep the plain name."""

    TRACKS = "tracks"
    SCORE = "score"


VIEWS = tuple(View)
KINDS = ("pad", "bos", "eos", "unk", "bar", "ts", "pos", "vel", "pitch", "dur", "inst", "style", "rep", "hole", "fill",
         "final")
START = "start"  # the kind of "no word yet"
PREV_KINDS = (*KINDS, START)  # what the previous word's kind may be; START is last


@dataclass(frozen=True)
class Rule:
    """Words of kinds ``words`` may follow a word of a kind in ``after`` (in ``views``), where
    every predicate in ``when`` holds."""

    words: tuple[str, ...]
    after: tuple[str, ...]
    why: str
    when: tuple[str, ...] = ()
    views: tuple[str, ...] = VIEWS


@dataclass(frozen=True)
class Condition:
    """Words of ``kind`` may stand only where ``value OP state.FIELD`` holds (``in``: the value
    is in the set ``FIELD``), unless the predicate ``unless`` holds."""

    kind: str
    op: str
    field: str
    why: str
    unless: str | None = None


OPS = {"<": operator.lt, ">=": operator.ge, ">": operator.gt, "!=": operator.ne, "in": lambda v, s: s[..., v]}

# Facts about the words so far that some rules need: "state.FIELD OP CONSTANT", thresholds only
# (so a batch reads them all in one comparison).
PREDICATES = {
    "header": ("bars", "<", 1, "before the first `bar`"),
    "body": ("bars", ">=", 1, "after the first `bar`"),
    "velocity_known": ("vel", ">=", 0, "a `vel_` word came earlier"),
    "unfilled": ("filling", ">=", 0, "before `fill`"),
    "owing": ("owed", ">=", 1, "a `hole` is not yet filled"),
    "settled": ("owed", "<", 1, "every `hole` is filled"),
    "after_hole": ("hole_before", ">=", 1, "the bar before was a `hole`"),
    "refilling": ("filling", "<", 0, "after `fill`"),
}

RULES = (
    Rule(("bos",), (START,), "a framed sequence opens with `<bos>`"),
    Rule(("style",), ("bos",), "the style, if any, comes first"),
    Rule(("inst",), ("bos", "style"), "the header names the track's part (tracks) or the ensemble's first part (score)"),
    Rule(("inst",), ("inst",), "the ensemble's (or the fill's) other parts", when=("header",), views=("score",)),
    Rule(("bar", "eos"), (START,), "a bare body (a note file's words) starts at a bar", views=("tracks",)),
    Rule(("bar",), ("inst",), "the header ends at the first bar (the fill's header at its first bar)", when=("header",)),
    Rule(("eos",), ("inst",), "an empty piece ends after its header", when=("header", "settled")),
    Rule(("bar",), ("bar", "ts", "final", "dur", "rep", "hole"),
         "a bar may end after its header or any note; empty bars keep rests", when=("unfilled",)),
    Rule(("bar",), ("bar", "dur", "rep"), "the fill holds one bar for each hole, in order", when=("owing",)),
    Rule(("eos",), ("bar", "ts", "final", "dur", "rep", "hole"), "a piece ends after any bar, once every hole is filled",
         when=("settled",)),
    Rule(("ts",), ("bar",), "a time signature stands right after `bar` (a fill's bars take their holes' length)",
         when=("unfilled",)),
    Rule(("final",), ("bar", "ts"), "a whole piece's last bar says so after its `bar` [`ts`]: the piece ends there",
         when=("unfilled",)),
    Rule(("pos",), ("bar", "ts", "final", "dur"), "an onset opens after the bar header or a note"),
    Rule(("inst",), ("pos", "dur"), "after an onset, each part playing there is named", views=("score",)),
    Rule(("vel",), ("pos",), "a velocity change comes before a note", views=("tracks",)),
    Rule(("vel",), ("inst",), "a velocity change comes before a note", when=("body",), views=("score",)),
    Rule(("vel",), ("dur",), "a velocity change comes before the chord's next note"),
    Rule(("pitch",), ("vel",), "a note follows its velocity"),
    Rule(("pitch",), ("pos",), "a note at a new onset", when=("velocity_known",), views=("tracks",)),
    Rule(("pitch",), ("inst",), "a note of the named part", when=("body", "velocity_known"), views=("score",)),
    Rule(("pitch",), ("dur",), "the chord's next note", when=("velocity_known",)),
    Rule(("dur",), ("pitch",), "a pitch is always followed by its duration"),
    Rule(("rep",), ("bar", "ts", "final"), "a bar may say it repeats, note for note, the bar K back instead of its notes",
         when=("unfilled",)),
    Rule(("hole",), ("bar", "ts", "final"), "a bar may say its notes come later, in the fill (it holds nothing else)",
         when=("unfilled", "settled"), views=("score",)),
    Rule(("hole",), ("bar", "final"), "the holes are one run of bars, in one meter (so the fill can count its bars back)",
         when=("unfilled", "after_hole"), views=("score",)),
    Rule(("rep",), ("bar",), "a fill's bar may repeat the piece's bar K back (before the gap, or one the fill wrote)",
         when=("refilling",), views=("score",)),
    Rule(("fill",), ("bar", "ts", "final", "dur", "rep", "hole"), "after the last bar of a piece with holes, the fill",
         when=("unfilled", "owing"), views=("score",)),
    Rule(("inst",), ("fill",), "the fill names its parts (a header of its own)", views=("score",)),
)

CONDITIONS = {
    "forward": Condition("pos", ">", "pos", "a position moves forward"),
    "in_bar": Condition("pos", "<", "bar_len", "a position stays inside the bar"),
    "chord_rises": Condition("pitch", ">=", "last_pitch", "pitches of one part at one onset do not fall"),
    "new_velocity": Condition("vel", "!=", "vel", "a velocity word changes the velocity"),
    "part_rises": Condition("inst", ">", "part", "parts come in score order (the vocabulary's: top-down), each once per onset"),
    "in_ensemble": Condition("inst", "in", "ensemble", "a part in the body is one the header named (in a fill: one the fill named)",
                             unless="header"),
    "repeats_a_bar": Condition("rep", "<", "meter_bars", "the bar K back exists, in the same meter (so of the same length)"),
    # a vocabulary with `final` (Vocabulary.final_bar) starts with may_end 0: its pieces end only
    # after their final bar; without the word both fields start at 1 and never change
    "ends_after_final": Condition("eos", "<", "may_end", "a whole piece ends only after its final bar (`final`)",
                                  unless="header"),
    "final_is_last": Condition("bar", "<", "may_open", "no bar follows a piece's final bar"),
}

# field -> {kind: new value}: a sum of terms, each a field (its old value), "value" (the word's)
# or an int. Fields a kind does not name keep their value; ``prev`` becomes the word's kind.
UPDATES = {
    "bars": {"bar": ("bars", 1), "fill": 0},  # the fill counts its own bars, after a header of its own
    "bar_start": {"bar": ("bar_start", "bar_len")},
    "bar_len": {"ts": "value", "fill": ("hole_len",)},
    "pos": {"bar": -1, "pos": "value"},
    "part": {"bar": -1, "pos": -1, "inst": "value", "fill": -1},
    "last_pitch": {"bar": -1, "pos": -1, "inst": -1, "pitch": "value"},
    # a repeated bar's last velocity is not known here, nor a fill's: the next note names its own
    "vel": {"vel": "value", "rep": -1, "fill": -1},
    # bars so far in the meter in force, this one included; a fill's bars count as their holes
    "meter_bars": {"bar": ("meter_bars", 1), "ts": 1, "fill": ("gap_meter_bars", -1)},
    "owed": {"hole": ("owed", 1), "bar": ("owed", "filling")},  # holes not yet filled: a fill's bar fills one
    "filling": {"fill": -1},  # 0 before `fill`, -1 after (so that a bar then pays one hole)
    "hole_len": {"hole": ("bar_len",)},  # the holes' bar length, which the fill's bars take
    "hole_here": {"hole": 1, "bar": 0},  # this bar is a hole
    "hole_before": {"bar": ("hole_here",)},  # the bar before was a hole
    "minus_holes": {"hole": ("minus_holes", -1)},  # minus the holes so far
    "gap_meter_bars": {"hole": ("meter_bars", "minus_holes")},  # meter_bars at the first hole
    "may_end": {"final": 1, "fill": 1},  # <eos> may stand (after the final bar; in a fill once it is settled)
    "may_open": {"final": 0, "fill": 1},  # a `bar` may stand (not after `final`; a fill's bars may)
}
# the one set-valued field: a word of kind ENSEMBLE[0] adds its value to it while the predicate
# ENSEMBLE[1] holds; a word of kind ENSEMBLE[2] empties it (the fill names its own parts)
ENSEMBLE = ("inst", "header", "fill")
FIELDS = ("prev", *UPDATES)  # the integer fields of the state, beside the set ``ensemble``


def terms(update) -> tuple:
    return update if isinstance(update, tuple) else (update,)


def initial(bar_len: int, final_bar: bool = False) -> dict[str, int]:
    """The integer fields before the first word (the ensemble starts empty). ``bar_len`` is the
    meter until a ``ts`` word says otherwise (4/4 for decoding); ``bar_start`` is one bar
    before 0, so the first ``bar`` is at 0. ``final_bar``: the vocabulary has the word
    ``final``, so a piece may end only after its final bar."""
    return {"prev": PREV_KINDS.index(START), "bars": 0, "bar_start": -bar_len, "bar_len": bar_len,
            "pos": -1, "part": -1, "last_pitch": -1, "vel": -1, "meter_bars": 0, "owed": 0, "filling": 0,
            "hole_len": bar_len, "hole_here": 0, "hole_before": 0, "minus_holes": 0, "gap_meter_bars": 0,
            "may_end": int(not final_bar), "may_open": 1}


def rules_for(view: str) -> tuple[Rule, ...]:
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    return tuple(r for r in RULES if view in r.views)


STATE = (*FIELDS, "ensemble")  # a Walk's state: a list of the integer fields, then the set (bools)
PREV, ENSEMBLE_SLOT = STATE.index("prev"), STATE.index("ensemble")


def tables_now() -> tuple:
    """The tables as one hashable value: the key of the scalar reader compiled from them, so a
    table changed while running (as a test does) is compiled afresh."""
    return (RULES, tuple(PREDICATES.items()), tuple(CONDITIONS.items()),
            tuple((f, tuple(u.items())) for f, u in UPDATES.items()), ENSEMBLE)


@dataclass(frozen=True)
class ScalarTables:
    """One view's tables resolved for :class:`Walk`: state slots for field names, operator
    functions for their signs, messages said once. A test is (slot, comparison, constant)."""

    follows: dict  # (prev, kind) -> the tests of each rule that lets it follow; () where one needs none
    needs: dict  # (prev, kind) -> what those rules need, in words
    after: dict  # prev -> the kinds that may follow it, in words
    conditions: dict  # kind -> (comparison, slot, unless test or None, why) for each condition
    moves: dict  # kind -> (sets, sums, joins, clears, its PREV_KINDS index): the word's update, see Walk.step


@functools.lru_cache(maxsize=16)
def scalar_tables(view: str, tables: tuple) -> ScalarTables:
    """Compiled once per view and tables (:func:`tables_now`), so a Walk per sequence is cheap."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    rules, predicates, conditions, updates, ensemble = tables
    predicates, updates = dict(predicates), {field: dict(by_kind) for field, by_kind in updates}

    def test(predicate: str) -> tuple:
        field, op, constant, _ = predicates[predicate]
        return STATE.index(field), OPS[op], constant

    whens: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    for rule in rules:
        if view in rule.views:
            for prev in rule.after:
                for kind in rule.words:
                    whens.setdefault((prev, kind), []).append(rule.when)
    follows = {pk: () if () in ws else tuple(tuple(test(p) for p in w) for w in ws) for pk, ws in whens.items()}
    needs = {pk: " or ".join(", ".join(predicates[p][3] for p in w) for w in ws) for pk, ws in whens.items()}
    after = {prev: " or ".join(sorted({k for (p, k) in whens if p == prev}, key=KINDS.index)) or "nothing"
             for prev in PREV_KINDS}
    conds = {k: tuple((OPS[c.op], STATE.index(c.field), c.unless and test(c.unless), c.why)
                      for _, c in conditions if c.kind == k) for k in KINDS}
    moves = {}
    for kind in KINDS:
        sets, sums = [], []  # fields set from the word alone; fields that sum other fields
        for field, by_kind in updates.items():
            if kind in by_kind:
                update = terms(by_kind[kind])
                constant = sum(t for t in update if isinstance(t, int))
                added = tuple(STATE.index(t) for t in update if isinstance(t, str) and t != "value")
                slot, adds_value = STATE.index(field), int("value" in update)
                if added:
                    sums.append((slot, constant, adds_value, added))
                else:
                    sets.append((slot, constant, adds_value))
        joins = test(ensemble[1]) if kind == ensemble[0] else None
        moves[kind] = tuple(sets), tuple(sums), joins, kind == ensemble[2], PREV_KINDS.index(kind)
    return ScalarTables(follows, needs, after, conds, moves)


def holds(whens: tuple, state: list) -> bool:
    """Whether every test of at least one rule holds."""
    for when in whens:
        for slot, op, constant in when:
            if not op(state[slot], constant):
                break
        else:
            return True
    return False


class Walk:
    """One sequence read word by word (Python ints): the scalar reader of the tables.

    ``state`` is a list in :data:`STATE` order (slot ``STATE.index(field)``), the ensemble last:
    strict decoding reads every word of every file it decodes, so the tables are compiled
    once (:func:`scalar_tables`) and a word costs a few lookups."""

    def __init__(self, view: str, n_instruments: int, bar_len: int, final_bar: bool = False) -> None:
        self.tables = t = scalar_tables(view, tables_now())
        self.follows, self.conditions, self.moves = t.follows, t.conditions, t.moves
        start = initial(bar_len, final_bar)
        self.state = [*(start[f] for f in FIELDS), np.zeros(n_instruments, dtype=bool)]
        self.prev = START

    @property
    def ensemble(self) -> np.ndarray:
        return self.state[ENSEMBLE_SLOT]

    def refusal(self, kind: str, value: int) -> str | None:
        """None where a word of ``kind`` and ``value`` may come next, else the rule it breaks."""
        s, prev = self.state, self.prev
        whens = self.follows.get((prev, kind))
        if whens is None:
            return f"{kind} cannot follow {prev} (after {prev} comes {self.tables.after[prev]})"
        if whens and not holds(whens, s):
            return f"{kind} after {prev} needs: {self.tables.needs[prev, kind]}"
        for op, slot, unless, why in self.conditions[kind]:
            if not op(value, s[slot]) and not (unless and unless[1](s[unless[0]], unless[2])):
                return why
        return None

    def step(self, kind: str, value: int) -> None:
        """Fields set from the word alone, then sums of the old fields; the ensemble grows (or empties)."""
        s = self.state
        sets, sums, joins, clears, kind_index = self.moves[kind]
        if clears:
            s[ENSEMBLE_SLOT] = np.zeros_like(s[ENSEMBLE_SLOT])
        if joins is not None and joins[1](s[joins[0]], joins[2]):
            s[ENSEMBLE_SLOT][value] = True
        if sums:
            summed = [(slot, c + value * v + sum(s[a] for a in added)) for slot, c, v, added in sums]
        for slot, c, v in sets:
            s[slot] = c + value * v
        if sums:
            for slot, x in summed:
                s[slot] = x
        s[PREV] = kind_index
        self.prev = kind


def markdown() -> str:
    """The tables as markdown (docs/words.md holds this text; a test keeps them the same)."""
    lines = ["| word | may follow | when | views | why |", "|---|---|---|---|---|"]
    for r in RULES:
        lines.append(f"| {' / '.join(r.words)} | {', '.join(r.after)} | {', '.join(r.when)} | "
                     f"{', '.join(r.views)} | {r.why} |")
    lines += ["", "| predicate | test | meaning |", "|---|---|---|"]
    lines += [f"| {name} | {f} {op} {c} | {meaning} |" for name, (f, op, c, meaning) in PREDICATES.items()]
    lines += ["", "| word | condition on its value | unless | why |", "|---|---|---|---|"]
    lines += [f"| {c.kind} | value {c.op} {c.field} | {c.unless or ''} | {c.why} |" for c in CONDITIONS.values()]
    lines += ["", "| field | changed by |", "|---|---|"]
    for f, ups in UPDATES.items():
        said = "; ".join(f"{k}: {' + '.join(str(t) for t in terms(u))}" for k, u in ups.items())
        lines.append(f"| {f} | {said} |")
    lines.append(f"| ensemble | {ENSEMBLE[0]}: adds value, where {ENSEMBLE[1]}; {ENSEMBLE[2]}: empties it |")
    return "\n".join(lines) + "\n"
