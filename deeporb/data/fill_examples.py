"""Fill examples for training: a piece's bars with a random gap, its contents written last.

Training mixes them with plain windows (``data.fill_share`` of the training items), so one
checkpoint continues a piece and fills one (:mod:`deeporb.encoding.fills`). A gap is one of:

* **bars:** every part, 1 to :data:`MAX_GAP_BARS` bars (regenerate bars);
* **parts:** some of the parts, 1 to :data:`MAX_GAP_BARS` bars (regenerate parts in bars,
  harmonize a melody);
* **a part throughout:** some parts in every bar the example holds (add a part).

The example keeps as many bars around the gap as fit in the window (``seq_len + 1`` words),
a random share of them before it; like a plain window it may start at any bar, so a ``rep_K``
may point before its start and its first bar may not name the meter. Gaps share one bar
length (a fill's bars take their holes' length).
"""

from __future__ import annotations

import numpy as np

from deeporb.encoding.fills import Gap, encode_fill
from deeporb.encoding.score import decode_score
from deeporb.encoding.words import BAR, GridNotes, Meter, Vocabulary

MAX_GAP_BARS = 8  # longest gap of the "bars" and "parts" kinds
WHOLE_PART_BARS = 32  # most bars of a "part throughout" example (fewer where they do not fit)
TRIES = 4  # gaps halved this many times before an example falls back to a plain window


def random_gap(keys: list[str], lengths: np.ndarray, rng: np.random.Generator) -> tuple[Gap, bool]:
    """A random gap in a piece of ``len(lengths)`` bars (``lengths``: each bar's length in
    steps) with parts ``keys``, and whether it is a "part throughout" gap (no context bars)."""
    kind = int(rng.integers(3))
    if kind == 0 or len(keys) == 1:
        parts = list(keys)
    else:
        size = int(rng.integers(1, len(keys)))
        parts = list(rng.choice(keys, size=size, replace=False))
    most = WHOLE_PART_BARS if kind == 2 else int(rng.integers(1, MAX_GAP_BARS + 1))
    first = int(rng.integers(len(lengths)))
    last = first
    while last + 1 < len(lengths) and last + 1 - first < most and lengths[last + 1] == lengths[first]:
        last += 1
    return Gap(tuple(range(first, last + 1)), tuple(parts)), kind == 2


def fill_example(
    parts: dict[str, GridNotes], meter: Meter, vocab: Vocabulary, style: str | None, width: int,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """A fill example of at most ``width`` words from a piece's parts, or None where no gap
    fits (a bar longer than the window)."""
    config = vocab.config
    end = max((int(g.onset.max()) for g in parts.values() if len(g)), default=-1)
    if end < 0:
        return None
    lines, _ = meter.bar_lines(end + config.max_bar_quarters * config.resolution, config)
    nbars = int(np.searchsorted(lines, end, side="right"))
    lengths = np.diff(lines[: nbars + 1])
    gap, whole = random_gap(sorted(parts), lengths, rng)
    bar_id = vocab.index[BAR]
    header = len(vocab.header_ids(sorted(parts), style))
    for _ in range(TRIES):
        head, fill = encode_fill(parts, meter, vocab, gap, style)
        tail = 1 + len(gap.parts)  # `fill` and its parts
        body = head[header : len(head) - tail]
        starts = np.append(np.flatnonzero(body == bar_id), len(body))  # bar b is body[starts[b]:starts[b + 1]]
        budget = width - header - tail - len(fill)
        g0, g1 = gap.bars[0], gap.bars[-1] + 1
        span = starts[g1] - starts[g0]
        if span <= budget:
            if whole:
                c0, c1 = g0, g1
            else:
                before = int(rng.integers(budget - span + 1))
                c0 = int(np.searchsorted(starts[: g0 + 1], starts[g0] - before, side="left"))
                c1 = int(np.searchsorted(starts, starts[c0] + budget, side="right")) - 1
            return np.concatenate([head[:header], body[starts[c0] : starts[c1]], head[len(head) - tail :], fill])
        if len(gap.bars) == 1:
            return None
        gap = Gap(gap.bars[: len(gap.bars) // 2], gap.parts)
    return None


class PieceReader:
    """A cache row (score view) read back into its parts, meter and style, the last
    ``capacity`` rows kept: a fill example needs the notes, the cache holds words."""

    def __init__(self, vocab: Vocabulary, capacity: int = 256) -> None:
        self.vocab, self.capacity = vocab, capacity
        self.rows: dict[int, tuple] = {}

    def __call__(self, key: int, ids: np.ndarray) -> tuple[dict[str, GridNotes], Meter, str | None]:
        if key not in self.rows:
            if len(self.rows) >= self.capacity:
                self.rows.pop(next(iter(self.rows)))
            vocab = self.vocab
            parts, meter = decode_score(vocab.decode_ids(ids), vocab, strict=False)
            a, b = vocab.blocks["style"]
            style = next((vocab.styles[int(i) - a] for i in ids[:2] if a <= i < b), None)
            self.rows[key] = parts, meter, style
        return self.rows[key]

