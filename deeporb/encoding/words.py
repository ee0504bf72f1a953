"""Notes <-> words: a human-readable, lossless-on-a-grid encoding with a closed-form vocabulary.

A track becomes a sequence of words (see docs/words.md):

    bar ts_4/4 pos_0 vel_5 C4 dur_12 E4 dur_12 pos_12 G4 dur_6 bar pos_0 ...

* ``bar`` opens every bar (empty bars too, so rests survive); ``ts_N/D`` follows it where
  the time signature starts or changes;
* ``pos_K`` is the onset step inside the bar, written for the first note of a bar and
  whenever the onset moves (notes sharing an onset form a chord);
* ``vel_K`` is the velocity bin, written only when it changes;
* a pitch word (``C#4``, MIDI 60 = ``C4``) is always followed by its ``dur_K``;
* ``rep_K`` (only in vocabularies with ``repeat_bars``): the bar repeats, note for note, the
  bar K back in the same meter, and stands instead of its notes. Real music returns to what it
  said 4 or 8 bars earlier (0.15 of the chorales' bars, 0.53 of the folk tunes'); one word
  lets the network say so, and see it, however far back the bar is in words.
* ``hole`` and ``fill`` (only in vocabularies with ``fills``, score view): a bar written
  ``bar hole`` holds only the parts that keep playing; after the last bar, ``fill inst_A ...``
  names the missing parts and one bar per hole gives their notes (:mod:`deeporb.encoding.fills`).
* ``final`` (only in vocabularies with ``final_bar``): ``bar [ts] final`` opens a whole piece's
  last bar; ``<eos>`` follows that bar. The network writes it where it means to end, then the
  bar that ends the piece, as the pieces it learned from end.

A training row frames it: ``<bos> [style_S] inst_KEY words <eos>`` (the tracks view; the
score view, :mod:`deeporb.encoding.score`, merges a piece's parts into one stream). What
may follow what is :mod:`deeporb.encoding.grammar`'s table, which decoding reads.

The vocabulary depends only on :class:`EncodingConfig` plus the session's instrument and
style keys and ``repeat_bars``, so the same config always yields the same ids. ``decode(encode(x)) ==
quantize(x)`` holds for every input: that is the property test in tests/test_words.py.

Encoding is vectorised with numpy (no per-note Python loop) because it runs over whole
corpora; decoding walks the grammar word by word and is used on single sequences.
One job, notes <-> words, hence one module of about 500 lines.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from deeporb.encoding.grammar import KINDS, STATE, Walk

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
BAR = "bar"
HOLE, FILL, FINAL = "hole", "fill", "final"
MAX_REPEAT_BARS = 64  # the farthest a rep_K word may point back
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
PITCH_WORD = re.compile(r"^([A-G]#?)(-?\d+)$")


def pitch_word(pitch: int) -> str:
    """MIDI pitch -> scientific name, MIDI 60 = C4."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def word_pitch(word: str) -> int:
    """Scientific name -> MIDI pitch; ValueError for anything else."""
    m = PITCH_WORD.match(word)
    if not m:
        raise ValueError(f"not a pitch word: {word!r}")
    return NOTE_NAMES.index(m.group(1)) + 12 * (int(m.group(2)) + 1)


