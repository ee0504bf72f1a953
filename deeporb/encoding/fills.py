"""Fills: a piece with marked gaps, then the gaps' bars written whole (infilling by reordering).

A left-to-right network sees what follows a gap only if the gap comes last (ILM, Donahue et
al. 2020; MMM, Ens & Pasquier 2020). A fill sequence is the score view's row with the gap's
bars taken out and written after what follows them:

    <bos> [style_S] inst_A inst_B ...  bar ts_4/4 ... bar hole bar hole bar ... bar ...
    fill inst_A inst_B  bar pos_0 inst_A vel_5 C4 dur_12 inst_B ...  bar ...  <eos>

* A **hole** bar (``bar [ts] hole``) holds nothing: its notes come later.
* The piece goes on :data:`LOOKAHEAD` bars past the last hole (what the fill is written
  towards; where that reaches the piece's last bar, it says ``final`` as in a plain row), then
  ``fill`` names the parts of the piece (a header of its own, in score order) and
  writes one whole bar per hole, in order, each as long as its hole, every part in score order.
  A bar of the gap equal to one up to ``repeat_bars`` back in the piece (before the gap, or
  earlier in it) is ``bar rep_K``, as in a plain row.

An LSTM forgets what lies hundreds of words back, so the parts that keep playing in the gap
are not left far back in the piece: they are written inside the fill's bars, at their onsets,
where the parts written anew hear them (a first version left them in the holes and wrote only
the missing parts last: ``benchmarks/fill.py`` measured it 1.6x to 2.1x worse than reading left
to right). Sampling a fill, those notes are given word for word
(:mod:`deeporb.generation.forced`), and the model writes the asked parts around them.

The grammar (:mod:`deeporb.encoding.grammar`) declares both words, so strict decoding
(:func:`deeporb.encoding.words.read_words`) reads a fill into its holes and the sampler's
masks guarantee the fill holds exactly one bar per hole. The holes are one run of bars in one
meter (the grammar gives the fill's bars the holes' length and counts them back as the
holes): :func:`check_gap`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deeporb.encoding.grammar import KINDS
from deeporb.encoding.score import encode_score, score_notes
from deeporb.encoding.words import (
    BAR,
    EOS,
    FILL,
    GRID_COLUMNS,
    GridNotes,
    Meter,
    Vocabulary,
    encode_ids,
    repeated_bars,
)

LOOKAHEAD = 2  # bars after the gap that the fill is written after (and towards)


@dataclass(frozen=True)
class Gap:
    """What a fill writes anew: the parts ``parts`` (instrument keys) in the bars ``bars``
    (0-based bar indices, ascending); the piece's other notes are its context (inside the gap's
    bars too: the parts that keep playing there)."""

    bars: tuple[int, ...]
    parts: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "bars", tuple(sorted({int(b) for b in self.bars})))
        object.__setattr__(self, "parts", tuple(sorted(set(self.parts))))
        if not self.bars or self.bars[0] < 0 or not self.parts:
            raise ValueError(f"a gap needs bars (from 0) and parts: {self}")


def bar_lines(meter: Meter, nbars: int, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Start steps of the first ``nbars + 1`` bars and the meter segment of each."""
    config = vocab.config
    lines, which = meter.bar_lines((nbars + 1) * config.max_bar_quarters * config.resolution, config)
    return lines[: nbars + 1], which[: nbars + 1]


def sounding_bar_lines(parts: dict[str, GridNotes], meter: Meter, config) -> np.ndarray:
    """Start steps of a piece's bars up to its last onset, then the end of its last bar (one
    line, 0, for a piece with no note): the bars a gap may take."""
    end = max((int(g.onset.max()) for g in parts.values() if len(g)), default=-1)
    if end < 0:
        return np.zeros(1, dtype=np.int64)
    lines, _ = meter.bar_lines(end + config.max_bar_quarters * config.resolution, config)
    return lines[: int(np.searchsorted(lines, end, side="right")) + 1]


def bar_meters(meter: Meter, lines: np.ndarray) -> np.ndarray:
    """Which meter (segment of ``meter``) each bar is in (``lines``: bar start steps, the last
    the end of the last bar): a gap's bars must share one."""
    return np.searchsorted(meter.starts, lines[:-1], side="right") - 1


def in_gap(onset: np.ndarray, lines: np.ndarray, gap: Gap) -> np.ndarray:
    """Which onsets (grid steps) fall in the gap's bars (``lines``: bar start steps)."""
    return np.isin(np.searchsorted(lines, onset, side="right") - 1, gap.bars)


