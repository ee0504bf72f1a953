"""The batched generation loop: every row steps together, one word at a time, state carried."""

from __future__ import annotations

import math

import torch

from deeporb.generation.draw import choose
from deeporb.generation.masks import MAX_BAR_WORDS, Grammar, GrammarState


@torch.inference_mode()
def generate(
    model,
    prompts: list[list[int]],
    num_samples: int,
    bars: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    max_bar_words: int = MAX_BAR_WORDS,
    generators: list[torch.Generator] | None = None,
) -> list[list[list[int]]]:
    """Continue every prompt ``num_samples`` times by ``bars`` bars, all rows in one batch.

    Each prompt must end with the header of the first bar to write (``bar`` [``ts``]).
    Returns ``[sample][prompt] -> generated word ids`` (prompt and final ``bar`` excluded).
    Rows that finish leave the batch, so a long row never makes short ones pay.
    ``generators`` (instead of ``seed``): one per prompt, prompts of one request sharing one,
    so each request's words do not depend on what else is in the batch (the server's batches).
    """
    model.eval()
    device = next(model.parameters()).device
    grammar = Grammar(model.vocab, max_bar_words, device=device)
    default_len = model.vocab.config.bar_steps(4, 4)
    states, hs, cs, last = [], [], [], []
    for prompt in prompts:  # prompts differ in length: one forward each, then tile over samples
        logits, (h, c) = model(torch.tensor([prompt], device=device))
        states.append(grammar.state_after(prompt, default_len))
        hs.append(h)
        cs.append(c)
        last.append(logits[:, -1])
    n_rows = num_samples * len(prompts)
    s = GrammarState.cat(states).repeat(num_samples)
    state = (torch.cat(hs, 1).repeat(1, num_samples, 1), torch.cat(cs, 1).repeat(1, num_samples, 1))
    logits = torch.cat(last).repeat(num_samples, 1)
    target = int(bars) + int(s.bars.max()) - 1
    if not bool((s.bars == s.bars[0]).all()):
        raise ValueError("all prompts must hold the same number of bars")
    if generators is None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    else:
        generator = [generators[r % len(prompts)] for r in range(n_rows)]
    active = torch.arange(n_rows, device=device)
    out: list[list[int]] = [[] for _ in range(n_rows)]
    steps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (rows, words, kept)
    max_steps = (bars + 1) * (max_bar_words + 4)
    for _ in range(max_steps):
        allowed = grammar.mask(s, target)
        token = choose(logits.masked_fill(~allowed, -math.inf), temperature, top_k, top_p, generator)
        finished = grammar.advance(s, token, target)
        keep = ~finished
        steps.append((active, token, keep))
        if not bool(keep.all()):
            if not bool(keep.any()):
                break
            active, token = active[keep], token[keep]
            if generators is not None:
                generator = [g for g, k in zip(generator, keep.tolist(), strict=True) if k]
            s = s.map(lambda t: t[keep])  # noqa: B023 (used at once)
            state = (state[0][:, keep], state[1][:, keep])
        logits, state = model.step(token, state)
    else:
        raise RuntimeError(f"generation did not finish in {max_steps} steps (grammar bug)")
    for rows, tokens, keep in steps:  # gathered once at the end, not per step
        for r, t in zip(rows[keep].tolist(), tokens[keep].tolist(), strict=True):
            out[r].append(t)
    k = len(prompts)
    return [[out[i * k + j] for j in range(k)] for i in range(num_samples)]