@dataclass(frozen=True)
class EncodingConfig:
    """Everything that fixes the grid and the vocabulary.

    resolution: grid steps per quarter note (12 keeps 16ths and 8th-note triplets exact).
    velocity_bins: number of equal-width velocity bins over 0..127.
    max_bar_quarters: longest bar allowed (quarters); longer time signatures become 4/4.
    max_ts_numerator: largest time-signature numerator in the vocabulary.
    exact_duration_quarters: durations up to this many quarters keep every grid step;
        longer ones are rounded to whole quarters, up to max_duration_quarters (then clipped).

    How long a piece may be is not here: it fixes neither grid nor vocabulary, so it is the
    encode stage's setting (``EncodeConfig.max_piece_quarters``).
    """

    resolution: int = 12
    velocity_bins: int = 8
    max_bar_quarters: int = 8
    max_ts_numerator: int = 16
    exact_duration_quarters: int = 4
    max_duration_quarters: int = 16

    def __post_init__(self) -> None:
        if self.resolution < 1 or self.velocity_bins < 1 or self.velocity_bins > 128:
            raise ValueError(f"invalid encoding config: {self}")
        if self.max_duration_quarters < self.exact_duration_quarters:
            raise ValueError("max_duration_quarters must be >= exact_duration_quarters")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> EncodingConfig:
        """From :meth:`to_dict`; older manifests and checkpoints also carry the encode stage's
        ``max_piece_quarters`` here, which is dropped."""
        return cls(**{k: v for k, v in (d or {}).items() if k != "max_piece_quarters"})

    # -- time signatures -------------------------------------------------------------
    def bar_steps(self, numerator: int, denominator: int) -> int | None:
        """Grid steps in a bar of N/D, or None where N/D is not representable."""
        if numerator < 1 or numerator > self.max_ts_numerator or denominator < 1:
            return None
        total = 4 * self.resolution * numerator
        if total % denominator:
            return None
        steps = total // denominator
        return steps if steps <= self.max_bar_quarters * self.resolution else None

    @cached_property
    def time_signatures(self) -> tuple[tuple[int, int], ...]:
        return tuple(
            (n, d)
            for d in (1, 2, 4, 8, 16, 32, 64)
            for n in range(1, self.max_ts_numerator + 1)
            if self.bar_steps(n, d) is not None
        )

    # -- durations -------------------------------------------------------------------
    @cached_property
    def duration_steps(self) -> np.ndarray:
        """The representable durations in grid steps, ascending."""
        exact = np.arange(1, self.exact_duration_quarters * self.resolution + 1)
        coarse = np.arange(self.exact_duration_quarters + 1, self.max_duration_quarters + 1)
        return np.concatenate([exact, coarse * self.resolution]).astype(np.int64)

    def quantize_duration_steps(self, steps: np.ndarray) -> np.ndarray:
        """Grid steps -> nearest representable duration (>= 1 step, clipped at the max)."""
        steps = np.maximum(np.asarray(steps, dtype=np.int64), 1)
        exact_max = self.exact_duration_quarters * self.resolution
        coarse = np.floor(steps / self.resolution + 0.5).astype(np.int64) * self.resolution
        out = np.where(steps <= exact_max, steps, np.maximum(coarse, exact_max))
        # rounding a value just above exact_max down lands on exact_max itself: still valid
        return np.minimum(out, self.max_duration_quarters * self.resolution)

    # -- velocity --------------------------------------------------------------------
    def velocity_bin(self, velocity: np.ndarray) -> np.ndarray:
        v = np.clip(np.asarray(velocity, dtype=np.int64), 0, 127)
        return v * self.velocity_bins // 128

    def bin_velocity(self, bins: np.ndarray) -> np.ndarray:
        """Velocity bin -> representative MIDI velocity (bin centre, at least 1)."""
        width = 128 / self.velocity_bins
        rep = np.floor((np.asarray(bins) + 0.5) * width).astype(np.int64)
        return np.clip(rep, 1, 127)


