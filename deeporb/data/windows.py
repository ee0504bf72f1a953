"""Windows into the token cache, and transposition (the only augmentation).

* **Windows.** A cache row is ``header body <eos>`` (see :mod:`deeporb.data.cache`); a window
  is the row's header followed by consecutive words of its body, ``seq_len + 1`` ids in all
  (padded at the end of a row), so every sequence says what it is: in the tracks view
  ``<bos> [style_S] inst_KEY``, in the score view the whole ensemble.
* **Training windows start at bar lines** (:func:`training_starts`), in both views, so the
  model learns to continue from any bar, as sampling asks it to: starts are laid every
  ``stride`` words, each moved back to the ``bar`` at or before it. Every word is still in
  some window, and the last window of a row reaches its ``<eos>``.
* **Evaluation windows tile each row** (:func:`tile_starts`): each word is scored once.
* **Fill examples** (training only, ``fill_share`` of the items, score view): the window's
  piece with a random gap, its contents written last (:mod:`deeporb.data.fill_examples`).
* **Transposition** (training only): all pitched parts of a window shift together by one
  random amount in ``±transpose`` semitones, narrowed so every pitch stays in 0..127; drum
  parts never move. A pitch belongs to the part of the last ``inst_`` word before it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from deeporb.data.cache import notes_path
from deeporb.data.fill_examples import PieceReader, fill_example
from deeporb.encoding.words import Vocabulary, note_counts

CHUNK_WORDS = 1 << 22  # words of the cache read at once while finding bar lines


def tile_starts(body_len: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, body offset) of windows tiling each row's body (width words each, the last
    padded): evaluation windows, every word in exactly one."""
    body_len, width = np.asarray(body_len, dtype=np.int64), np.asarray(width, dtype=np.int64)
    counts = np.maximum(-(-body_len // width), 1)
    row, k = _ranks(counts)
    return row, k * width[row]


def training_starts(
    tokens: np.ndarray,
    body_start: np.ndarray,
    body_len: np.ndarray,
    width: np.ndarray,
    stride: int,
    bar_id: int,
    onset_ids: tuple[int, int],
    chunk_words: int = CHUNK_WORDS,
) -> tuple[np.ndarray, np.ndarray]:
    """(row, body offset) of the training windows of rows whose bodies start at ``body_start``
    (ascending) in ``tokens`` (the memory-mapped cache), ``width[row]`` body words each.

    Starts are laid every ``stride`` words and each moved back to the ``bar`` at or before
    it; where that bar is more than ``width - stride`` words back (a bar longer than the
    windows' overlap), to the onset (``pos_`` word, ids in ``onset_ids``) at or before it,
    else not moved. Moving a start back at most that far keeps consecutive windows touching,
    so every word is in a window; a row's windows stop at the first one that reaches its end
    (padded). Rows are read ``chunk_words`` at a time: memory does not grow with the corpus.
    """
    body_start = np.asarray(body_start, dtype=np.int64)
    body_len = np.asarray(body_len, dtype=np.int64)
    width = np.asarray(width, dtype=np.int64)
    ends = body_start + body_len
    rows, offsets = [], []
    i = 0
    while i < len(body_start):
        j = max(int(np.searchsorted(ends, body_start[i] + chunk_words, side="right")), i + 1)
        lo, hi = int(body_start[i]), int(ends[j - 1])
        span = np.asarray(tokens[lo:hi])
        bars = np.flatnonzero(span == bar_id) + lo
        onsets = np.flatnonzero((span >= onset_ids[0]) & (span < onset_ids[1])) + lo
        r, off = _bar_starts(body_start[i:j], body_len[i:j], width[i:j], stride, bars, onsets)
        rows.append(r + i)
        offsets.append(off)
        i = j
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(offsets)


def _bar_starts(body_start, body_len, width, stride, bars, onsets) -> tuple[np.ndarray, np.ndarray]:
    """:func:`training_starts` on rows whose bar and onset positions (global) are given."""
    counts = np.maximum(-(-body_len // stride), 1)  # grid starts inside each body
    row, k = _ranks(counts)
    floor = body_start[row]
    target = floor + k * stride
    slack = np.maximum(width - stride, 0)[row]
    start = _back(target, floor, slack, onsets, target)
    start = _back(target, floor, slack, bars, start)
    # keep each row's windows up to the first that reaches the row's end
    reach = (start + width[row] >= floor + body_len[row]).astype(np.int64)
    before = np.cumsum(reach) - reach
    first = np.cumsum(counts) - counts
    keep = before - before[first][row] == 0
    start, row = start[keep], row[keep]
    start, index = np.unique(start, return_index=True)  # two starts moved to one bar
    row = row[index]
    return row, start - body_start[row]


def _back(target, floor, slack, marks, otherwise):
    """The mark (a position) at or before each target, where it is in the row and at most
    ``slack`` words back; else ``otherwise``."""
    if not len(marks):
        return otherwise
    i = np.searchsorted(marks, target, side="right") - 1
    mark = marks[np.maximum(i, 0)]
    ok = (i >= 0) & (mark >= floor) & (target - mark <= slack)
    return np.where(ok, mark, otherwise)


def _ranks(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts[r]`` items per row: each item's row and its rank inside the row."""
    row = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    return row, np.arange(len(row), dtype=np.int64) - first[row]


class WindowDataset(Dataset):
    """Windows (a row's header + ``seq_len + 1 - header`` body words) from the memory-mapped cache.

    Holds only the path of the token array and small per-row and per-window index arrays;
    the array is opened lazily in each process, so DataLoader workers share the page cache,
    not copies. ``row_*`` describe the cache rows (a track, or a whole piece), and window
    ``i`` is body offset ``window_offset[i]`` of row ``window_row[i]``. ``inst_ids`` is the
    vocabulary's ``inst_`` block (first id, end id), ``drum_ids`` the ``inst_`` ids of drum parts.
    An item is ``tokens`` and ``notes``: how many notes each word stands for (the cache's
    ``notes_path`` array, which ``bits_per_note`` divides by).
    """

    def __init__(
        self,
        tokens_path: Path,
        row_start: np.ndarray,
        row_length: np.ndarray,
        row_header: np.ndarray,
        window_row: np.ndarray,
        window_offset: np.ndarray,
        seq_len: int,
        pitch0: int,
        inst_ids: tuple[int, int],
        drum_ids: np.ndarray,
        pad_id: int = 0,
        transpose: int = 0,
        fill_share: float = 0.0,
        vocab: Vocabulary | None = None,
    ) -> None:
        self.tokens_path = Path(tokens_path)
        self.row_start = row_start
        self.row_length = row_length
        self.row_header = row_header
        self.window_row = window_row
        self.window_offset = window_offset
        self.seq_len = seq_len
        self.pitch0 = pitch0
        self.inst_ids = (int(inst_ids[0]), int(inst_ids[1]))
        self.drum_ids = np.asarray(drum_ids, dtype=np.int64)
        self.pad_id = pad_id
        self.transpose = int(transpose)
        self.fill_share = float(fill_share)
        self.vocab = vocab  # needed for fill examples
        self._reader: PieceReader | None = None
        self._tokens: np.ndarray | None = None
        self._notes: np.ndarray | None = None
        self._rng: np.random.Generator | None = None
        self._rng_pid: int | None = None

    def __len__(self) -> int:
        return len(self.window_row)

    def __getstate__(self) -> dict:
        # workers reopen the memmap (shared page cache) and seed their own generator
        return {**self.__dict__, "_tokens": None, "_notes": None, "_rng": None, "_rng_pid": None, "_reader": None}

    @property
    def tokens(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = np.load(self.tokens_path, mmap_mode="r")
        return self._tokens

    @property
    def notes(self) -> np.ndarray:
        if self._notes is None:
            self._notes = np.load(notes_path(self.tokens_path), mmap_mode="r")
        return self._notes

    def _generator(self) -> np.random.Generator:
        # seeded from torch so seed_everything and per-worker seeds apply
        if self._rng is None or self._rng_pid != os.getpid():
            self._rng = np.random.default_rng(torch.initial_seed() % 2**63)
            self._rng_pid = os.getpid()
        return self._rng

    def window(self, i: int, array: np.ndarray | None = None, pad: int | None = None) -> np.ndarray:
        """The i-th window as int64 ids, padded to ``seq_len + 1``, before augmentation (of
        ``array`` instead, e.g. the note counts, padded with ``pad``)."""
        array = self.tokens if array is None else array
        t = self.window_row[i]
        start, length, header = int(self.row_start[t]), int(self.row_length[t]), int(self.row_header[t])
        body = start + header + int(self.window_offset[i])
        n = min(self.seq_len + 1 - header, start + length - body)
        out = np.full(self.seq_len + 1, self.pad_id if pad is None else pad, dtype=np.int64)
        out[:header] = array[start : start + header]
        out[header : header + n] = array[body : body + n]
        return out

    def fill_window(self, i: int) -> tuple[np.ndarray, np.ndarray] | None:
        """A fill example from the i-th window's piece, padded to ``seq_len + 1``, and its note
        counts; None where no gap fits the window."""
        t = int(self.window_row[i])
        start, length = int(self.row_start[t]), int(self.row_length[t])
        if self._reader is None:
            self._reader = PieceReader(self.vocab)
        parts, meter, style = self._reader(t, np.asarray(self.tokens[start : start + length], dtype=np.int64))
        ids = fill_example(parts, meter, self.vocab, style, self.seq_len + 1, self._generator())
        if ids is None:
            return None
        out = np.full(self.seq_len + 1, self.pad_id, dtype=np.int64)
        out[: len(ids)] = ids
        notes = np.zeros(self.seq_len + 1, dtype=np.int64)
        notes[: len(ids)] = note_counts(ids, self.vocab)
        return out, notes

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        filled = self.fill_window(i) if self.fill_share and self._generator().random() < self.fill_share else None
        if filled is None:
            out, notes = self.window(i), self.window(i, self.notes, 0)
        else:
            out, notes = filled
        notes = torch.from_numpy(notes)
        if self.transpose:
            header = int(self.row_header[self.window_row[i]])
            movable = pitched_words(out, header, self.pitch0, self.inst_ids, self.drum_ids)
            shift_pitches(out, self.pitch0, self.transpose, self._generator(), movable)
        return {"tokens": torch.from_numpy(out), "notes": notes}


def pitched_words(ids: np.ndarray, header: int, pitch0: int, inst_ids: tuple[int, int], drum_ids: np.ndarray) -> np.ndarray:
    """Which words of a window are pitches of pitched (not drum) parts.

    A pitch belongs to the part of the last ``inst_`` word before it (vectorised: a running
    maximum over the positions of ``inst_`` words). A header naming one part (the tracks view)
    names the part of every pitch; a header naming several (an ensemble) names none, so a pitch
    with no ``inst_`` word before it in the body is of no known part and never moves. In the
    score view every onset names its part, so in a window that starts at a bar or an onset
    every pitch has its part.
    """
    lo, hi = inst_ids
    is_inst = (ids >= lo) & (ids < hi)
    if is_inst[:header].sum() > 1:
        is_inst[:header] = False
    last = np.maximum.accumulate(np.where(is_inst, np.arange(len(ids)), -1))
    part = np.where(last >= 0, ids[np.maximum(last, 0)], -1)
    is_pitch = (ids >= pitch0) & (ids < pitch0 + 128)
    return is_pitch & (last >= 0) & ~np.isin(part, drum_ids)


def shift_pitches(
    ids: np.ndarray, pitch0: int, transpose: int, rng: np.random.Generator, movable: np.ndarray | None = None
) -> int:
    """Shift the pitch words of ``ids`` that are ``movable`` (default: every pitch word) in
    place by one random amount in ±transpose, all kept within 0..127; returns the shift."""
    is_pitch = (ids >= pitch0) & (ids < pitch0 + 128) if movable is None else movable
    if not is_pitch.any():
        return 0
    pitches = ids[is_pitch] - pitch0
    low = max(-transpose, -int(pitches.min()))
    high = min(transpose, 127 - int(pitches.max()))
    shift = int(rng.integers(low, high + 1)) if high >= low else 0
    ids[is_pitch] += shift
    return shift
