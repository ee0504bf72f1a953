"""Interpolated Kneser-Ney n-gram language model over integer token ids.

A cheap, strong baseline for the LSTM: if a network cannot beat a smoothed
n-gram's bits per token on held-out data, it has not learned more than local
statistics. Pure Python (dicts keyed by tuples) so it runs anywhere without torch.

Smoothing follows Chen & Goodman, "An empirical study of smoothing techniques for
language modeling" (1998), interpolated Kneser-Ney:

    p_k(w | h) = max(a_k(hw) - D, 0) / S_k(h)  +  gamma_k(h) * p_{k-1}(w | h')
    gamma_k(h) = D * N1+(h .) / S_k(h),  S_k(h) = sum_w a_k(hw)

where h' drops the oldest token of h, ``a_N`` are raw counts at the top order
and ``a_k`` (k < N) are continuation counts (number of distinct left neighbours);
the recursion ends in a uniform distribution over ``vocab_size`` so every token,
seen or not, gets non-zero probability and each p(. | h) sums to one. An
unseen history h passes straight through to p_{k-1}. With ``modified=True``
three discounts D1, D2, D3+ per order are estimated from counts-of-counts
(Chen & Goodman's modified KN).

Sequences are not padded. Each sequence already starts with its own start token;
token t is predicted from the up to N-1 tokens before it, so early tokens use a
shorter history, whose top level is that shorter n-gram. Since such an n-gram
(one starting at the sequence start) has no left neighbour, its occurrences there
count as raw counts in its continuation count (as KenLM does for n-grams
beginning with <s>).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["NGramLM", "select_order"]


def _count(sequences: Iterable[Sequence[int]], order: int) -> tuple[list, list, int, int]:
    """Raw k-gram counts (k = 1..order) over predicted positions, and start counts.

    ``raw[k][g]``: occurrences of k-gram g whose last token is predicted (index >= 1).
    ``start[k][g]``: how many sequences begin with g (k >= 2); these have no left
    neighbour. Also returns the largest token id seen (-1 if none) and the number
    of predicted tokens.
    """
    raw = [Counter() for _ in range(order + 1)]
    start = [Counter() for _ in range(order + 1)]
    max_id = -1
    n_tokens = 0
    for seq in sequences:
        seq = tuple(int(x) for x in seq)
        if len(seq) < 2:
            continue
        max_id = max(max_id, max(seq))
        if min(seq) < 0:
            raise ValueError("token ids must be non-negative")
        n_tokens += len(seq) - 1
        raw[1].update(zip(seq[1:], strict=False))
        for k in range(2, min(order, len(seq)) + 1):
            raw[k].update(zip(*(seq[i:] for i in range(k)), strict=False))
            start[k][seq[:k]] += 1
    return raw, start, max_id, n_tokens


def _discounts(adjusted: Counter, discount: float, modified: bool) -> tuple[float, float, float]:
    """(D1, D2, D3+) for one order; all equal to ``discount`` unless ``modified``."""
    if not modified:
        return discount, discount, discount
    n = Counter(c for c in adjusted.values() if c <= 4)
    n1, n2, n3, n4 = n[1], n[2], n[3], n[4]
    if min(n1, n2, n3, n4) == 0:  # too little data for the estimate: fall back
        return discount, discount, discount
    y = n1 / (n1 + 2 * n2)
    d1 = 1 - 2 * y * n2 / n1
    d2 = 2 - 3 * y * n3 / n2
    d3 = 3 - 4 * y * n4 / n3
    # Keep each D in (0, its count] so every term stays a probability.
    return (min(max(d1, 1e-3), 1.0), min(max(d2, 1e-3), 2.0), min(max(d3, 1e-3), 3.0))


class NGramLM:
    """Interpolated (optionally modified) Kneser-Ney n-gram model over token ids.

    ``vocab_size`` fixes the support of the distribution; if None it is inferred
    at ``fit`` as the largest training id + 1 (then scoring a larger id raises).
    """

    def __init__(
        self,
        order: int,
        discount: float = 0.75,
        vocab_size: int | None = None,
        modified: bool = False,
    ) -> None:
        if order < 1:
            raise ValueError("order must be >= 1")
        if not 0.0 < discount <= 1.0:
            raise ValueError("discount must be in (0, 1]")
        self.order = int(order)
        self.discount = float(discount)
        self.vocab_size = vocab_size
        self.modified = modified
        # _alpha[k][g]: discounted probability term of k-gram g; _gamma[k][h]: weight
        # given to order k-1 after history h (length k-1).
        self._alpha: list[dict] = []
        self._gamma: list[dict] = []
        self.discounts: list[tuple[float, float, float]] = []

    # ------------------------------------------------------------------ training
    def fit(self, sequences: Iterable[Sequence[int]], vocab_size: int | None = None) -> NGramLM:
        """Count n-grams of every sequence (predicting every token after the first)."""
        raw, start, max_id, _ = _count(sequences, self.order)
        return self._build(raw, start, max_id, vocab_size)

    def _build(self, raw: list, start: list, max_id: int, vocab_size: int | None) -> NGramLM:
        if vocab_size is not None:
            self.vocab_size = int(vocab_size)
        if self.vocab_size is None:
            if max_id < 0:
                raise ValueError("no training tokens and no vocab_size given")
            self.vocab_size = max_id + 1
        if max_id >= self.vocab_size:
            raise ValueError(f"token id {max_id} >= vocab_size {self.vocab_size}")
        n = self.order
        self._alpha = [{} for _ in range(n + 1)]
        self._gamma = [{} for _ in range(n + 1)]
        self.discounts = [(0.0, 0.0, 0.0)]
        for k in range(1, n + 1):
            if k == n:
                adjusted = raw[k]
            else:
                # Continuation count: distinct left neighbours, plus occurrences at
                # the sequence start (which have none).
                adjusted = Counter(g[1:] for g in raw[k + 1])
                if k >= 2:
                    adjusted.update(start[k])
            d1, d2, d3 = _discounts(adjusted, self.discount, self.modified)
            self.discounts.append((d1, d2, d3))
            total: dict = {}
            mass: dict = {}  # discounted mass freed per history
            for g, c in adjusted.items():
                h = g[:-1]
                d = d1 if c == 1 else d2 if c == 2 else d3
                total[h] = total.get(h, 0) + c
                mass[h] = mass.get(h, 0.0) + d
            alpha = self._alpha[k]
            for g, c in adjusted.items():
                d = d1 if c == 1 else d2 if c == 2 else d3
                alpha[g] = (c - d) / total[g[:-1]]
            self._gamma[k] = {h: mass[h] / t for h, t in total.items()}
        return self

    # ------------------------------------------------------------------- scoring
    def _prob(self, history: tuple, w: int) -> float:
        p = 1.0 / self.vocab_size
        hlen = len(history)
        for k in range(1, min(self.order, hlen + 1) + 1):
            h = history[hlen - k + 1 :]
            g = self._gamma[k].get(h)
            if g is None:  # unseen history: every longer one is unseen too
                break
            p = self._alpha[k].get(h + (w,), 0.0) + g * p
        return p

    def prob(self, history: Sequence[int], token: int) -> float:
        """p(token | history); only the last ``order - 1`` history tokens matter."""
        self._check_fitted()
        token = int(token)
        if not 0 <= token < self.vocab_size:
            raise ValueError(f"token {token} outside vocab_size {self.vocab_size}")
        hist = tuple(int(x) for x in history)[max(0, len(history) - self.order + 1) :]
        return self._prob(hist, token)

    def distribution(self, history: Sequence[int]) -> np.ndarray:
        """Next-token distribution over the whole vocabulary (sums to 1)."""
        self._check_fitted()
        hist = tuple(int(x) for x in history)[max(0, len(history) - self.order + 1) :]
        return np.array([self._prob(hist, w) for w in range(self.vocab_size)])

    def log2prob(self, sequence: Sequence[int]) -> np.ndarray:
        """log2 p(token_t | history) for t = 1..len-1 (empty for length < 2)."""
        self._check_fitted()
        seq = tuple(int(x) for x in sequence)
        if seq and (min(seq) < 0 or max(seq) >= self.vocab_size):
            raise ValueError(f"token ids must lie in 0..{self.vocab_size - 1}")
        n = self.order
        alpha, gamma = self._alpha, self._gamma
        uniform = 1.0 / self.vocab_size
        out = np.empty(max(len(seq) - 1, 0))
        for t in range(1, len(seq)):
            w = seq[t]
            p = uniform
            for k in range(1, min(n, t + 1) + 1):
                h = seq[t - k + 1 : t]
                g = gamma[k].get(h)
                if g is None:
                    break
                p = alpha[k].get(h + (w,), 0.0) + g * p
            out[t - 1] = p
        return np.log2(out)

    def total_bits(self, sequences: Iterable[Sequence[int]]) -> tuple[float, int]:
        """(sum of -log2 p over predicted tokens, number of predicted tokens)."""
        bits = 0.0
        count = 0
        for seq in sequences:
            lp = self.log2prob(seq)
            bits -= float(lp.sum())
            count += len(lp)
        return bits, count

    def bits_per_token(self, sequences: Iterable[Sequence[int]]) -> float:
        """Mean -log2 p per predicted token (NaN if nothing is predicted)."""
        bits, count = self.total_bits(sequences)
        return bits / count if count else math.nan

    def _check_fitted(self) -> None:
        if not self._gamma:
            raise RuntimeError("call fit() first")


def select_order(
    train: Iterable[Sequence[int]],
    val: Iterable[Sequence[int]],
    orders: Sequence[int] = (1, 2, 3, 4, 5, 6),
    vocab_size: int | None = None,
    discount: float = 0.75,
    modified: bool = False,
) -> tuple[int, dict[int, float]]:
    """Order with the lowest validation bits/token, and the bits/token of each order.

    Counting is done once at the highest order and shared. ``vocab_size`` defaults to
    the largest id in train or val + 1, so validation-only tokens stay scoreable.
    """
    train = [list(s) for s in train]
    val = [list(s) for s in val]
    if not orders:
        raise ValueError("orders must not be empty")
    raw, start, max_id, _ = _count(train, max(orders))
    if vocab_size is None:
        val_max = max((max(s) for s in val if s), default=-1)
        vocab_size = max(max_id, val_max) + 1
    results: dict[int, float] = {}
    for order in sorted(set(orders)):
        model = NGramLM(order, discount=discount, vocab_size=vocab_size, modified=modified)
        model._build(raw[: order + 1], start[: order + 1], max_id, None)
        results[order] = model.bits_per_token(val)
    best = min(results, key=lambda o: (results[o], o))
    return best, results