def check_gap(gap: Gap, meter: Meter, vocab: Vocabulary) -> int:
    """The holes' bar length in grid steps; ValueError where the gap's bars are not in one meter
    (the fill's bars all take one length and count back in it) or a part is not in the
    vocabulary."""
    for key in gap.parts:
        vocab.inst_id(key)  # KeyError names what the vocabulary knows
    lines, which = bar_lines(meter, gap.bars[-1] + 1, vocab)
    if len({int(which[b]) for b in gap.bars}) > 1:
        raise ValueError(f"the bars of a fill must be in one meter; bars "
                         f"{gap.bars[0] + 1}-{gap.bars[-1] + 1} change meter")
    return int(lines[gap.bars[0] + 1] - lines[gap.bars[0]])


def take(grid: GridNotes, part: np.ndarray, keep: np.ndarray) -> tuple[GridNotes, np.ndarray]:
    return GridNotes(*(getattr(grid, c)[keep] for c in GRID_COLUMNS)), part[keep]


def encode_fill(
    parts: dict[str, GridNotes], meter: Meter, vocab: Vocabulary, gap: Gap, style: str | None = None,
    lookahead: int = LOOKAHEAD, bars: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A piece's parts and a gap -> (``<bos> ... the bars up to ``lookahead`` past the gap, its
    bars holes ... fill inst_...``, the gap's bars whole then ``<eos>``): the two halves of a
    fill sequence, whose concatenation :func:`deeporb.encoding.score.decode_score` reads back
    into the piece up to that bar. Parts named in the gap but absent from ``parts`` join both
    headers (an added part).

    A gap of every bar of a piece of ``bars`` bars has nothing around it to read first: it is
    the plain score row (header, then the bars), which the model reads best, the parts it keeps
    given all the same."""
    bar_len = check_gap(gap, meter, vocab)
    keys = sorted(set(parts) | set(gap.parts))
    if bars is not None and gap.bars == tuple(range(bars)):
        empty = GridNotes.concat([])
        row = encode_score({k: parts.get(k, empty) for k in keys}, meter, vocab, style)
        head = len(vocab.header_ids(keys, style))
        return row[:head].astype(np.int64), row[head:].astype(np.int64)
    grid, part = score_notes(parts, vocab)
    last = gap.bars[-1]
    longest = vocab.config.max_bar_quarters * vocab.config.resolution
    lines, which = meter.bar_lines((int(grid.onset.max()) if len(grid) else 0) + (last + 1) * longest, vocab.config)
    bar = np.searchsorted(lines, grid.onset, side="right") - 1
    filled = np.isin(bar, gap.bars)
    kept, kept_part = take(grid, part, ~filled & (bar <= last + lookahead))
    ends = len(grid) == 0 or int(bar.max()) <= last + lookahead  # the piece's last bar is in: it says `final`
    body = encode_ids(kept, meter, vocab, kept_part, holes=gap.bars, min_bars=last + 1, final=ends)
    notes, inst = take(grid, part, filled)
    rank = np.searchsorted(gap.bars, bar[filled])  # the hole each note is in
    notes = GridNotes(rank * bar_len + notes.onset - lines[bar[filled]], notes.duration, notes.pitch,
                      notes.velocity_bin)
    fill_meter = Meter([0], [next(ts for ts in vocab.config.time_signatures if vocab.config.bar_steps(*ts) == bar_len)])
    repeats = None
    if vocab.repeat_bars and len(grid):  # a bar of the gap equal to one before it, in the whole piece
        repeats = repeated_bars(bar, grid.onset - lines[bar], grid, part, which, vocab.repeat_bars)[list(gap.bars)]
    written = encode_ids(notes, fill_meter, vocab, inst, min_bars=len(gap.bars), fill=True, repeats=repeats)
    head = np.concatenate([vocab.header_ids(keys, style), body, [vocab.index[FILL]], vocab.header_ids(keys)[1:]])
    return head.astype(np.int64), np.concatenate([written, [vocab.index[EOS]]]).astype(np.int64)


def fill_prompt(
    parts: dict[str, GridNotes], meter: Meter, vocab: Vocabulary, gap: Gap, style: str | None = None,
    bars: int | None = None,
) -> list[int]:
    """What the sampler reads before writing a fill of a piece of ``bars`` bars: the first half
    of :func:`encode_fill` and the header of the first bar it writes (the notes the fill keeps
    are given as it goes: :mod:`deeporb.generation.forced`)."""
    head, written = encode_fill(parts, meter, vocab, gap, style, bars=bars)
    if vocab.index[FILL] in head:
        return [*head.tolist(), vocab.index[BAR]]
    return [*head.tolist(), *written[: 2 if vocab.kinds[written[1]] == KINDS.index("ts") else 1].tolist()]
