"""Training on whole pieces with the LSTM state carried (``data.carry_state=true``).

Windows cut from the middle of a piece start from a fresh state, so the network never learns
what bar 40 of a piece is like, nor how long pieces last; sampling then runs the state through
the whole piece. Here a piece is read in order instead (truncated backpropagation through
time): each row is cut into consecutive chunks of ``seq_len`` words, chunk ``c`` holding words
``c*seq_len`` to ``(c+1)*seq_len`` (one word of overlap: the last target of a chunk is the
first input of the next), and :class:`LaneSampler` gives each of the batch's ``batch_size``
lanes one row after another, so the chunk a lane gets at step ``t + 1`` continues the one it got
at step ``t``. The model carries each lane's state from step to step and starts it afresh where
an item's ``first`` says a new row begins (:meth:`deeporb.model.LSTMGenerator.training_step`).

Transposition moves a whole row by one amount per epoch (every chunk of it alike), so the carried
state never hears a piece jump key. Validation and test windows are unchanged.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from deeporb.data.cache import notes_path
from deeporb.data.windows import pitched_words


class RowChunks(Dataset):
    """The chunks of rows (``row_start``/``row_length``/``row_header`` per row, in the token array
    ``row_array`` of ``tokens_paths``), ``seq_len + 1`` ids each, padded at a row's end.

    An index ``epoch * len(self) + i`` names chunk ``i`` in that epoch (the epoch picks the
    rows' transpositions); items are ``tokens``, ``notes`` and ``first`` (a new row begins)."""

    def __init__(self, tokens_paths: list[Path], row_array: np.ndarray, row_start: np.ndarray,
                 row_length: np.ndarray, row_header: np.ndarray, seq_len: int, pitch0: int,
                 inst_ids: tuple[int, int], drum_ids: np.ndarray, pad_id: int = 0, transpose: int = 0,
                 seed: int = 0) -> None:
        self.tokens_paths = [Path(p) for p in tokens_paths]
        self.row_array, self.row_start = np.asarray(row_array), np.asarray(row_start)
        self.row_length, self.row_header = np.asarray(row_length), np.asarray(row_header)
        self.seq_len, self.pitch0, self.pad_id = int(seq_len), pitch0, pad_id
        self.inst_ids, self.drum_ids = (int(inst_ids[0]), int(inst_ids[1])), np.asarray(drum_ids, dtype=np.int64)
        self.transpose, self.seed = int(transpose), int(seed)
        # a row of n ids holds ceil((n - 1) / seq_len) chunks (each predicts seq_len of its ids)
        self.chunks = np.maximum(-(-(self.row_length - 1) // self.seq_len), 1)
        self.chunk_row = np.repeat(np.arange(len(self.chunks)), self.chunks)
        self.chunk_index = np.arange(len(self.chunk_row)) - np.repeat(np.cumsum(self.chunks) - self.chunks, self.chunks)
        self._arrays: dict[tuple[int, int, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.chunk_row)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": {}}  # workers reopen the memmaps

    def _array(self, which: int, kind: str) -> np.ndarray:
        key = (os.getpid(), which, kind)
        if key not in self._arrays:
            path = self.tokens_paths[which]
            self._arrays[key] = np.load(path if kind == "tokens" else notes_path(path), mmap_mode="r")
        return self._arrays[key]

    def row(self, r: int, kind: str = "tokens", begin: int = 0, end: int | None = None) -> np.ndarray:
        """Words ``begin:end`` of row ``r`` (the whole row by default), read from the cache."""
        start, length = int(self.row_start[r]), int(self.row_length[r])
        stop = start + (length if end is None else min(end, length))
        return np.asarray(self._array(int(self.row_array[r]), kind)[start + begin : stop], dtype=np.int64)

    def shift(self, r: int, epoch: int) -> tuple[int, np.ndarray | None]:
        """This epoch's transposition of row ``r`` (one amount for all its chunks) and the row's
        movable words (pitches of pitched parts), or (0, None)."""
        if not self.transpose:
            return 0, None
        ids = self.row(r)
        movable = pitched_words(ids, int(self.row_header[r]), self.pitch0, self.inst_ids, self.drum_ids)
        if not movable.any():
            return 0, None
        pitches = ids[movable] - self.pitch0
        low, high = max(-self.transpose, -int(pitches.min())), min(self.transpose, 127 - int(pitches.max()))
        rng = np.random.default_rng([self.seed, epoch, r])
        return (int(rng.integers(low, high + 1)) if high >= low else 0), movable

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        epoch, i = divmod(int(index), len(self))
        r, c = int(self.chunk_row[i]), int(self.chunk_index[i])
        lo, width = c * self.seq_len, self.seq_len + 1
        tokens = np.full(width, self.pad_id, dtype=np.int64)
        notes = np.zeros(width, dtype=np.int64)
        ids = self.row(r, begin=lo, end=lo + width)
        tokens[: len(ids)], notes[: len(ids)] = ids, self.row(r, "notes", begin=lo, end=lo + width)
        amount, movable = self.shift(r, epoch)
        if amount:
            tokens[: len(ids)][movable[lo : lo + len(ids)]] += amount
        return {"tokens": torch.from_numpy(tokens), "notes": torch.from_numpy(notes),
                "first": torch.tensor(c == 0)}


class LaneSampler(Sampler):
    """Batches of ``lanes`` chunks of :class:`RowChunks`, lane ``k`` of every batch continuing
    lane ``k`` of the batch before: a lane whose row has ended takes the next row of a shuffled
    queue (a new order each epoch). An epoch is ``len(chunks) // lanes`` batches, every lane
    starting a new row; rows still in progress at its end are left there."""

    def __init__(self, chunks: RowChunks, lanes: int, seed: int = 0) -> None:
        self.data, self.lanes, self.seed, self.epoch = chunks, int(lanes), int(seed), 0
        self.first = np.cumsum(chunks.chunks) - chunks.chunks

    def __len__(self) -> int:
        return max(len(self.data) // self.lanes, 1)

    def _rows(self, epoch: int):
        rng = np.random.default_rng([self.seed, epoch])
        while True:
            yield from rng.permutation(len(self.data.chunks)).tolist()

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        rows, offset = self._rows(epoch), epoch * len(self.data)
        lanes: list[deque] = [deque() for _ in range(self.lanes)]
        for _ in range(len(self)):
            for lane in lanes:
                if not lane:
                    r = next(rows)
                    lane.extend(range(int(self.first[r]), int(self.first[r] + self.data.chunks[r])))
            yield [offset + lane.popleft() for lane in lanes]