@dataclass
class Vocabulary:
    """Word <-> id mapping, closed-form from the config, the instrument keys in score order and
    the sorted style keys.

    ``instruments`` is the score order: the score view writes the parts at each onset in it
    (and the header names them in it), so a part hears the parts before it at its own onset.
    The data module gives it top-down (:func:`deeporb.data.split.parts_top_down`: the highest part
    first, a melody before its accompaniment); the order given is kept (older checkpoints
    hold theirs, sorted by key).

    The words come in blocks, one per kind of :data:`deeporb.encoding.grammar.KINDS`, in that
    order: specials, ``bar``, ``ts_``, ``pos_``, ``vel_``, pitches, ``dur_``, ``inst_``, ``style_``,
    ``rep_``. ``kinds[id]`` and ``values[id]`` give each word's kind (index into KINDS) and value
    (see the grammar), ``blocks[kind]`` its (first id, end id).

    ``repeat_bars``: the farthest bar a ``rep_K`` word may point back to (0: no such words, the
    vocabulary of checkpoints made before them). A data setting, not an encoding one: the note
    files keep every note; the token cache folds repeated bars when it builds the rows. The
    ``rep_`` block comes after the others, so they keep their ids.

    ``fills``: whether the words ``hole`` and ``fill`` exist (training mixed fill examples in,
    ``data.fill_share``); they come last, so older vocabularies keep every id.

    ``final_bar``: whether the word ``final`` exists (``data.final_bar``): a whole piece's last
    bar is written ``bar [ts] final ...``, so the network knows, while it writes a bar, that the
    piece ends there, and learns how pieces end. It comes last of all.
    """

    config: EncodingConfig = field(default_factory=EncodingConfig)
    instruments: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    repeat_bars: int = 0
    fills: bool = False
    final_bar: bool = False

    def __post_init__(self) -> None:
        c = self.config
        self.instruments = tuple(dict.fromkeys(self.instruments))  # the score order, as given
        self.styles = tuple(sorted(set(self.styles)))
        self.repeat_bars = int(self.repeat_bars)
        self.fills = bool(self.fills)
        self.final_bar = bool(self.final_bar)
        if not 0 <= self.repeat_bars <= MAX_REPEAT_BARS:
            raise ValueError(f"repeat_bars must be from 0 to {MAX_REPEAT_BARS}, not {self.repeat_bars}")
        n_pos = c.max_bar_quarters * c.resolution
        blocks = {  # kind -> (words, values), in KINDS order
            "pad": ([PAD], [0]), "bos": ([BOS], [0]), "eos": ([EOS], [0]), "unk": ([UNK], [0]),
            "bar": ([BAR], [0]),
            "ts": ([f"ts_{n}/{d}" for n, d in c.time_signatures], [c.bar_steps(*ts) for ts in c.time_signatures]),
            "pos": ([f"pos_{k}" for k in range(n_pos)], range(n_pos)),
            "vel": ([f"vel_{k}" for k in range(c.velocity_bins)], range(c.velocity_bins)),
            "pitch": ([pitch_word(p) for p in range(128)], range(128)),
            "dur": ([f"dur_{int(s)}" for s in c.duration_steps], c.duration_steps),
            "inst": ([f"inst_{k}" for k in self.instruments], range(len(self.instruments))),
            "style": ([f"style_{k}" for k in self.styles], range(len(self.styles))),
            "rep": ([f"rep_{k}" for k in range(1, self.repeat_bars + 1)], range(1, self.repeat_bars + 1)),
            "hole": ([HOLE] if self.fills else [], [0] if self.fills else []),
            "fill": ([FILL] if self.fills else [], [0] if self.fills else []),
            "final": ([FINAL] if self.final_bar else [], [0] if self.final_bar else []),
        }
        assert tuple(blocks) == KINDS
        words: list[str] = []
        self.blocks: dict[str, tuple[int, int]] = {}
        for kind, (block, _) in blocks.items():
            self.blocks[kind] = (len(words), len(words) + len(block))
            words += block
        self.words = words
        self.kinds = np.repeat(np.arange(len(KINDS)), [len(b) for b, _ in blocks.values()])
        self.values = np.concatenate([np.asarray(list(v), dtype=np.int64) for _, v in blocks.values()])
        self.index: dict[str, int] = {w: i for i, w in enumerate(words)}
        # first ids of the blocks the vectorised encoder writes into
        self.pos0, self.vel0, self.pitch0, self.dur0, self.inst0 = (
            self.blocks[k][0] for k in ("pos", "vel", "pitch", "dur", "inst")
        )
        self.ts_ids = {ts: self.index[f"ts_{ts[0]}/{ts[1]}"] for ts in c.time_signatures}

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    @property
    def rep_ids(self) -> tuple[int, int]:
        """(first id, end id) of the ``rep_`` words (empty without ``repeat_bars``)."""
        return self.blocks["rep"]

    def id(self, word: str) -> int:
        return self.index.get(word, self.index[UNK])

    def ids(self, words: str | list[str]) -> np.ndarray:
        if isinstance(words, str):
            words = words.split()
        unk = self.index[UNK]
        get = self.index.get
        return np.fromiter((get(w, unk) for w in words), dtype=np.int64, count=len(words))

    def decode_ids(self, ids) -> list[str]:
        return [self.words[int(i)] for i in ids]

    def inst_id(self, key: str) -> int:
        word = f"inst_{key}"
        if word not in self.index:
            raise KeyError(
                f"unknown instrument {key!r}; this vocabulary knows: {', '.join(self.instruments)}"
            )
        return self.index[word]

    def style_id(self, key: str) -> int:
        word = f"style_{key}"
        if word not in self.index:
            known = ", ".join(self.styles) or "no styles"
            raise KeyError(f"unknown style {key!r}; this vocabulary knows: {known}")
        return self.index[word]

    def header_ids(self, instruments, style: str | None = None) -> np.ndarray:
        """``<bos> [style_S] inst_A inst_B ...``: a sequence's header (instruments once each, in score order)."""
        ids = [self.index[BOS]] + ([self.style_id(style)] if style is not None else [])
        ids += sorted({self.inst_id(k) for k in instruments})
        return np.asarray(ids, dtype=np.int64)

    @cached_property
    def kind_values(self) -> dict[str, tuple[str, int]]:
        """word -> (kind, value), made once: decoding looks every word up."""
        return {w: (KINDS[k], v) for w, k, v in zip(self.words, self.kinds.tolist(), self.values.tolist(), strict=True)}

    def kind_of(self) -> np.ndarray:
        """Array mapping id -> word kind (index into KINDS), for masks and metrics."""
        return self.kinds.copy()

    def to_dict(self) -> dict:
        d = {"config": self.config.to_dict(), "instruments": list(self.instruments)}
        if self.styles:  # written only when there are styles, so older vocabularies keep their dicts
            d["styles"] = list(self.styles)
        if self.repeat_bars:  # likewise
            d["repeat_bars"] = self.repeat_bars
        if self.fills:
            d["fills"] = True
        if self.final_bar:
            d["final_bar"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        return cls(EncodingConfig.from_dict(d["config"]), tuple(d["instruments"]), tuple(d.get("styles", ())),
                   int(d.get("repeat_bars", 0)), bool(d.get("fills", False)), bool(d.get("final_bar", False)))


def word_kind(word: str) -> str:
    """The kind (one of KINDS) of any well-formed word, in or out of a vocabulary."""
    if word in SPECIALS:
        return KINDS[SPECIALS.index(word)]
    if word in (BAR, HOLE, FILL, FINAL):
        return word
    prefix = word.split("_", 1)[0]
    if prefix in ("ts", "pos", "vel", "dur", "inst", "style", "rep"):
        return prefix
    if PITCH_WORD.match(word):
        return "pitch"
    raise ValueError(f"unknown word {word!r}")


# ---------------------------------------------------------------------------------------
# time signatures and bar lines


@dataclass
class Meter:
    """Time-signature changes on the grid, each starting on a bar line.

    ``starts`` are grid steps (ascending, first is 0), ``signatures`` the (N, D) in force.
    ``replaced`` counts input signatures we could not represent (they became 4/4) and
    ``moved`` those whose change did not fall on a bar line (moved to the next bar line).
    """

    starts: list[int]
    signatures: list[tuple[int, int]]
    replaced: int = 0
    moved: int = 0

    @classmethod
    def from_changes(
        cls, changes: list[tuple[float, int, int]], config: EncodingConfig
    ) -> Meter:
        """Build from (time in quarters, numerator, denominator) changes in any order."""
        starts, sigs, replaced, moved = [0], [(4, 4)], 0, 0
        for time, num, den in sorted(changes, key=lambda c: c[0]):
            sig = (int(num), int(den))
            if config.bar_steps(*sig) is None:
                replaced += 1
                sig = (4, 4)
            step = int(np.floor(time * config.resolution + 0.5))
            last_start, last_len = starts[-1], config.bar_steps(*sigs[-1])
            offset = max(step - last_start, 0)
            snapped = last_start + -(-offset // last_len) * last_len  # next bar line
            if snapped != step and sig != sigs[-1]:
                moved += 1  # a real change that had to wait for the next bar line
            if snapped == last_start:
                sigs[-1] = sig  # a change at the start of the current segment replaces it
                if len(sigs) > 1 and sigs[-1] == sigs[-2]:
                    starts.pop()
                    sigs.pop()
            elif sig != sigs[-1]:
                starts.append(snapped)
                sigs.append(sig)
        return cls(starts, sigs, replaced, moved)

    def bar_lines(self, end_step: int, config: EncodingConfig) -> tuple[np.ndarray, np.ndarray]:
        """Bar start steps covering [0, end_step], and the index of the signature of each."""
        lines, which = [], []
        for i, (start, sig) in enumerate(zip(self.starts, self.signatures, strict=True)):
            stop = self.starts[i + 1] if i + 1 < len(self.starts) else max(end_step + 1, start + 1)
            if stop <= start:
                continue
            seg = np.arange(start, stop, config.bar_steps(*sig), dtype=np.int64)
            lines.append(seg)
            which.append(np.full(len(seg), i, dtype=np.int64))
        return np.concatenate(lines), np.concatenate(which)

    def changes(self, config: EncodingConfig) -> list[tuple[float, int, int]]:
        return [(s / config.resolution, n, d) for s, (n, d) in zip(self.starts, self.signatures, strict=True)]

    def after(self, step: int) -> Meter:
        """The meter seen from grid step ``step`` (a bar line) on: the signature in force there
        starts it, later changes move back by ``step`` (a piece whose first bars were dropped,
        a sample whose primer bars were not kept)."""
        if not step:
            return self
        i = bisect.bisect_right(self.starts, step) - 1
        return Meter([0] + [s - step for s in self.starts[i + 1 :]], [self.signatures[i], *self.signatures[i + 1 :]])


# ---------------------------------------------------------------------------------------
# notes on the grid


GRID_COLUMNS = ("onset", "duration", "pitch", "velocity_bin")


@dataclass
class GridNotes:
    """Notes on the grid: onset and duration in steps, pitch, velocity bin; sorted."""

    onset: np.ndarray
    duration: np.ndarray
    pitch: np.ndarray
    velocity_bin: np.ndarray

    def __len__(self) -> int:
        return len(self.onset)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GridNotes) and all(
            np.array_equal(getattr(self, f), getattr(other, f))
            for f in GRID_COLUMNS
        )

    @classmethod
    def sorted(cls, onset, duration, pitch, velocity_bin) -> GridNotes:
        """Columns in any order -> grid notes in the canonical order (onset, pitch, duration, velocity)."""
        cols = [np.asarray(x, dtype=np.int64) for x in (onset, duration, pitch, velocity_bin)]
        order = np.lexsort((cols[3], cols[1], cols[2], cols[0]))
        return cls(*(c[order] for c in cols))

    @classmethod
    def concat(cls, grids: list[GridNotes]) -> GridNotes:
        """Several tracks' notes as one (e.g. the tracks of one instrument in a piece), sorted."""
        return cls.sorted(*(np.concatenate([getattr(g, c) for g in grids] or [np.zeros(0, np.int64)])
                            for c in GRID_COLUMNS))

    def to_quarters(self, config: EncodingConfig) -> dict[str, np.ndarray]:
        """Back to note columns in quarters with representative velocities."""
        return {
            "onset": self.onset / config.resolution,
            "duration": self.duration / config.resolution,
            "pitch": self.pitch.copy(),
            "velocity": config.bin_velocity(self.velocity_bin),
        }


def quantize(notes: dict, config: EncodingConfig) -> GridNotes:
    """Note columns (onset/duration in quarters, pitch, velocity) -> sorted grid notes.

    This is exactly what the words keep: onsets rounded to the grid (negative onsets to 0),
    durations rounded and bucketed (zero-length notes last one step), velocities binned.
    """
    onset = np.asarray(notes["onset"], dtype=np.float64)
    res = config.resolution
    on = np.maximum(np.floor(onset * res + 0.5).astype(np.int64), 0)
    dur_steps = np.floor(np.asarray(notes["duration"], dtype=np.float64) * res + 0.5)
    dur = config.quantize_duration_steps(dur_steps.astype(np.int64))
    pitch = np.clip(np.asarray(notes["pitch"], dtype=np.int64), 0, 127)
    vel = config.velocity_bin(notes["velocity"])
    order = np.lexsort((vel, dur, pitch, on))
    return GridNotes(on[order], dur[order], pitch[order], vel[order])


def encode_ids(
    grid: GridNotes, meter: Meter, vocab: Vocabulary, part: np.ndarray | None = None,
    holes=(), min_bars: int = 0, fill: bool = False, repeats: np.ndarray | None = None, final: bool = False,
) -> np.ndarray:
    """Grid notes -> body word ids (no header, no ``<eos>``). Vectorised: no per-note loop.

    ``part`` (score view) holds each note's ``inst_`` word id, the notes sorted by onset, then
    part, then pitch; an ``inst_`` word is then written after every ``pos_`` and where the
    part changes inside an onset.
    Without it (tracks view) no ``inst_`` word is written. With ``vocab.repeat_bars`` a bar
    equal to one at most that many bars back in its meter is written ``bar rep_K``
    (:func:`repeated_bars`), and the next note names its velocity.

    For fills (:mod:`deeporb.encoding.fills`): the bars in ``holes`` (indices) are written
    ``bar [ts] hole`` and never folded; at least ``min_bars`` bars are written (trailing empty
    ones too); ``fill`` writes a fill's bars: no ``ts_`` words, and ``rep_K`` only where
    ``repeats`` (per bar: K, or 0) says (a fill's bar repeating a bar of the piece, which the
    fill's own bars cannot show).

    ``final`` (with ``vocab.final_bar``): the words are a whole piece, so its last bar is
    written ``bar [ts] final ...``.
    """
    config = vocab.config
    n = len(grid)
    end = int(grid.onset[-1]) if n else 0
    lines, which = meter.bar_lines(max(end, min_bars * config.max_bar_quarters * config.resolution), config)
    nbars = int(np.searchsorted(lines, end, side="right")) if n else 0
    nbars = max(nbars, int(min_bars))
    lines, which = lines[:nbars], which[:nbars]
    ts_flag = np.zeros(nbars, dtype=np.int64)
    if nbars and not fill:
        ts_flag[0] = 1
        ts_flag[1:] = which[1:] != which[:-1]
    hole_flag = np.zeros(nbars, dtype=np.int64)
    hole_flag[np.asarray(holes, dtype=np.int64)] = 1

    bar = np.searchsorted(lines, grid.onset, side="right") - 1
    pos = grid.onset - lines[bar]
    back = np.zeros(nbars, dtype=np.int64)
    if fill and repeats is not None:
        back[: len(repeats)] = np.asarray(repeats, dtype=np.int64)[:nbars]
    elif vocab.repeat_bars and n and not fill:
        back = repeated_bars(bar, pos, grid, part, which, vocab.repeat_bars)
        back[hole_flag > 0] = 0
    if back.any():
        kept = back[bar] == 0
        grid, bar, pos = GridNotes(*(getattr(grid, c)[kept] for c in GRID_COLUMNS)), bar[kept], pos[kept]
        part = None if part is None else part[kept]
        n = len(grid)
    rep_flag = (back > 0).astype(np.int64)
    final_flag = np.zeros(nbars, dtype=np.int64)
    if final and vocab.final_bar and nbars:
        final_flag[-1] = 1
    header_len = 1 + ts_flag + final_flag + rep_flag + hole_flag

    first_in_bar = np.ones(n, dtype=bool)
    first_in_bar[1:] = bar[1:] != bar[:-1]
    pos_flag = first_in_bar.copy()
    pos_flag[1:] |= grid.onset[1:] != grid.onset[:-1]
    inst_flag = np.zeros(n, dtype=bool)
    if part is not None:
        inst_flag = pos_flag.copy()
        inst_flag[1:] |= part[1:] != part[:-1]
    vel_flag = np.ones(n, dtype=bool)
    vel_flag[1:] = grid.velocity_bin[1:] != grid.velocity_bin[:-1]
    if rep_flag.any():  # after a repeated bar the velocity is unknown (the grammar's rule)
        reps_so_far = np.cumsum(rep_flag)
        vel_flag[1:] |= reps_so_far[bar[1:]] != reps_so_far[bar[:-1]]
    note_len = 2 + pos_flag + inst_flag + vel_flag

    header_cum = np.cumsum(header_len)  # headers up to and including bar b
    note_start = np.concatenate([[0], np.cumsum(note_len)[:-1]]) + header_cum[bar] if n else bar
    bar_start = np.arange(nbars, dtype=np.int64)
    if nbars:
        notes_before_bar = np.searchsorted(bar, bar_start, side="left")
        tokens_before_notes = np.concatenate([[0], np.cumsum(note_len)])
        bar_start = tokens_before_notes[notes_before_bar] + header_cum - header_len
    total = int(header_len.sum() + note_len.sum())

    out = np.empty(total, dtype=np.int64)
    out[bar_start] = vocab.index[BAR]
    ts_bars = np.flatnonzero(ts_flag)
    sig_ids = np.array([vocab.ts_ids[s] for s in meter.signatures], dtype=np.int64)
    out[bar_start[ts_bars] + 1] = sig_ids[which[ts_bars]]
    if final_flag.any():
        out[bar_start[-1] + 1 + ts_flag[-1]] = vocab.index[FINAL]
    after_header = bar_start + 1 + ts_flag + final_flag  # where a bar's rep_K or hole stands
    rep_bars = np.flatnonzero(rep_flag)
    out[after_header[rep_bars]] = vocab.rep_ids[0] + back[rep_bars] - 1
    hole_bars = np.flatnonzero(hole_flag)
    if len(hole_bars):
        out[after_header[hole_bars]] = vocab.index[HOLE]
    cursor = note_start.copy()
    out[cursor[pos_flag]] = vocab.pos0 + pos[pos_flag]
    cursor += pos_flag
    if part is not None:
        out[cursor[inst_flag]] = part[inst_flag]
        cursor += inst_flag
    out[cursor[vel_flag]] = vocab.vel0 + grid.velocity_bin[vel_flag]
    cursor += vel_flag
    out[cursor] = vocab.pitch0 + grid.pitch
    dur_index = np.searchsorted(config.duration_steps, grid.duration)
    out[cursor + 1] = vocab.dur0 + dur_index
    return out


def repeated_bars(bar, pos, grid: GridNotes, part, which, most: int) -> np.ndarray:
    """For each bar, how many bars back (1..``most``) the nearest earlier bar with exactly its
    notes (onset in the bar, pitch, duration, velocity, part) is, in the same meter; 0 where
    there is none or the bar is empty. Equal meters make equal bar lengths, so a copy fits."""
    nbars = len(which)
    cols = [pos, grid.pitch, grid.duration, grid.velocity_bin, np.zeros_like(pos) if part is None else part]
    rows = np.ascontiguousarray(np.stack(cols, axis=1).astype(np.int64))
    bounds = np.searchsorted(bar, np.arange(nbars + 1))
    back = np.zeros(nbars, dtype=np.int64)
    last_seen: dict[bytes, int] = {}
    for b in range(nbars):
        lo, hi = bounds[b], bounds[b + 1]
        if hi == lo:
            continue
        key = rows[lo:hi].tobytes()
        seen = last_seen.get(key)
        if seen is not None and b - seen <= most and which[seen] == which[b]:
            back[b] = b - seen
        last_seen[key] = b
    return back


def note_counts(ids: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """How many notes each word of a row stands for: 1 per pitch word, the repeated bar's notes
    per ``rep_K``, else 0. ``bits_per_note`` divides by their sum, so a folded bar's notes
    still count. A ``rep_K`` pointing before the row's start (a window) counts 0; in a fill's
    bars it counts back from its hole."""
    ids = np.asarray(ids, dtype=np.int64)
    counts = ((ids >= vocab.pitch0) & (ids < vocab.pitch0 + 128)).astype(np.int64)
    first, end = vocab.rep_ids
    reps = np.flatnonzero((ids >= first) & (ids < end))
    if len(reps):
        bar_of = np.cumsum(ids == vocab.index[BAR])  # 0: before the first `bar` (a window's part-bar)
        fill = np.flatnonzero(ids == vocab.index.get(FILL, -1))
        holes = bar_of[ids == vocab.index.get(HOLE, -1)]
        if len(fill) and len(holes):  # a fill's bars are its holes' (a rep_K there counts back in the piece)
            nth = bar_of[fill[0]:] - bar_of[fill[0]]  # 1 from the fill's first bar on
            bar_of[fill[0] + np.flatnonzero(nth >= 1)] = holes[np.minimum(nth[nth >= 1], len(holes)) - 1]
        per_bar = np.bincount(bar_of[counts > 0], minlength=int(bar_of.max()) + 1)
        for i in reps:
            b, k = bar_of[i], int(ids[i]) - first + 1
            per_bar[b] = per_bar[b - k] if b - k >= 1 else 0
            counts[i] = per_bar[b]
    return counts


def encode(notes: dict, time_signatures, vocab: Vocabulary) -> tuple[str, Meter]:
    """Note columns + (time, N, D) changes -> (space-separated words, meter used): a note
    file's body (no ``final``: the session's vocabulary has none)."""
    meter = Meter.from_changes(list(time_signatures), vocab.config)
    ids = encode_ids(quantize(notes, vocab.config), meter, vocab)
    words = np.asarray(vocab.words, dtype=object)[ids]
    return " ".join(words.tolist()), meter


class DecodeError(ValueError):
    """Words that do not follow the grammar (a sampler bug or a hand-edited file)."""


# the Walk's state slots a note is read from, and the words decoding cannot read
BAR_START, POS, LAST_PITCH, VEL, PART, BARS = (
    STATE.index(f) for f in ("bar_start", "pos", "last_pitch", "vel", "part", "bars"))
UNKNOWN, UNREADABLE = (None, 0), frozenset((None, "pad", "unk"))


def read_words(
    words, vocab: Vocabulary, strict: bool, view: str
) -> tuple[dict[str, np.ndarray], Meter, np.ndarray]:
    """Walk words through the grammar (:class:`deeporb.encoding.grammar.Walk`), collecting notes.

    Returns note columns (onset, duration, pitch, velocity_bin, part: the instrument index or
    -1), the meter, and the header's ensemble (a bool per vocabulary instrument; with a fill,
    its parts too). Reading stops at ``<eos>``. With ``strict=False`` refused words are
    dropped instead of raising. A fill's bars are read into their holes, in order.
    """
    config = vocab.config
    if isinstance(words, str):
        words = words.split()
    walk = Walk(view, len(vocab.instruments), config.bar_steps(4, 4), vocab.final_bar)
    s, refusal, step = walk.state, walk.refusal, walk.step
    notes = []  # (onset, duration, pitch, velocity bin, part)
    bar_notes, bar_starts = [], []  # per bar so far: its first note's index in notes, its start step
    starts, sigs = [0], [(4, 4)]
    holes, shift, header = [], 0, None  # hole bars' starts; a fill bar's offset to its hole; the header's ensemble
    hole_bars, filled = [], []  # each hole's bar index; the notes each fill bar wrote (a range of notes)
    kind_value, unknown, unreadable = vocab.kind_values, UNKNOWN, UNREADABLE
    for i, w in enumerate(words):
        kind, value = kind_value.get(w, unknown)
        why = "unknown word" if kind in unreadable else refusal(kind, value)
        if why is not None:
            if strict:
                raise DecodeError(f"word {i} ({w!r}): {why}")
            if kind == "eos":
                break
            continue
        if kind == "eos":
            break
        if kind == "dur":
            notes.append((s[BAR_START] + s[POS] + shift, value, s[LAST_PITCH], s[VEL], s[PART]))
        elif kind == "rep":  # the bar `value` back, note for note (the grammar checked it exists)
            notes += repeated(notes, bar_notes, bar_starts, hole_bars, holes, filled, value, header is not None)
        elif kind == "hole":
            holes.append(s[BAR_START])
            hole_bars.append(len(bar_notes) - 1)
        elif kind == "fill":
            header = walk.ensemble.copy()
        step(kind, value)
        if kind == "bar" and header is not None:  # a fill's bar: its notes go to the next hole
            shift = holes[s[BARS] - 1] - s[BAR_START]
            if filled:
                filled[-1][1] = len(notes)
            filled.append([len(notes), None])
        elif kind == "bar":
            bar_notes.append(len(notes))
            bar_starts.append(s[BAR_START])
        if kind == "ts":
            sig = tuple(int(x) for x in w[3:].split("/"))
            if starts[-1] == s[BAR_START]:
                sigs[-1] = sig
            else:
                starts.append(s[BAR_START])
                sigs.append(sig)
    else:  # no <eos>: the words may end only where <eos> may stand
        why = walk.refusal("eos", 0)
        if strict and why is not None:
            raise DecodeError(f"word {len(words)} ('<end>'): the words may not end here ({why})")
    if filled and filled[-1][1] is None:
        filled[-1][1] = len(notes)
    table = np.asarray(notes, dtype=np.int64).reshape(-1, 5)
    ensemble = walk.ensemble if header is None else header | walk.ensemble
    return dict(zip((*GRID_COLUMNS, "part"), table.T, strict=True)), Meter(starts, sigs), ensemble


def repeated(notes, bar_notes, bar_starts, hole_bars, holes, filled, back: int, in_fill: bool) -> list[tuple]:
    """The notes of the bar ``back`` bars before the current one, moved to it (read_words'
    lists: each bar's first note, each bar's start, each hole's bar and start, each fill bar's
    notes). In a fill the current bar is its hole, and a bar back in the gap holds the notes
    the fill wrote there."""
    if not in_fill:
        source = len(bar_notes) - 1 - back
        offset = bar_starts[-1] - bar_starts[source]
        return [(o + offset, *rest) for o, *rest in notes[bar_notes[source] : bar_notes[source + 1]]]
    j = len(filled) - 1  # the fill bar being written, in hole j
    source = hole_bars[j] - back
    if source in hole_bars:  # a bar of the gap: what the fill wrote there (already at its hole)
        first, end = filled[hole_bars.index(source)]
        offset = holes[j] - holes[hole_bars.index(source)]
    else:
        first, end = bar_notes[source], bar_notes[source + 1]
        offset = holes[j] - bar_starts[source]
    return [(o + offset, *rest) for o, *rest in notes[first:end]]


def decode_words(words, vocab: Vocabulary, strict: bool = True) -> tuple[GridNotes, Meter]:
    """Tracks view: words (string or list) -> grid notes and meter. Inverse of :func:`encode`.

    Reads a bare body (a note file's words) or a framed row ``<bos> [style_S] inst_X body
    <eos>``; decoding stops at ``<eos>``. With ``strict=False`` ungrammatical words are
    dropped instead of raising (for samples from an unconstrained model).
    """
    cols, meter, _ = read_words(words, vocab, strict, "tracks")
    return GridNotes.sorted(*(cols[c] for c in GRID_COLUMNS)), meter
