"""Generate music from a trained checkpoint: batched, grammar-constrained, optionally primed.

Every sample and every instrument is one row of a single batch that steps together, one word
at a time, carrying the LSTM state (the history is never fed again). Before each draw a
grammar mask is applied to the logits, so every row is a valid word sequence that
:func:`deeporb.words.decode_words` accepts with ``strict=True``; see :class:`Grammar`.

Rows start from a prompt fed once through the network: ``<bos> inst_KEY`` then the primer's
first bars (if any) and the header (``bar`` + time signature) of the first bar to write.
Time signatures are fixed by the prompt (primer or training statistics) and never sampled,
so the tracks of one sample always share a meter. This module never trains.
"""

from __future__ import annotations

import inspect
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deeporb.errors import UserError
from deeporb.instruments import instrument_key, key_program
from deeporb.midi import MidiReadError, Track, read_midi, write_midi
from deeporb.words import (
    BAR,
    BOS,
    EOS,
    PAD,
    WORD_KINDS,
    DecodeError,
    EncodingConfig,
    GridNotes,
    Meter,
    Vocabulary,
    decode_words,
    encode,
    pitch_word,
)

SPECIAL, KBAR, KTS, KPOS, KVEL, KPITCH, KDUR, KINST = range(len(WORD_KINDS))
assert WORD_KINDS == ("special", "bar", "ts", "pos", "vel", "pitch", "dur", "inst")
MAX_BAR_WORDS = 512  # words one generated bar may hold before only `bar` is allowed
NUCLEUS_GUESS = 32  # candidates searched for the top-p nucleus before sorting whole rows


# ---------------------------------------------------------------------------------------
# checkpoints


def resolve_checkpoint(path: str | Path | None) -> Path:
    """A ``.ckpt`` file, or a training run folder -> its best checkpoint (else ``last.ckpt``)."""
    if path is None or str(path) == "":
        raise UserError("pass ckpt_path=PATH (a .ckpt file or a training run folder)")
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise UserError(f"checkpoint {str(p)!r} not found; pass ckpt_path=PATH to a .ckpt file or a run folder")
    metrics = p / "metrics.json"
    if metrics.is_file():
        try:
            best = json.loads(metrics.read_text()).get("best_checkpoint")
        except (json.JSONDecodeError, AttributeError):
            best = None
        if best:  # absolute when written; the folder may have moved since
            for candidate in (Path(best), p / best, p / "checkpoints" / Path(best).name):
                if candidate.is_file():
                    return candidate
    for folder in (p / "checkpoints", p):
        best = sorted(folder.glob("best*.ckpt"), key=lambda f: (f.stat().st_mtime, f.name))
        if best:
            return best[-1]
    for candidate in (p / "checkpoints" / "last.ckpt", p / "last.ckpt"):
        if candidate.is_file():
            return candidate
    raise UserError(
        f"no checkpoint in run folder {str(p)!r} (looked for metrics.json best_checkpoint, "
        "checkpoints/best*.ckpt and last.ckpt); pass ckpt_path=FILE.ckpt"
    )


