"""Notes <-> words: a human-readable, lossless-on-a-grid encoding with a closed-form vocabulary.

A track becomes a sequence of words (see docs/words.md):

    bar ts_4/4 pos_0 vel_5 C4 dur_12 E4 dur_12 pos_12 G4 dur_6 bar pos_0 ...

* ``bar`` opens every bar (empty bars too, so rests survive); ``ts_N/D`` follows it where
  the time signature starts or changes;
* ``pos_K`` is the onset step inside the bar, written for the first note of a bar and
  whenever the onset moves (notes sharing an onset form a chord);
* ``vel_K`` is the velocity bin, written only when it changes;
* a pitch word (``C#4``, MIDI 60 = ``C4``) is always followed by its ``dur_K``.

The vocabulary depends only on :class:`EncodingConfig` plus the session's instrument keys,
so the same config always yields the same ids. ``decode(encode(x)) == quantize(x)`` holds
for every input: that is the property test in tests/test_words.py.

Encoding is vectorised with numpy (no per-note Python loop) because it runs over whole
corpora; decoding is a small state machine and is only used on single tracks.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
BAR = "bar"
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
        return cls(**(d or {}))

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
    """Word <-> id mapping, closed-form from the config plus sorted instrument keys."""

    config: EncodingConfig = field(default_factory=EncodingConfig)
    instruments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        c = self.config
        self.instruments = tuple(sorted(set(self.instruments)))
        words = list(SPECIALS) + [BAR]
        words += [f"ts_{n}/{d}" for n, d in c.time_signatures]
        words += [f"pos_{k}" for k in range(c.max_bar_quarters * c.resolution)]
        words += [f"vel_{k}" for k in range(c.velocity_bins)]
        words += [pitch_word(p) for p in range(128)]
        words += [f"dur_{int(s)}" for s in c.duration_steps]
        words += [f"inst_{k}" for k in self.instruments]
        self.words: list[str] = words
        self.index: dict[str, int] = {w: i for i, w in enumerate(words)}
        # first ids of each block, used by the vectorised encoder and the sampler's grammar
        self.pos0 = self.index["pos_0"]
        self.vel0 = self.index["vel_0"]
        self.pitch0 = self.index[pitch_word(0)]
        self.dur0 = self.index[f"dur_{int(c.duration_steps[0])}"]
        self.ts_ids = {ts: self.index[f"ts_{ts[0]}/{ts[1]}"] for ts in c.time_signatures}
        self._dur_index = {int(s): i for i, s in enumerate(c.duration_steps)}

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

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

    def kind_of(self) -> np.ndarray:
        """Array mapping id -> word kind (see WORD_KINDS), for masks and metrics."""
        kinds = np.empty(len(self.words), dtype=np.int64)
        for i, w in enumerate(self.words):
            kinds[i] = WORD_KINDS.index(word_kind(w))
        return kinds

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "instruments": list(self.instruments)}

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        return cls(EncodingConfig.from_dict(d["config"]), tuple(d["instruments"]))


WORD_KINDS = ("special", "bar", "ts", "pos", "vel", "pitch", "dur", "inst")


def word_kind(word: str) -> str:
    if word in SPECIALS:
        return "special"
    if word == BAR:
        return "bar"
    prefix = word.split("_", 1)[0]
    if prefix in ("ts", "pos", "vel", "dur", "inst"):
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


# ---------------------------------------------------------------------------------------
# notes on the grid


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
            for f in ("onset", "duration", "pitch", "velocity_bin")
        )

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


def encode_ids(grid: GridNotes, meter: Meter, vocab: Vocabulary) -> np.ndarray:
    """Grid notes -> word ids (no <bos>/<eos>/instrument). Vectorised: no per-note loop."""
    config = vocab.config
    n = len(grid)
    end = int(grid.onset[-1]) if n else 0
    lines, which = meter.bar_lines(end, config)
    if n:
        nbars = int(np.searchsorted(lines, end, side="right"))
    else:
        nbars = 0
    lines, which = lines[:nbars], which[:nbars]
    ts_flag = np.zeros(nbars, dtype=np.int64)
    if nbars:
        ts_flag[0] = 1
        ts_flag[1:] = which[1:] != which[:-1]
    header_len = 1 + ts_flag

    bar = np.searchsorted(lines, grid.onset, side="right") - 1
    pos = grid.onset - lines[bar]
    first_in_bar = np.ones(n, dtype=bool)
    first_in_bar[1:] = bar[1:] != bar[:-1]
    pos_flag = first_in_bar.copy()
    pos_flag[1:] |= grid.onset[1:] != grid.onset[:-1]
    vel_flag = np.ones(n, dtype=bool)
    vel_flag[1:] = grid.velocity_bin[1:] != grid.velocity_bin[:-1]
    note_len = 2 + pos_flag + vel_flag

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
    cursor = note_start.copy()
    out[cursor[pos_flag]] = vocab.pos0 + pos[pos_flag]
    cursor += pos_flag
    out[cursor[vel_flag]] = vocab.vel0 + grid.velocity_bin[vel_flag]
    cursor += vel_flag
    out[cursor] = vocab.pitch0 + grid.pitch
    dur_index = np.searchsorted(config.duration_steps, grid.duration)
    out[cursor + 1] = vocab.dur0 + dur_index
    return out


def encode(notes: dict, time_signatures, vocab: Vocabulary) -> tuple[str, Meter]:
    """Note columns + (time, N, D) changes -> (space-separated words, meter used)."""
    meter = Meter.from_changes(list(time_signatures), vocab.config)
    ids = encode_ids(quantize(notes, vocab.config), meter, vocab)
    words = np.asarray(vocab.words, dtype=object)[ids]
    return " ".join(words.tolist()), meter


class DecodeError(ValueError):
    """Words that do not follow the grammar (a sampler bug or a hand-edited file)."""


def decode_words(words, vocab: Vocabulary, strict: bool = True) -> tuple[GridNotes, Meter]:
    """Words (string or list) -> grid notes and meter. Inverse of :func:`encode`.

    Specials and instrument words are ignored; decoding stops at ``<eos>``. With
    ``strict=False`` ungrammatical words are dropped instead of raising (for samples
    from an unconstrained model).
    """
    config = vocab.config
    if isinstance(words, str):
        words = words.split()
    onsets, durs, pitches, vels = [], [], [], []
    starts, sigs = [0], [(4, 4)]
    bar_start, bar_len, onset, vel = None, config.bar_steps(4, 4), None, config.velocity_bins // 2
    pending_pitch = None

    def fail(i: int, w: str, msg: str) -> None:
        if strict:
            raise DecodeError(f"word {i} ({w!r}): {msg}")

    for i, w in enumerate(words):
        if w == EOS:
            break
        if w in SPECIALS or w.startswith("inst_"):
            continue
        if pending_pitch is not None and not w.startswith("dur_"):
            fail(i, w, "a pitch must be followed by its duration")
            pending_pitch = None
        if w == BAR:
            bar_start = 0 if bar_start is None else bar_start + bar_len
            onset = None
        elif w.startswith("ts_"):
            if bar_start is None or onset is not None:
                fail(i, w, "a time signature must follow 'bar'")
                continue
            n, d = (int(x) for x in w[3:].split("/"))
            steps = config.bar_steps(n, d)
            if steps is None:
                fail(i, w, "time signature outside the vocabulary")
                continue
            bar_len = steps
            if starts[-1] == bar_start:
                sigs[-1] = (n, d)
            else:
                starts.append(bar_start)
                sigs.append((n, d))
        elif w.startswith("pos_"):
            k = int(w[4:])
            if bar_start is None or k >= bar_len or (onset is not None and bar_start + k <= onset):
                fail(i, w, "position outside the bar or not moving forward")
                continue
            onset = bar_start + k
        elif w.startswith("vel_"):
            vel = int(w[4:])
        elif w.startswith("dur_"):
            if pending_pitch is None:
                fail(i, w, "a duration must follow a pitch")
                continue
            onsets.append(onset)
            durs.append(int(w[4:]))
            pitches.append(pending_pitch)
            vels.append(vel)
            pending_pitch = None
        else:
            try:
                p = word_pitch(w)
            except ValueError:
                fail(i, w, "unknown word")
                continue
            if onset is None:
                fail(i, w, "a pitch needs a position first")
                continue
            pending_pitch = p
    if pending_pitch is not None:
        i, w = len(words), "<end>"
        fail(i, w, "the last pitch has no duration")
    arr = [np.asarray(x, dtype=np.int64) for x in (onsets, durs, pitches, vels)]
    order = np.lexsort((arr[3], arr[1], arr[2], arr[0]))
    grid = GridNotes(*(a[order] for a in arr))
    return grid, Meter(starts, sigs)
