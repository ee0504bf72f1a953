"""The notes a fill keeps, given to the sampler word for word while the model writes the rest.

A fill's bars are written whole, every part in score order (:mod:`deeporb.encoding.fills`).
The parts the fill does not rewrite keep their notes: each is an *event* (a bar of the fill,
an onset, a part, its notes). :class:`KeptNotes` constrains the sampler so that every event is
written exactly where it stands and nothing else of those parts is, and the model writes the
asked parts around them, hearing each kept note at its onset. Only which words may stand is
constrained (as the grammar's masks do), never which pitch the model picks for its own parts.

The rules, per row, after the grammar's mask (:meth:`KeptNotes.restrict`):

* after a kept part's ``inst_`` word, its notes' words follow as given (``vel_`` only where the
  velocity changes, as the grammar has it), and no other note of it;
* ``rep_K`` (the bar repeats the piece's bar K back, note for note) only where that bar's kept
  notes are this bar's (:attr:`Kept.repeats`); the repeat then gives this bar's events;
* a kept part may be named only at its next event's onset; with an event pending in the bar,
  an onset may not pass it, the bar may not close, and at its onset only parts below it (in
  score order) or the part itself may be named;
* where the grammar leaves nothing (a bar past its word limit), the step that brings the
  pending event closer is taken.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from deeporb.encoding.fills import Gap, bar_lines, check_gap
from deeporb.encoding.words import BAR, EOS, GRID_COLUMNS, GridNotes, Meter, Vocabulary


@dataclass(frozen=True)
class Event:
    """A kept part's notes at one onset of one fill bar: (velocity bin, pitch word id, duration
    word id) each, in the order the encoder writes them."""

    pos: int
    part: int  # its inst_ word id
    notes: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class Kept:
    """What a fill keeps: per hole, the kept parts' events and the ``rep_K`` word ids that may
    stand there; the kept parts' ``inst_`` ids."""

    events: list[list[Event]]
    parts: set[int]
    repeats: list[set[int]]


def kept_notes(parts: dict[str, GridNotes], meter: Meter, vocab: Vocabulary, gap: Gap) -> Kept:
    """What the sampler must give while it writes the gap of a fill of ``parts`` (the parts the
    gap keeps: every part not in ``gap.parts``)."""
    check_gap(gap, meter, vocab)
    lines, which = bar_lines(meter, gap.bars[-1] + 1, vocab)
    keys = sorted(set(parts) - set(gap.parts))

    @functools.cache
    def kept_in(b: int) -> tuple[tuple[str, GridNotes], ...]:
        """The kept parts' notes that start in bar ``b``, onsets from the bar's start."""
        out = []
        for key in keys:
            g = parts[key]
            inside = (g.onset >= lines[b]) & (g.onset < lines[b + 1])
            out.append((key, GridNotes(g.onset[inside] - lines[b], *(getattr(g, c)[inside] for c in GRID_COLUMNS[1:]))))
        return tuple(out)

    # a repeat copies every part: only a bar K back (same meter) with exactly these kept notes
    first = vocab.rep_ids[0]
    repeats = [{first + k - 1 for k in range(1, vocab.repeat_bars + 1)
                if b - k >= 0 and which[b - k] == which[b] and kept_in(b - k) == kept_in(b)} for b in gap.bars]
    return Kept([bar_events(kept_in(b), vocab) for b in gap.bars], {vocab.inst_id(k) for k in keys}, repeats)


def bar_events(notes: tuple[tuple[str, GridNotes], ...], vocab: Vocabulary) -> list[Event]:
    """One bar's kept notes (per part, onsets from the bar's start) as events, in score order."""
    durations = vocab.config.duration_steps
    rows = []
    for key, g in notes:
        for on, dur, pitch, vel in zip(*(getattr(g, c).tolist() for c in GRID_COLUMNS), strict=True):
            rows.append((on, vocab.inst_id(key), pitch, dur, vel, vocab.dur0 + int(np.searchsorted(durations, dur))))
    rows.sort(key=lambda r: r[:5])  # the score view's order
    out: list[Event] = []
    for r in rows:
        note = (r[4], vocab.pitch0 + r[2], r[5])
        if out and (out[-1].pos, out[-1].part) == (r[0], r[1]):
            out[-1] = Event(r[0], r[1], (*out[-1].notes, note))
        else:
            out.append(Event(r[0], r[1], (note,)))
    return out


