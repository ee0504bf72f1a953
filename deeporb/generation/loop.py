"""The batched generation loop: every row steps together, one word at a time, state carried.

:func:`generate` writes bars after prompts that end at a bar header; :func:`draw_header`
lets the model write what a prompt leaves open before that: the style, the ensemble.
"""

from __future__ import annotations

import math

import torch

from deeporb.encoding.grammar import View
from deeporb.generation.draw import choose
from deeporb.generation.forced import Kept, KeptNotes
from deeporb.generation.masks import MAX_BAR_WORDS, PLACE_WORDS, Grammar, GrammarState
from deeporb.model import State


def _read_prompts(model, grammar: Grammar, prompts: list[list[int]], bar_len: int):
    """One forward per distinct prompt -> (grammar state, model state, last logits), one row each."""
    device = grammar.device
    seen: dict[tuple[int, ...], tuple] = {}
    for prompt in prompts:
        if tuple(prompt) not in seen:
            logits, state = model.read(torch.tensor([prompt], device=device))
            seen[tuple(prompt)] = (grammar.state_after(prompt, bar_len), state, logits)
    rows = [seen[tuple(p)] for p in prompts]
    return GrammarState.cat([r[0] for r in rows]), State.cat([r[1] for r in rows]), torch.cat([r[2] for r in rows])


def named_parts(vocab, parts: list[str], device) -> torch.Tensor:
    named = torch.zeros(len(vocab.instruments), dtype=torch.bool, device=device)
    named[[vocab.instruments.index(k) for k in parts]] = True
    return named


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
    view: View = View.TRACKS,
    min_bars: int | None = None,
    ensembles: list[list[str] | None] | None = None,
    generators: list[torch.Generator] | None = None,
    required: list[list[str] | None] | None = None,
    kept: list[Kept | None] | None = None,
    weights: list[float] | None = None,
) -> list[list[list[int]]]:
    """Continue every prompt ``num_samples`` times by up to ``bars`` bars, all rows in one batch.

    Each prompt must end with the header of the first bar to write (``bar`` [``ts``]), and all
    prompts must hold the same number of bars. A row may end with ``<eos>`` once it has written
    ``min_bars`` bars (default ``bars``: never early). ``ensembles[j]`` (score view) names the
    parts that play after prompt ``j``, each at least once (None: the header's, none required).
    Returns ``[sample][prompt] -> generated word ids`` (prompt and final ``bar``/``<eos>``
    excluded). Rows that finish leave the batch, so a long row never makes short ones pay.
    ``generators`` (instead of ``seed``): one per prompt, prompts of one request sharing one,
    so each request's words do not depend on what else is in the batch (serve.py's batches).
    ``required[j]``: parts that must play after prompt ``j`` without narrowing its ensemble (a
    fill's added parts); ``kept[j]``: what the fill of prompt ``j`` keeps, the notes given
    word for word (:class:`deeporb.generation.forced.KeptNotes`). ``weights``, a list given
    empty, receives each row's log importance weight: the log of the probability the model
    gave the kept notes it was made to write, step by step the share of the grammar's words
    (at ``temperature``) that the kept notes allow. Rows sampled this way, drawn among by these
    weights, are drawn from the model's own distribution given the kept notes, the ones after
    each word included (importance resampling; :func:`deeporb.generation.compose.generate_plans`).
    """
    model.eval()
    device = next(model.parameters()).device
    vocab = model.vocab
    grammar = Grammar(vocab, max_bar_words, device=device, view=view)
    s, state, logits = _read_prompts(model, grammar, prompts, vocab.config.bar_steps(4, 4))
    if not any(ensembles or ()) and not any(required or ()):  # nothing required: skip the policy's work per step
        s.required = s.required[:, :0]
    for j, parts in enumerate(ensembles or ()):
        if parts is not None:
            s.ensemble[j], s.required[j] = named_parts(vocab, parts, device), named_parts(vocab, parts, device)
    for j, parts in enumerate(required or ()):
        if parts:
            s.required[j] = named_parts(vocab, parts, device)
    n_rows = num_samples * len(prompts)
    given = None
    if any(kept or ()):
        rows = [kept[r % len(prompts)] for r in range(n_rows)]
        given = KeptNotes(vocab, rows)
    s = s.repeat(num_samples)
    state = state.rows(torch.arange(len(prompts), device=device).repeat(num_samples))
    logits = logits.repeat(num_samples, 1)
    if not bool((s.bars == s.bars[0]).all()):
        raise ValueError("all prompts must hold the same number of bars")
    target = int(bars) + int(s.bars[0]) - 1
    min_target = target if min_bars is None else min(int(min_bars), int(bars)) + int(s.bars[0]) - 1
    if generators is None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    else:
        generator = [generators[r % len(prompts)] for r in range(n_rows)]
    active = torch.arange(n_rows, device=device)
    log_weight = torch.zeros(n_rows, dtype=torch.float64, device=device)
    out: list[list[int]] = [[] for _ in range(n_rows)]
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []  # (rows, the words they keep)
    max_steps = (bars + 1) * (max_bar_words + 4) + PLACE_WORDS * len(vocab.instruments) + (given.words if given else 0)
    for _ in range(max_steps):
        allowed = grammar.mask(s, target, min_target)
        if given is not None:
            free = allowed.clone() if weights is not None else None
            given.restrict(allowed, s.pos, s.part)
            if free is not None:
                scaled = logits.float() / max(float(temperature), 1e-6)
                log_weight[active] += (scaled.masked_fill(~allowed, -math.inf).logsumexp(-1)
                                       - scaled.masked_fill(~free, -math.inf).logsumexp(-1)).double()
        token = choose(torch.where(allowed, logits, -math.inf), temperature, top_k, top_p, generator)
        if given is not None:
            given.advance(token, s.vel)
        finished = grammar.advance(s, token, target)
        if bool(finished.any()):  # finished rows leave (their last word, bar or <eos>, is not kept)
            keep = ~finished
            active, token = active[keep], token[keep]
            if not len(active):
                break
            if generators is not None:
                generator = [g for g, k in zip(generator, keep.tolist(), strict=True) if k]
            if given is not None:
                given.keep(keep.tolist())
            s = s.map(lambda t: t[keep])  # noqa: B023 (used at once)
            state = state.rows(keep)
        steps.append((active, token))
        logits, state = model.step(token, state)
    else:
        raise RuntimeError(f"generation did not finish in {max_steps} steps (grammar bug)")
    for rows, tokens in steps:  # gathered once at the end, not per step
        for r, t in zip(rows.tolist(), tokens.tolist(), strict=True):
            out[r].append(t)
    if weights is not None:
        weights[:] = log_weight.tolist()
    k = len(prompts)
    return [[out[i * k + j] for j in range(k)] for i in range(num_samples)]


