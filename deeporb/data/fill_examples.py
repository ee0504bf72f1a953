"""Fill examples for training: a piece's bars with a random gap, its bars written last, whole.

Training mixes them with plain windows (``data.fill_share`` of the training items), so one
checkpoint continues a piece and fills one (:mod:`deeporb.encoding.fills`). A gap is either

* **bars:** 1 to :data:`MAX_GAP_BARS` bars (to regenerate bars, or parts in them), or
* **throughout:** every bar the example holds (to harmonize a melody, to add a part).

The fill writes the gap's bars whole (every part: at sampling the parts that keep playing are
given word for word), after 0 to :data:`MAX_LOOKAHEAD` bars of what follows the gap and as
many bars before it as fit in the window (``seq_len + 1`` words). Like a plain window, an
example may start at any bar, so a ``rep_K`` may point before its start and its first bar may
not name the meter. A gap's bars are in one meter (a fill's bars take their holes' length).
"""

from __future__ import annotations

import numpy as np

from deeporb.encoding.fills import Gap, bar_meters, encode_fill, sounding_bar_lines
from deeporb.encoding.score import decode_score
from deeporb.encoding.words import BAR, GridNotes, Meter, Vocabulary

MAX_GAP_BARS = 8  # longest gap of the "bars" kind
WHOLE_BARS = 32  # most bars of a "throughout" example (fewer where they do not fit)
THROUGHOUT_SHARE = 0.25  # of fill examples, those whose gap is every bar they hold
MAX_LOOKAHEAD = 4  # bars after the gap, drawn from 0 to this (sampling reads fills.LOOKAHEAD)
TRIES = 4  # gaps halved this many times before an example falls back to a plain window


def random_gap(keys: list[str], meters: np.ndarray, rng: np.random.Generator) -> tuple[Gap, bool]:
    """A random gap in a piece of ``len(meters)`` bars (``meters``: the meter each bar is in,
    the gap's bars in one) with parts ``keys``, and whether it is a "throughout" gap (no
    context bars)."""
    throughout = bool(rng.random() < THROUGHOUT_SHARE)
    most = WHOLE_BARS if throughout else int(rng.integers(1, MAX_GAP_BARS + 1))
    first = int(rng.integers(len(meters)))
    last = first
    while last + 1 < len(meters) and last + 1 - first < most and meters[last + 1] == meters[first]:
        last += 1
    return Gap(tuple(range(first, last + 1)), tuple(keys)), throughout


def fill_example(
    parts: dict[str, GridNotes], meter: Meter, vocab: Vocabulary, style: str | None, width: int,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """A fill example of at most ``width`` words from a piece's parts, or None where no gap
    fits (a bar longer than the window)."""
    lines = sounding_bar_lines(parts, meter, vocab.config)
    if len(lines) < 2:
        return None
    gap, throughout = random_gap(sorted(parts), bar_meters(meter, lines), rng)
    lookahead = 0 if throughout else int(rng.integers(MAX_LOOKAHEAD + 1))
    bar_id = vocab.index[BAR]
    header = len(vocab.header_ids(sorted(parts), style))
    for _ in range(TRIES):
        head, fill = encode_fill(parts, meter, vocab, gap, style, lookahead)
        tail = 1 + len(parts)  # `fill` and its header
        body = head[header : len(head) - tail]
        starts = np.append(np.flatnonzero(body == bar_id), len(body))  # bar b is body[starts[b]:starts[b + 1]]
        budget = width - header - tail - len(fill)
        g0 = gap.bars[0]
        if len(body) - starts[g0] <= budget:
            c0 = g0 if throughout else int(np.searchsorted(starts[: g0 + 1], len(body) - budget, side="left"))
            return np.concatenate([head[:header], body[starts[c0] :], head[len(head) - tail :], fill])
        if len(gap.bars) == 1 and lookahead == 0:
            return None
        gap, lookahead = Gap(gap.bars[: max(1, len(gap.bars) // 2)], gap.parts), lookahead // 2
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