class KeptNotes:
    """Per row of a batch: the events of its fill (None: a row without kept notes), the fill
    bar it is in, the next event, and the words still to give."""

    def __init__(self, vocab: Vocabulary, rows: list[Kept | None]) -> None:
        self.vocab = vocab
        self.events = [k and k.events for k in rows]
        self.kept = [k.parts if k else set() for k in rows]
        # per row and hole, the rep_K ids that may stand, as an index (a step costs one assignment)
        self.repeats = [k and [torch.tensor(sorted(ids), dtype=torch.long) for ids in k.repeats] for k in rows]
        events = self.events
        # the most words the given notes add to a row (the loop's step bound grows by this)
        self.words = max((sum(2 + 3 * len(e.notes) for bar in ev for e in bar) for ev in events if ev), default=0)
        self.bar = [0] * len(events)  # the prompt ends with the first fill bar's `bar`
        self.next = [0] * len(events)
        self.queue: list[list[int]] = [[] for _ in events]
        self.bar_id, self.eos_id = vocab.index[BAR], vocab.index[EOS]
        self.pos = slice(*vocab.blocks["pos"])
        self.inst0, self.inst_end = vocab.blocks["inst"]
        self.rep = slice(*vocab.rep_ids)
        self.chord = slice(vocab.blocks["vel"][0], vocab.blocks["pitch"][1])  # vel_ and pitch words, adjacent

    def keep(self, rows: list[bool]) -> None:
        """Drop the rows that left the batch."""
        for name in ("events", "kept", "repeats", "bar", "next", "queue"):
            setattr(self, name, [x for x, k in zip(getattr(self, name), rows, strict=True) if k])

    def pending(self, r: int) -> Event | None:
        bars = self.events[r]
        if bars is None or self.bar[r] >= len(bars) or self.next[r] >= len(bars[self.bar[r]]):
            return None
        return bars[self.bar[r]][self.next[r]]

    def restrict(self, allowed: torch.Tensor, pos: torch.Tensor, part: torch.Tensor) -> None:
        """Narrow the grammar's (B, V) mask in place (``pos``, ``part``: each row's onset in its
        bar and the part it is writing, the grammar's fields)."""
        for r in range(allowed.shape[0]):
            if self.events[r] is None:
                continue
            if self.queue[r]:
                allowed[r] = False
                allowed[r, self.queue[r][0]] = True
                continue
            grammar_row = allowed[r].clone()
            allowed[r, self.rep] = False
            if self.bar[r] < len(self.repeats[r]) and bool(grammar_row[self.rep].any()):  # at a bar's start
                ids = self.repeats[r][self.bar[r]]
                allowed[r, ids] = grammar_row[ids]
            for kept in self.kept[r]:
                allowed[r, kept] = False  # a kept part plays only at its events
            if self.inst0 + int(part[r]) in self.kept[r]:  # its notes here were all given
                allowed[r, self.chord] = False
            event = self.pending(r)
            if event is None:
                continue
            here = int(pos[r]) == event.pos
            allowed[r, self.bar_id] = allowed[r, self.eos_id] = False
            first = self.pos.start
            allowed[r, first + event.pos + (0 if here else 1) : self.pos.stop] = False  # no onset past it
            if here:
                allowed[r, event.part + 1 : self.inst_end] = False  # only parts below it, then itself
                allowed[r, event.part] = grammar_row[event.part]
            if not bool(allowed[r].any()):  # a full bar: the step towards the event
                allowed[r, event.part if here else first + event.pos] = True

    def advance(self, token: torch.Tensor, vel: torch.Tensor) -> None:
        """Follow the chosen words (``vel``: each row's velocity before them)."""
        for r, t in enumerate(token.tolist()):
            if self.events[r] is None:
                continue
            if self.queue[r]:
                self.queue[r].pop(0)
            elif t == self.bar_id:
                self.bar[r] += 1
                self.next[r] = 0
            elif self.rep.start <= t < self.rep.stop:  # the bar repeated gives this bar's kept notes
                self.next[r] = len(self.events[r][self.bar[r]])
            elif self.inst0 <= t < self.inst_end and (event := self.pending(r)) is not None and t == event.part:
                words, now = [], int(vel[r])
                for v, pitch, dur in event.notes:
                    if v != now:
                        words.append(self.vocab.vel0 + v)
                        now = v
                    words += [pitch, dur]
                self.queue[r] = words
                self.next[r] += 1