def load_generator(path: str | Path, device: str = "cpu"):
    """Load an ``LSTMGenerator`` for sampling, with a clear error for a wrong or broken file."""
    from deeporb.model import LSTMGenerator

    path = resolve_checkpoint(path)
    try:  # full unpickling, as Lightning does: a checkpoint is trusted like any code you run
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise UserError(f"cannot read checkpoint {str(path)!r}: {first}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "vocab" not in ckpt.get("hyper_parameters", {}):
        raise UserError(f"{str(path)!r} is not a DeepOrb checkpoint (no weights or vocabulary); pass a file written by train.py")
    hparams = dict(ckpt["hyper_parameters"])
    try:
        vocab = Vocabulary.from_dict(hparams["vocab"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"checkpoint {str(path)!r} has an unreadable vocabulary ({e})") from None
    weights = ckpt["state_dict"].get("embedding.weight")
    if weights is None or weights.shape[0] != len(vocab):
        rows = None if weights is None else weights.shape[0]
        raise UserError(
            f"checkpoint {str(path)!r} was trained with another vocabulary ({rows} words in its "
            f"weights, {len(vocab)} from its encoding config); sample with the code that trained it or retrain"
        )
    accepted = set(inspect.signature(LSTMGenerator.__init__).parameters) - {"self"}
    model = LSTMGenerator(**{k: v for k, v in hparams.items() if k in accepted})
    try:
        model.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as e:
        first = str(e).splitlines()[-1].strip()[:160]
        raise UserError(f"checkpoint {str(path)!r} does not fit its own model settings: {first}") from None
    missing = [k for k in model.state_dict() if k not in ckpt["state_dict"]]
    if missing:
        raise UserError(f"checkpoint {str(path)!r} lacks weights {', '.join(missing[:3])}; it is incomplete")
    model.checkpoint_path = path
    return model.to(device).eval()


def session_info(model) -> dict:
    """The checkpoint's session facts, with defaults for anything a trainer left out."""
    session = dict(model.hparams.get("session") or {})
    session.setdefault("qpm_median", 120.0)
    session.setdefault("time_signatures", {"4/4": 1})
    session.setdefault("instruments", {})
    session.setdefault("instrument_key", "program")
    return session


def instrument_program(key: str, session: dict) -> tuple[int, bool]:
    """Instrument key -> (GM program, is_drum): the session's record first, then the GM name."""
    info = (session.get("instruments") or {}).get(key) or {}
    program, is_drum = key_program(key)
    if "program" in info:
        program = int(info["program"])
    if "is_drum" in info:
        is_drum = bool(info["is_drum"])
    return program, is_drum


# ---------------------------------------------------------------------------------------
# the grammar, as vectorised masks over the batch


@dataclass
class GrammarState:
    """Per-row facts the grammar needs, as (B,) tensors."""

    prev: torch.Tensor  # kind of the last word (WORD_KINDS index)
    pos: torch.Tensor  # onset step inside the bar, -1 before the first position
    last_pitch: torch.Tensor  # last pitch at this onset, -1 after a new position
    bar_len: torch.Tensor  # grid steps in the current bar
    bars: torch.Tensor  # `bar` words seen
    bar_words: torch.Tensor  # words since the last `bar`
    done: torch.Tensor  # bool

    FIELDS = ("prev", "pos", "last_pitch", "bar_len", "bars", "bar_words", "done")

    @classmethod
    def fresh(cls, batch: int, bar_len: int, device="cpu") -> GrammarState:
        z = torch.zeros(batch, dtype=torch.long, device=device)
        return cls(z.clone(), z - 1, z - 1, z + bar_len, z.clone(), z.clone(), z.bool())

    def map(self, fn) -> GrammarState:
        return GrammarState(*(fn(getattr(self, f)) for f in self.FIELDS))

    @classmethod
    def cat(cls, states: list[GrammarState]) -> GrammarState:
        return cls(*(torch.cat([getattr(s, f) for s in states]) for f in cls.FIELDS))


class Grammar:
    """What may follow what, so every row decodes (``decode_words(strict=True)``).

    Per bar: ``bar [ts] ( pos_K [vel_V] P dur_D ( [vel_V] P dur_D )* )*`` where positions
    strictly increase and stay inside the bar, pitches strictly rise inside a chord (as the
    encoder writes them, and so no note is doubled), and a pitch is always followed by its
    duration. ``ts`` words only come from prompts. A row stops at the ``bar`` (or ``<eos>``)
    that would open bar ``target + 1``; ``<eos>`` is refused before that, so every sample has
    the length asked for. A bar holding ``max_bar_words`` words may only be closed, which
    bounds the number of steps.
    """

    def __init__(self, vocab: Vocabulary, max_bar_words: int = MAX_BAR_WORDS, device="cpu") -> None:
        c = vocab.config
        self.vocab = vocab
        self.size = len(vocab)
        self.bar_id, self.eos_id, self.pad_id = vocab.index[BAR], vocab.index[EOS], vocab.index[PAD]
        self.n_pos = c.max_bar_quarters * c.resolution
        self.n_vel = c.velocity_bins
        self.n_dur = len(c.duration_steps)
        self.pos0, self.vel0, self.pitch0, self.dur0 = vocab.pos0, vocab.vel0, vocab.pitch0, vocab.dur0
        # the blocks must be contiguous for slicing: true by construction, checked here
        assert vocab.words[self.pos0 + self.n_pos - 1] == f"pos_{self.n_pos - 1}"
        assert vocab.words[self.pitch0 + 127] == pitch_word(127)
        assert vocab.words[self.vel0 + self.n_vel - 1] == f"vel_{self.n_vel - 1}"
        self.max_bar_words = max_bar_words
        self.kind = torch.as_tensor(vocab.kind_of(), device=device)
        ts_steps = torch.zeros(self.size, dtype=torch.long)
        for (n, d), i in vocab.ts_ids.items():
            ts_steps[i] = c.bar_steps(n, d)
        self.ts_steps = ts_steps.to(device)
        # the mask is three lookups: words allowed by (previous kind, bar has room, row may
        # stop, chord may rise), then positions by (position, bar length), pitches by last pitch
        self.table = self._kind_table().to(device)
        k = torch.arange(self.n_pos)
        pos, bar_len = torch.arange(-1, self.n_pos)[:, None, None], torch.arange(self.n_pos + 1)[None, :, None]
        self.pos_ok = ((k > pos) & (k < bar_len)).to(device)  # [pos + 1, bar_len, k]
        self.pitch_ok = (torch.arange(128)[None] > torch.arange(-1, 128)[:, None]).to(device)

    def _kind_table(self) -> torch.Tensor:
        """(64, V) bool indexed by ``prev + 8 * (room + 2 * may_stop + 4 * chord_may_rise)``."""
        table = torch.zeros(len(WORD_KINDS) * 8, self.size, dtype=torch.bool)
        for prev in range(len(WORD_KINDS)):
            for flags in range(8):
                room, may_stop, rise = bool(flags & 1), bool(flags & 2), bool(flags & 4)
                row = table[prev + len(WORD_KINDS) * flags]
                header_or_dur = prev in (KBAR, KTS, KDUR)
                row[self.bar_id] = header_or_dur or prev == KINST
                row[self.eos_id] = bool(row[self.bar_id]) and may_stop
                row[self.pos0 : self.pos0 + self.n_pos] = header_or_dur and room
                row[self.vel0 : self.vel0 + self.n_vel] = prev == KPOS or (prev == KDUR and room and rise)
                row[self.pitch0 : self.pitch0 + 128] = prev in (KPOS, KVEL) or (prev == KDUR and room)
                row[self.dur0 : self.dur0 + self.n_dur] = prev == KPITCH
        return table

    def mask(self, s: GrammarState, target: int) -> torch.Tensor:
        """(B, V) bool: the words each row may take next."""
        flags = (s.bar_words < self.max_bar_words).long() + 2 * (s.bars >= target).long()
        flags += 4 * (s.last_pitch < 127).long()
        allowed = self.table[s.prev + len(WORD_KINDS) * flags]
        allowed[:, self.pos0 : self.pos0 + self.n_pos] &= self.pos_ok[s.pos + 1, s.bar_len]
        allowed[:, self.pitch0 : self.pitch0 + 128] &= self.pitch_ok[s.last_pitch + 1]
        allowed[:, self.pad_id] = s.done
        return allowed

    def advance(self, s: GrammarState, token: torch.Tensor, target: int | None = None) -> torch.Tensor:
        """Update ``s`` in place with the chosen words; return which rows just finished."""
        k = self.kind[token]
        is_bar = token == self.bar_id
        new_pos = k == KPOS
        finished = torch.zeros_like(is_bar) if target is None else (
            (is_bar | (token == self.eos_id)) & (s.bars >= target) & ~s.done
        )
        s.done |= finished
        s.bars += is_bar.long()
        s.pos = torch.where(is_bar, -1, torch.where(new_pos, token - self.pos0, s.pos))
        s.last_pitch = torch.where(
            is_bar | new_pos, -1, torch.where(k == KPITCH, token - self.pitch0, s.last_pitch)
        )
        s.bar_len = torch.where(k == KTS, self.ts_steps[token], s.bar_len)
        s.bar_words = torch.where(is_bar, 1, s.bar_words + 1)
        s.prev = k
        return finished

    def state_after(self, prompt: list[int], bar_len: int) -> GrammarState:
        """The state after reading a prompt (one row)."""
        s = GrammarState.fresh(1, bar_len, device=self.kind.device)
        for t in prompt:
            self.advance(s, torch.tensor([t], device=self.kind.device))
        return s


# ---------------------------------------------------------------------------------------
# batched generation


def candidates(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Temperature, top-k, then nucleus (top-p) -> (weights, word ids; None: all words in order).

    With a filter the candidates come back sorted by weight, so the words still allowed
    are a prefix of each row. Filtering works on the sorted candidates and never scatters
    back. Masked words (-inf) get weight 0; the word that crosses ``top_p`` is kept, so at
    least one candidate always remains.
    """
    if temperature != 1.0:
        logits = logits / temperature
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


def choose(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator) -> torch.Tensor:
    """One word per row: greedy when ``temperature <= 0``, else a filtered random draw.

    ``torch.multinomial`` cost more than the LSTM step at batch 64 on a CPU, so the draw is
    done by hand: Gumbel-max over all words, or the inverse CDF over sorted candidates
    (clamped to the last one with weight, so float rounding can never pick a masked word).
    """
    if temperature <= 0:
        return logits.argmax(-1)
    weights, order = candidates(logits, temperature, top_k, top_p)
    u = torch.rand(weights.shape[0], 1 if order is not None else weights.shape[1],
                   generator=generator, device=weights.device)
    if order is None:
        return (weights.log() - (-u.clamp_min(1e-20).log()).log()).argmax(-1)
    cdf = weights.cumsum(-1)
    pick = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
    pick = torch.minimum(pick, (weights > 0).sum(-1, keepdim=True) - 1)
    return order.gather(1, pick)[:, 0]


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
) -> list[list[list[int]]]:
    """Continue every prompt ``num_samples`` times by ``bars`` bars, all rows in one batch.

    Each prompt must end with the header of the first bar to write (``bar`` [``ts``]).
    Returns ``[sample][prompt] -> generated word ids`` (prompt and final ``bar`` excluded).
    Rows that finish leave the batch, so a long row never makes short ones pay.
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
    s = GrammarState.cat(states).map(lambda t: t.repeat(num_samples))
    state = (torch.cat(hs, 1).repeat(1, num_samples, 1), torch.cat(cs, 1).repeat(1, num_samples, 1))
    logits = torch.cat(last).repeat(num_samples, 1)
    target = int(bars) + int(s.bars.max()) - 1
    if not bool((s.bars == s.bars[0]).all()):
        raise ValueError("all prompts must hold the same number of bars")
    generator = torch.Generator(device=device).manual_seed(int(seed))
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


# ---------------------------------------------------------------------------------------
# meters, prompts and primers


def bar_grid(meter: Meter, nbars: int, config: EncodingConfig) -> tuple[np.ndarray, list[list[str]]]:
    """Start steps of the first ``nbars + 1`` bars, and each bar's header words (as encode writes)."""
    end = (nbars + 1) * config.max_bar_quarters * config.resolution
    lines, which = meter.bar_lines(end, config)
    headers = []
    for b in range(nbars + 1):
        header = [BAR]
        if b == 0 or which[b] != which[b - 1]:
            n, d = meter.signatures[which[b]]
            header.append(f"ts_{n}/{d}")
        headers.append(header)
    return lines[: nbars + 1], headers


def split_bars(words: list[str]) -> list[list[str]]:
    starts = [i for i, w in enumerate(words) if w == BAR]
    return [words[a:b] for a, b in zip(starts, starts[1:] + [len(words)], strict=True)]


def session_meter(session: dict, config: EncodingConfig) -> Meter:
    """The training set's most common representable time signature (4/4 if none)."""
    counts = Counter()
    for text, count in (session.get("time_signatures") or {}).items():
        try:
            n, d = (int(x) for x in str(text).split("/"))
        except ValueError:
            continue
        if config.bar_steps(n, d) is not None:
            counts[(n, d)] += int(count)
    sig = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0] if counts else (4, 4)
    return Meter([0], [sig])


@dataclass
class Primer:
    """The first bars of a primer MIDI, encoded per instrument the model knows."""

    path: Path
    bars: int  # primer bars used (fewer than asked when the file is shorter)
    words: dict[str, list[str]]  # instrument -> words of those bars
    meter: Meter
    tempos: list[tuple[float, float]]
    end_step: int  # grid step where generation starts
    ignored: list[str] = field(default_factory=list)  # primer instruments the model does not know


def load_primer(path: str | Path, vocab: Vocabulary, primer_bars: int, key_mode: str = "program") -> Primer:
    """Read and encode a primer with the model's encoding config and instrument-key rule."""
    path = Path(path).expanduser()
    try:
        piece = read_midi(path)
    except MidiReadError as e:
        raise UserError(f"primer {str(path)!r}: {e}; pass primer=FILE.mid") from None
    groups: dict[str, list] = {}
    for track in piece.tracks:
        if len(track):
            key = instrument_key(key_mode, track.program, track.is_drum, track.name)
            groups.setdefault(key, []).append(track)
    if not groups:
        raise UserError(f"primer {str(path)!r} has no notes")
    known = sorted(k for k in groups if k in vocab.instruments)
    if not known:
        raise UserError(
            f"primer {str(path)!r} has no instrument this model knows: the primer has "
            f"{', '.join(sorted(groups))}; the model knows {', '.join(vocab.instruments) or 'none'}"
        )
    config = vocab.config
    meter = Meter.from_changes(list(piece.time_signatures), config)
    encoded = {}
    for key in known:
        notes = {c: np.concatenate([t.notes[c] for t in groups[key]]) for c in ("onset", "duration", "pitch", "velocity")}
        words, _ = encode(notes, piece.time_signatures, vocab)
        encoded[key] = split_bars(words.split())
    nbars = min(max(0, int(primer_bars)), max(len(b) for b in encoded.values()))
    lines, headers = bar_grid(meter, nbars, config)
    words = {}
    for key, bars in encoded.items():
        chosen = [bars[b] if b < len(bars) else headers[b] for b in range(nbars)]
        words[key] = [w for bar in chosen for w in bar]
    end_step = int(lines[nbars])
    end_q = end_step / config.resolution
    tempos = [(q, qpm) for q, qpm in piece.tempos if q < end_q or q == 0]
    return Primer(path, nbars, words, meter, tempos, end_step, sorted(set(groups) - set(known)))


def build_prompts(
    vocab: Vocabulary, instruments: list[str], meter: Meter, primer: Primer | None
) -> list[list[int]]:
    """``<bos> inst_KEY`` + primer bars (empty bars for instruments it lacks) + next bar's header."""
    nbars = primer.bars if primer else 0
    _, headers = bar_grid(meter, nbars, vocab.config)
    prompts = []
    for key in instruments:
        body = primer.words.get(key) if primer else None
        if body is None:
            body = [w for h in headers[:nbars] for w in h]
        words = [BOS, f"inst_{key}", *body, *headers[nbars]]
        prompts.append([int(i) for i in vocab.ids(words)])
    return prompts


# ---------------------------------------------------------------------------------------
# from words to files


def tidy_notes(grid: GridNotes) -> GridNotes:
    """Shorten a note where the same pitch starts again before it ends; drop exact repeats.

    Overlapping notes of one pitch on one channel are ambiguous in MIDI (which note-off ends
    which note-on): players cut or hang them. The grammar prevents repeats inside a chord;
    this also covers long notes overlapping a later onset.
    """
    if len(grid) == 0:
        return grid
    order = np.lexsort((-grid.duration, grid.onset, grid.pitch))
    on, dur, pitch, vel = (a[order].copy() for a in (grid.onset, grid.duration, grid.pitch, grid.velocity_bin))
    same = pitch[1:] == pitch[:-1]
    repeat = np.concatenate([[False], same & (on[1:] == on[:-1])])
    on, dur, pitch, vel = on[~repeat], dur[~repeat], pitch[~repeat], vel[~repeat]
    same = pitch[1:] == pitch[:-1]
    gap = on[1:] - on[:-1]
    cut = same & (on[:-1] + dur[:-1] > on[1:])
    dur[:-1][cut] = gap[cut]
    back = np.lexsort((vel, dur, pitch, on))
    return GridNotes(on[back], dur[back], pitch[back], vel[back])


def shift_meter(meter: Meter, step: int) -> Meter:
    """The meter seen from grid step ``step`` on (which is a bar line)."""
    i = int(np.searchsorted(meter.starts, step, side="right")) - 1
    starts = [0] + [s - step for s in meter.starts[i + 1 :]]
    return Meter(starts, [meter.signatures[i], *meter.signatures[i + 1 :]])


def seconds_at(quarters: float, tempos: list[tuple[float, float]]) -> float:
    """Quarter-note time -> seconds through a tempo map."""
    total, q0, qpm = 0.0, 0.0, tempos[0][1] if tempos else 120.0
    for q, t in tempos[1:]:
        if q >= quarters:
            break
        total += (q - q0) * 60.0 / qpm
        q0, qpm = q, t
    return total + (quarters - q0) * 60.0 / qpm


@dataclass
class SampleResult:
    midi: Path
    instruments: list[str]
    notes: int
    bars: int
    pitch_range: tuple[int, int] | None
    seconds: float
    qpm: float
    time_signature: str
    tracks: list[Track] = field(repr=False, default_factory=list)
    png: Path | None = None
    wav: Path | None = None


def rows_to_tracks(
    rows: list[list[int]],
    prompts: list[list[int]],
    instruments: list[str],
    vocab: Vocabulary,
    session: dict,
    start_step: int,
) -> tuple[list[Track], Meter]:
    """Decode one sample's rows (strictly: a failure is a sampler bug) into MIDI tracks."""
    config = vocab.config
    tracks, meter = [], None
    for key, prompt, row in zip(instruments, prompts, rows, strict=True):
        words = vocab.decode_ids(prompt + row)
        grid, row_meter = decode_words(words, vocab, strict=True)
        meter = meter or row_meter
        if start_step:
            keep = grid.onset >= start_step
            grid = GridNotes(grid.onset[keep] - start_step, grid.duration[keep], grid.pitch[keep], grid.velocity_bin[keep])
        program, is_drum = instrument_program(key, session)
        tracks.append(Track(key, program, is_drum, tidy_notes(grid).to_quarters(config)))
    return tracks, shift_meter(meter, start_step) if start_step else meter


def sample(
    ckpt_path: str | Path,
    out_dir: str | Path,
    num_samples: int = 4,
    bars: int = 16,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.95,
    seed: int | None = None,
    instruments: list[str] | None = None,
    primer: str | Path | None = None,
    primer_bars: int = 4,
    keep_primer: bool = True,
    tempo: float | None = None,
    render: dict | None = None,
    device: str = "cpu",
    model=None,
) -> list[SampleResult]:
    """The whole sample stage: load, prompt, generate, decode, write MIDI (+ PNG, + WAV)."""
    render = {"piano_roll": True, "audio": False, "soundfont": None, "fluidsynth": "fluidsynth",
              "sample_rate": 44100, **(render or {})}
    if num_samples < 1 or bars < 1:
        raise UserError(f"num_samples and bars must be at least 1 (got {num_samples}, {bars})")
    if not 0.0 < top_p <= 1.0 or top_k < 0:
        raise UserError(f"need 0 < top_p <= 1 and top_k >= 0 (got top_p={top_p}, top_k={top_k})")
    if tempo is not None and not 0 < float(tempo) <= 1000:
        raise UserError(f"tempo must be in quarter notes per minute, 0 < tempo <= 1000 (got {tempo})")
    if render["audio"]:
        from deeporb.render import find_audio_tools

        find_audio_tools(render["soundfont"], render["fluidsynth"])  # fail before the work
    model = model if model is not None else load_generator(ckpt_path, device)
    vocab, session = model.vocab, session_info(model)
    if not vocab.instruments:
        raise UserError("the checkpoint's vocabulary has no instruments to generate")
    if instruments is not None and isinstance(instruments, str):
        instruments = [instruments]
    unknown = [k for k in instruments or [] if k not in vocab.instruments]
    if unknown:
        raise UserError(
            f"unknown instrument {', '.join(map(repr, unknown))}; this model knows: {', '.join(vocab.instruments)}"
        )
    loaded = load_primer(primer, vocab, primer_bars, session["instrument_key"]) if primer else None
    chosen = list(dict.fromkeys(instruments or (sorted(loaded.words) if loaded else vocab.instruments)))
    meter = loaded.meter if loaded else session_meter(session, vocab.config)
    if tempo is not None:
        tempos = [(0.0, float(tempo))]
    elif loaded and loaded.tempos:
        tempos = loaded.tempos
    else:
        tempos = [(0.0, float(session["qpm_median"]))]
    start_step = loaded.end_step if loaded and not keep_primer else 0
    if start_step:
        start_q = start_step / vocab.config.resolution
        in_force = [t for q, t in tempos if q <= start_q][-1]
        tempos = [(0.0, in_force)]
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**31)
    prompts = build_prompts(vocab, chosen, meter, loaded)
    generated = generate(model, prompts, num_samples, bars, temperature, top_k, top_p, seed)

    out_dir = Path(out_dir)
    results = []
    total_bars = bars + (loaded.bars if loaded and keep_primer else 0)
    for i, rows in enumerate(generated):
        tracks, out_meter = rows_to_tracks(rows, prompts, chosen, vocab, session, start_step)
        ts = out_meter.changes(vocab.config)
        midi = write_midi(out_dir / f"sample_{i:03d}.mid", tracks, tempos, ts)
        pitches = np.concatenate([t.notes["pitch"] for t in tracks])
        end_q = max([float(np.max(t.notes["onset"] + t.notes["duration"])) for t in tracks if len(t)] or [0.0])
        lines, _ = bar_grid(out_meter, total_bars, vocab.config)
        res = SampleResult(
            midi=midi,
            instruments=chosen,
            notes=int(len(pitches)),
            bars=total_bars,
            pitch_range=(int(pitches.min()), int(pitches.max())) if len(pitches) else None,
            seconds=round(seconds_at(max(end_q, lines[-1] / vocab.config.resolution), tempos), 3),
            qpm=tempos[0][1],
            time_signature=f"{ts[0][1]}/{ts[0][2]}",
            tracks=tracks,
        )
        if render["piano_roll"]:
            from deeporb.render import piano_roll

            res.png = piano_roll(tracks, midi.with_suffix(".png"), title=f"{midi.name} (seed {seed})",
                                 bar_lines=lines / vocab.config.resolution)
        if render["audio"]:
            from deeporb.render import render_wav

            res.wav = render_wav(midi, midi.with_suffix(".wav"), render["soundfont"],
                                 render["fluidsynth"], render["sample_rate"])
        results.append(res)
    summary = {
        "checkpoint": str(getattr(model, "checkpoint_path", ckpt_path)),
        "seed": seed,
        "instruments": chosen,
        "primer": str(loaded.path) if loaded else None,
        "primer_bars": loaded.bars if loaded else 0,
        "ignored_primer_instruments": loaded.ignored if loaded else [],
        "samples": [
            {"midi": r.midi.name, "notes": r.notes, "bars": r.bars, "seconds": r.seconds,
             "pitch_range": r.pitch_range, "qpm": r.qpm, "time_signature": r.time_signature}
            for r in results
        ],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "samples.json").write_text(json.dumps(summary, indent=1) + "\n")
    return results


def print_summary(results: list[SampleResult], out_dir: str | Path) -> None:
    """The closing table: one row per sample."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"samples -> {out_dir}")
    for col in ("sample", "instruments", "notes", "bars", "pitch range", "seconds"):
        table.add_column(col, justify="left" if col in ("sample", "instruments") else "right")
    for r in results:
        span = f"{pitch_word(r.pitch_range[0])} to {pitch_word(r.pitch_range[1])}" if r.pitch_range else "-"
        counts = ", ".join(f"{t.name} ({len(t)})" for t in r.tracks)
        table.add_row(r.midi.name, counts, str(r.notes), str(r.bars), span, f"{r.seconds:.1f}")
    Console().print(table)


def compare_with_test_split(results: list[SampleResult], ckpt_path: str | Path, out_dir: str | Path) -> list[dict]:
    """``compare=true``: music statistics of the samples against the checkpoint's held-out
    test pieces. Prints the table, writes ``comparison.json`` and logs to wandb when a run
    is live (e.g. sampling from a notebook that started one)."""
    import sys

    from deeporb.evaluate import compare_samples, overlap_summary
    from deeporb.metrics import format_comparison

    rows = compare_samples(results, resolve_checkpoint(ckpt_path))
    plain = [{k: v for k, v in r.items() if not k.endswith("_hist")} for r in rows]
    summary = overlap_summary(rows)
    print(f"samples vs held-out test pieces (mean overlap: histograms {summary['histogram']:.3f}, "
          f"scalars {summary['scalar']:.3f})")
    print(format_comparison(rows))
    path = Path(out_dir) / "comparison.json"
    path.write_text(json.dumps({"summary": summary, "rows": plain}, indent=1, default=float) + "\n")
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.log({f"compare/{r['feature']}/{m}": r[m] for r in plain for m in ("overlap", "kl")}
                  | {f"compare/mean_overlap_{k}": v for k, v in summary.items()})
    return rows


__all__ = [
    "DecodeError",
    "compare_with_test_split",
    "Grammar",
    "GrammarState",
    "Primer",
    "SampleResult",
    "build_prompts",
    "generate",
    "load_generator",
    "load_primer",
    "print_summary",
    "resolve_checkpoint",
    "rows_to_tracks",
    "sample",
    "session_info",
]
