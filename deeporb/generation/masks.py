"""The grammar as vectorised masks over a batch of rows being generated."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deeporb.encoding.words import BAR, EOS, PAD, WORD_KINDS, Vocabulary, pitch_word

SPECIAL, KBAR, KTS, KPOS, KVEL, KPITCH, KDUR, KINST = range(len(WORD_KINDS))
assert WORD_KINDS == ("special", "bar", "ts", "pos", "vel", "pitch", "dur", "inst")
MAX_BAR_WORDS = 512  # words one generated bar may hold before only `bar` is allowed


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