@torch.inference_mode()
def draw_header(
    model,
    prefix: list[int],
    rows: int,
    style: bool,
    ensemble: bool,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    view: View = View.SCORE,
) -> list[list[int]]:
    """The header words the model writes after ``prefix`` (``<bos>`` [``style_S``]), ``rows`` times.

    ``style``: first a ``style_`` word (the prefix has none). ``ensemble``: then ``inst_`` words,
    ascending as the grammar has them, until the model writes ``bar`` (not returned). The draw
    uses the sampling settings, so the model picks styles and ensembles as often as it learned.
    """
    model.eval()
    device = next(model.parameters()).device
    vocab = model.vocab
    grammar = Grammar(vocab, device=device, view=view)
    s, state, logits = _read_prompts(model, grammar, [prefix], vocab.config.bar_steps(4, 4))
    s = s.repeat(rows)
    state = state.rows(torch.zeros(rows, dtype=torch.long, device=device))
    logits = logits.repeat(rows, 1)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    out: list[list[int]] = [[] for _ in range(rows)]
    a, b = vocab.blocks["style"]
    for step in range(len(vocab.instruments) + 2):
        allowed = grammar.mask(s, 0, min_target=1)  # the header: no <eos>, the first bar ends it
        allowed[s.done] = False
        allowed[:, grammar.pad_id] = s.done  # finished rows wait on <pad>
        if step == 0 and style:
            allowed[:, :a] = False
            allowed[:, b:] = False
        token = choose(logits.masked_fill(~allowed, -math.inf), temperature, top_k, top_p, generator)
        done = s.done.clone()
        grammar.advance(s, token, 0)
        for r in torch.nonzero(~done)[:, 0].tolist():
            if int(token[r]) != grammar.bar_id:
                out[r].append(int(token[r]))
        if not ensemble and step == 0:
            return out
        if bool(s.done.all()):
            return out
        logits, state = model.step(token, state)
    raise RuntimeError("the header did not end (grammar bug)")
