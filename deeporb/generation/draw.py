"""The draw: temperature, top-k and nucleus (top-p) filtering, and one word per row."""

from __future__ import annotations

from itertools import groupby

import torch

NUCLEUS_GUESS = 32  # candidates searched for the top-p nucleus before sorting whole rows
# a temperature below this draws greedily: logits / 1e-300 overflow float32 (1e-300 *is* 0.0
# there) to inf and nan, and from 1e-6 down the likeliest word already takes all the weight
# unless another lies within float32 noise of it
GREEDY_BELOW = 1e-6


def candidates(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Temperature, top-k, then nucleus (top-p) -> (weights, word ids; None: all words in order).

    With a filter the candidates come back sorted by weight, so the words still allowed
    are a prefix of each row. Filtering works on the sorted candidates and never scatters
    back. Masked words (-inf) get weight 0; the word that crosses ``top_p`` is kept, so at
    least one candidate always remains.
    """
    if temperature != 1.0:  # from the row's best at 0, so dividing may underflow to -inf but never
        # overflow to +inf or nan; an infinite temperature would make masked words nan (-inf / inf)
        top = logits.amax(-1, keepdim=True)
        logits = (logits - torch.where(torch.isfinite(top), top, torch.zeros_like(top))) / min(temperature, 1e30)
    size = logits.shape[-1]
    use_k, use_p = 0 < top_k < size, 0.0 < top_p < 1.0
    if not (use_k or use_p):
        return torch.softmax(logits, dim=-1), None
    if use_k:
        logits, order = torch.topk(logits, top_k, dim=-1)
        probs = torch.softmax(logits, dim=-1)
    else:
        # a full sort of every row costs as much as the LSTM step on a CPU; the nucleus
        # usually lies in the top few words, so look there first and sort only if not
        full = torch.softmax(logits, dim=-1)
        probs, order = torch.topk(full, min(size, NUCLEUS_GUESS), dim=-1)
        short = (probs.sum(-1) <= top_p).nonzero()[:, 0]
        if len(short) and probs.shape[-1] < size:  # sort just the rows it was not in
            pad = size - probs.shape[-1]
            probs = torch.cat([probs, probs.new_zeros(len(probs), pad)], 1)
            order = torch.cat([order, order.new_zeros(len(order), pad)], 1)
            probs[short], order[short] = torch.sort(full[short], dim=-1, descending=True)
    if use_p:
        probs = probs.masked_fill(probs.cumsum(-1) - probs > top_p, 0.0)
    return probs, order


def uniforms(rows: int, width: int, generator, device) -> torch.Tensor:
    """(rows, width) uniform numbers from one generator, or from a list of one per row.

    In a list, consecutive rows that share a generator draw together, in row order, exactly
    as a batch of just those rows draws from its own generator: so a request batched beside
    others (``serve.py``) gets the words it would get alone.
    """
    if isinstance(generator, torch.Generator):
        return torch.rand(rows, width, generator=generator, device=device)
    return torch.cat([torch.rand(len(list(same)), width, generator=g, device=device)
                      for g, same in groupby(generator)])


def choose(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator) -> torch.Tensor:
    """One word per row: greedy when ``temperature`` is 0 or less or below :data:`GREEDY_BELOW`,
    else a filtered random draw. Always a word of the row (never -1), whatever the logits.

    ``torch.multinomial`` cost more than the LSTM step at batch 64 on a CPU, so the draw is
    done by hand: Gumbel-max over all words, or the inverse CDF over sorted candidates
    (clamped to the last one with weight, so float rounding can never pick a masked word).
    ``generator``: one for the batch, or one per row (:func:`uniforms`).
    """
    if not temperature >= GREEDY_BELOW:  # nan too: the caller's checks refuse it, this never crashes
        return logits.argmax(-1)
    weights, order = candidates(logits, temperature, top_k, top_p)
    u = uniforms(weights.shape[0], 1 if order is not None else weights.shape[1], generator, weights.device)
    if order is None:
        return (weights.log() - (-u.clamp_min(1e-20).log()).log()).argmax(-1)
    cdf = weights.cumsum(-1)
    pick = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
    pick = torch.minimum(pick, (weights > 0).sum(-1, keepdim=True) - 1).clamp_min(0)  # 0: a row of no weight
    return order.gather(1, pick)[:, 0]
