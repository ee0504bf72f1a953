"""Training data from session corpora: split by piece, token cache, windows, augmentation.

* **Split by piece.** :func:`split_of` hashes a piece id (the ``source`` path the note file
  came from), so every run, sweep and evaluation sees the same split, and every track of a
  piece lands in the same split. The test split is carved first, so changing the validation
  fraction never moves a test piece.
* **Token cache.** Each session's note files are turned into word ids once and kept as
  ``SESSION/cache/tokens-KEY.npy`` (uint16/uint32) plus ``index-KEY.json`` (one row per track).
  KEY hashes everything the ids depend on: the vocabulary, the instrument selection, and
  each note file's path, size and modification time, so editing, adding or deleting a note
  file by hand rebuilds it. The array is memory-mapped; windows are (track, offset) pairs
  that index into it, so memory stays flat as the corpus grows.
* **Windows.** A track is ``<bos> inst_KEY w1 ... wn <eos>``; a window is ``<bos> inst_KEY``
  followed by ``seq_len - 1`` consecutive words of the body, so every sequence says which
  instrument it is and one network learns them all. Windows overlap by ``seq_len - stride``;
  validation and test windows do not overlap, so each word is scored once.
* **Transposition** (training only, never drums): a random shift in ``±transpose`` semitones,
  narrowed per window so that every pitch stays in 0..127.

The truth on disk is the instrument folders (a user may move or delete note files by hand);
the manifest supplies the encoding config and the source of each known file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from deeporb.encoding.words import BOS, EOS, PAD, UNK, EncodingConfig, Vocabulary
from deeporb.errors import UserError
from deeporb.instruments import safe_key
from deeporb.session_store import CACHE_DIR, MANIFEST, list_sessions, load_manifest, scan_note_files

SPLITS = ("train", "val", "test")
CACHE_FORMAT = 1
ENCODE_HINT = "python encode.py dataset=bach_chorales  (or: python encode.py midi_dir=DIR session=NAME)"


# ---------------------------------------------------------------------------------------
# the split


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UserError(
            f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} must be in "
            "[0, 1) and sum to less than 1"
        )


def split_of(piece_id: str, val_fraction: float = 0.1, test_fraction: float = 0.1) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a piece, from a hash of its id alone.

    Pure and stable across runs, machines and Python versions (SHA-256, not ``hash()``).
    The hash is read as a number u in [0, 1): u < test_fraction is test, the next
    val_fraction is val, the rest is train.
    """
    u = int.from_bytes(hashlib.sha256(piece_id.encode()).digest()[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


@dataclass(frozen=True)
class NoteFileRef:
    """One note file on disk: the instrument is its folder, the piece is its source."""

    session: str
    instrument: str
    path: Path
    piece: str

    @property
    def rel(self) -> str:
        return f"{self.instrument}/{self.path.name}"


def session_instruments(session_dir: Path) -> list[str]:
    """Instrument keys that have at least one note file in the session."""
    return sorted({p.parent.name for p in scan_note_files(session_dir)})


def _read_note_file(path: Path) -> dict:
    try:
        record = json.loads(Path(path).read_text())
        record["words"]  # noqa: B018 - a note file without words is not one
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read note file {path}: {e}; fix or delete it, or re-run encode.py") from None
    return record


def note_file_refs(session_dir: Path, instruments: Iterable[str] | None = None) -> list[NoteFileRef]:
    """Every note file with its piece id; the manifest names known files, others are read."""
    session_dir = Path(session_dir)
    manifest = load_manifest(session_dir)
    source_of = {f: p["source"] for p in manifest.get("pieces", []) for f in p["files"]}
    refs = []
    for path in scan_note_files(session_dir, instruments):
        rel = f"{path.parent.name}/{path.name}"
        piece = source_of.get(rel) or _read_note_file(path).get("source", rel)
        refs.append(NoteFileRef(session_dir.name, path.parent.name, path, piece))
    return refs


def split_pieces(
    session_dir: str | Path,
    split: str,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    instruments: Iterable[str] | None = None,
) -> dict[str, list[Path]]:
    """{piece id: [note files]} of one split of a session (for evaluation and comparisons)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    check_fractions(val_fraction, test_fraction)
    pieces: dict[str, list[Path]] = {}
    for ref in note_file_refs(Path(session_dir), instruments):
        if split_of(ref.piece, val_fraction, test_fraction) == split:
            pieces.setdefault(ref.piece, []).append(ref.path)
    return pieces


def split_note_files(
    session_dir: str | Path,
    split: str,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    instruments: Iterable[str] | None = None,
) -> list[Path]:
    """The note files of one split of a session, sorted."""
    pieces = split_pieces(session_dir, split, val_fraction, test_fraction, instruments)
    return sorted(p for files in pieces.values() for p in files)


def checkpoint_split_files(session: dict, split: str = "test") -> list[Path]:
    """The note files of a split as a checkpoint's ``session`` dict describes its training data."""
    files: list[Path] = []
    for name in session["names"]:
        files += split_note_files(
            Path(session["sessions_dir"]) / name,
            split,
            session["val_fraction"],
            session["test_fraction"],
            session.get("instruments_filter"),
        )
    return files


# ---------------------------------------------------------------------------------------
# the token cache


def _token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)


def cache_key(session_dir: Path, files: Sequence[Path], vocab: Vocabulary) -> str:
    """Hash of everything the cached ids depend on (stat, not contents: cheap at start-up)."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": CACHE_FORMAT, "vocab": vocab.to_dict()}, sort_keys=True).encode())
    for f in files:
        st = f.stat()
        h.update(f"\n{f.parent.name}/{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def build_cache(session_dir: Path, refs: Sequence[NoteFileRef], vocab: Vocabulary, key: str) -> None:
    """Write ``tokens-KEY.npy`` and ``index-KEY.json``, streaming: memory does not grow with the corpus."""
    cache = Path(session_dir) / CACHE_DIR
    cache.mkdir(parents=True, exist_ok=True)
    dtype = _token_dtype(len(vocab))
    suffix = f".tmp-{os.getpid()}"
    raw_path = cache / f"tokens-{key}.raw{suffix}"
    npy_path, index_path = cache / f"tokens-{key}.npy", cache / f"index-{key}.json"
    pitch0 = vocab.pitch0
    unk, bos, eos = vocab.index[UNK], vocab.index[BOS], vocab.index[EOS]
    tracks, offset, unknown = [], 0, 0
    try:
        with open(raw_path, "wb") as raw:
            for ref in refs:
                record = _read_note_file(ref.path)
                body = vocab.ids(record["words"])
                unknown += int((body == unk).sum())
                ids = np.concatenate([[bos, vocab.inst_id(ref.instrument)], body, [eos]]).astype(dtype)
                raw.write(ids.tobytes())
                tempos = record.get("tempos") or [[0.0, 120.0]]
                tracks.append(
                    {
                        "file": ref.rel,
                        "instrument": ref.instrument,
                        "piece": ref.piece,
                        "program": int(record.get("program", 0)),
                        "is_drum": bool(record.get("is_drum", False)),
                        "start": offset,
                        "length": len(ids),
                        "notes": int(((body >= pitch0) & (body < pitch0 + 128)).sum()),
                        "qpm": float(tempos[0][1]),
                        "meter": [f"{n}/{d}" for _, n, d in record.get("meter", [])],
                    }
                )
                offset += len(ids)
        tmp_npy = cache / f"tokens-{key}.npy{suffix}"
        with open(tmp_npy, "wb") as out, open(raw_path, "rb") as raw:
            np.lib.format.write_array_header_1_0(
                out, {"descr": dtype.str, "fortran_order": False, "shape": (offset,)}
            )
            while chunk := raw.read(1 << 22):
                out.write(chunk)
        os.replace(tmp_npy, npy_path)
        tmp_index = cache / f"index-{key}.json{suffix}"
        tmp_index.write_text(json.dumps({"key": key, "unknown_words": unknown, "tracks": tracks}))
        os.replace(tmp_index, index_path)
    finally:
        for leftover in cache.glob(f"*{suffix}"):
            leftover.unlink(missing_ok=True)


def load_cache(session_dir: Path, refs: Sequence[NoteFileRef], vocab: Vocabulary) -> tuple[Path, dict]:
    """(path of the token array, index), building the cache when its key is new."""
    key = cache_key(session_dir, [r.path for r in refs], vocab)
    cache = Path(session_dir) / CACHE_DIR
    npy_path, index_path = cache / f"tokens-{key}.npy", cache / f"index-{key}.json"
    if not (npy_path.is_file() and index_path.is_file()):
        build_cache(session_dir, refs, vocab, key)
    index = json.loads(index_path.read_text())
    if index["unknown_words"]:
        print(
            f"warning: {index['unknown_words']} word(s) in {session_dir} are not in the vocabulary "
            "and were read as <unk>"
        )
    return npy_path, index


# ---------------------------------------------------------------------------------------
# windows


def window_starts(body_len: int, width: int, stride: int, full_tail: bool = True) -> np.ndarray:
    """Offsets into a track body of windows of ``width`` words every ``stride``.

    ``full_tail``: the last window ends at the body's end (training: a full window, overlapping
    the previous one). Otherwise the tail is a shorter, padded window, so that with
    ``stride == width`` every word is in exactly one window (evaluation scores each word once).
    """
    if not full_tail:
        return np.arange(0, max(body_len, 1), stride, dtype=np.int64)
    last = max(body_len - width, 0)
    starts = np.arange(0, last + 1, stride, dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return starts


class WindowDataset(Dataset):
    """Windows ``<bos> inst_KEY`` + ``seq_len - 1`` words, read from the memory-mapped cache.

    Holds only the path of the token array and small per-window index arrays; the array is
    opened lazily in each process, so DataLoader workers share the page cache, not copies.
    """

    def __init__(
        self,
        tokens_path: Path,
        track_start: np.ndarray,
        track_length: np.ndarray,
        transposable: np.ndarray,
        window_track: np.ndarray,
        window_offset: np.ndarray,
        seq_len: int,
        pitch0: int,
        pad_id: int = 0,
        transpose: int = 0,
    ) -> None:
        self.tokens_path = Path(tokens_path)
        self.track_start = track_start
        self.track_length = track_length
        self.transposable = transposable
        self.window_track = window_track
        self.window_offset = window_offset
        self.seq_len = seq_len
        self.pitch0 = pitch0
        self.pad_id = pad_id
        self.transpose = int(transpose)
        self._tokens: np.ndarray | None = None
        self._rng: np.random.Generator | None = None
        self._rng_pid: int | None = None

    def __len__(self) -> int:
        return len(self.window_track)

    def __getstate__(self) -> dict:
        # workers reopen the memmap (shared page cache) and seed their own generator
        return {**self.__dict__, "_tokens": None, "_rng": None, "_rng_pid": None}

    @property
    def tokens(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = np.load(self.tokens_path, mmap_mode="r")
        return self._tokens

    def _generator(self) -> np.random.Generator:
        # seeded from torch so seed_everything and per-worker seeds apply
        if self._rng is None or self._rng_pid != os.getpid():
            self._rng = np.random.default_rng(torch.initial_seed() % 2**63)
            self._rng_pid = os.getpid()
        return self._rng

    def window(self, i: int) -> np.ndarray:
        """The i-th window as int64 ids, padded to ``seq_len + 1``, before augmentation."""
        t = self.window_track[i]
        start, length = int(self.track_start[t]), int(self.track_length[t])
        body = start + 2 + int(self.window_offset[i])
        n = min(self.seq_len - 1, start + length - body)
        out = np.full(self.seq_len + 1, self.pad_id, dtype=np.int64)
        out[:2] = self.tokens[start : start + 2]
        out[2 : 2 + n] = self.tokens[body : body + n]
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        out = self.window(i)
        if self.transpose and self.transposable[self.window_track[i]]:
            shift_pitches(out, self.pitch0, self.transpose, self._generator())
        return {"tokens": torch.from_numpy(out)}


def shift_pitches(ids: np.ndarray, pitch0: int, transpose: int, rng: np.random.Generator) -> int:
    """Shift every pitch word in ``ids`` in place by one random amount in ±transpose, all
    pitches kept within 0..127; returns the shift."""
    is_pitch = (ids >= pitch0) & (ids < pitch0 + 128)
    if not is_pitch.any():
        return 0
    pitches = ids[is_pitch] - pitch0
    low = max(-transpose, -int(pitches.min()))
    high = min(transpose, 127 - int(pitches.max()))
    shift = int(rng.integers(low, high + 1)) if high >= low else 0
    ids[is_pitch] += shift
    return shift


# ---------------------------------------------------------------------------------------
# the DataModule


class SessionDataModule(pl.LightningDataModule):
    """One or more sessions as train/val/test windows of word ids.

    Args:
        session: a session name or a list of names under ``sessions_dir``.
        instruments: instrument keys to keep (None: all).
        seq_len: words per training sequence (inputs; the batch holds ``seq_len + 1``).
        stride: words between training windows (None: ``seq_len // 2``).
        transpose: random transposition range in semitones for training windows.
        val_fraction, test_fraction: split fractions, by piece (see :func:`split_of`).
        encode: keyword arguments for :func:`deeporb.stages.encode.encode_session` used to build
            a missing session (e.g. ``{"dataset": "bach_chorales"}``); None: a missing session
            is an error.
    """

    def __init__(
        self,
        session: str | Sequence[str] = "bach_chorales",
        sessions_dir: str = "data/sessions",
        instruments: Sequence[str] | None = None,
        seq_len: int = 256,
        stride: int | None = None,
        batch_size: int = 32,
        transpose: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        num_workers: int = 0,
        pin_memory: bool = False,
        encode: dict | None = None,
    ) -> None:
        super().__init__()
        names = [session] if isinstance(session, str) else list(session)
        if not names:
            raise UserError("data.session is empty; name at least one session")
        self.names = names
        self.sessions_dir = Path(sessions_dir)
        self.instruments_filter = sorted(set(instruments)) if instruments else None
        if seq_len < 2:
            raise UserError(f"data.seq_len must be at least 2, not {seq_len}")
        self.seq_len = int(seq_len)
        self.stride = int(stride) if stride else max(1, self.seq_len // 2)
        self.batch_size = int(batch_size)
        self.transpose = int(transpose)
        check_fractions(val_fraction, test_fraction)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.encode = dict(encode) if encode else None
        self._loaded = False

    # -- sessions ----------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Make sure every session exists (encoding a built-in one if configured) and is cached."""
        existing = set(list_sessions(self.sessions_dir))
        for name in self.names:
            if name in existing:
                continue
            if self._encodes(name):
                from deeporb.stages.encode import encode_session

                print(f"session {name!r} not found in {self.sessions_dir}: encoding it now")
                encode_session(**{**self.encode, "session": name, "sessions_dir": str(self.sessions_dir)})
                continue
            have = ", ".join(sorted(existing)) or "none"
            raise UserError(
                f"unknown session {name!r} in {self.sessions_dir} (existing: {have}); "
                f"make it with: {ENCODE_HINT.replace('NAME', name)}"
            )
        self.load()

    def _encodes(self, name: str) -> bool:
        """Whether the configured ``encode`` spec builds this session (not some other name)."""
        spec = self.encode or {}
        if spec.get("session"):
            return spec["session"] == name
        if spec.get("dataset"):
            return spec["dataset"] == name
        if spec.get("midi_dir"):
            return safe_key(Path(str(spec["midi_dir"])).expanduser().resolve().name) == name
        return False

    def load(self) -> None:
        """Read manifests, fix the vocabulary, build or open the caches, cut the windows."""
        if self._loaded:
            return
        for name in self.names:
            if not (self.sessions_dir / name / MANIFEST).is_file():
                self.prepare_data()  # raises the one-line error, or encodes
                return
        manifests = {name: load_manifest(self.sessions_dir / name) for name in self.names}
        configs = {name: m["encoding"] for name, m in manifests.items()}
        self.instrument_key_mode = manifests[self.names[0]].get("instrument_key", "program")
        first = configs[self.names[0]]
        for name, c in configs.items():
            if c != first:
                raise UserError(
                    f"sessions {self.names[0]!r} and {name!r} were encoded with different settings "
                    f"({first} vs {c}); re-encode them alike to train on both"
                )
        available = sorted({k for n in self.names for k in session_instruments(self.sessions_dir / n)})
        if self.instruments_filter is not None:
            unknown = [k for k in self.instruments_filter if k not in available]
            if unknown:
                raise UserError(
                    f"unknown instrument(s) {', '.join(unknown)} in session(s) {', '.join(self.names)}; "
                    f"available: {', '.join(available)}"
                )
        keys = self.instruments_filter or available
        if not keys:
            raise UserError(f"session(s) {', '.join(self.names)} hold no note files; re-run encode.py")
        self.vocab = Vocabulary(EncodingConfig.from_dict(first), tuple(keys))
        self.pad_id = self.vocab.index[PAD]

        self.tracks: list[dict] = []
        self.tokens_paths: list[Path] = []
        for si, name in enumerate(self.names):
            session_dir = self.sessions_dir / name
            refs = note_file_refs(session_dir, keys)
            path, index = load_cache(session_dir, refs, self.vocab)
            self.tokens_paths.append(path)
            for row in index["tracks"]:
                row = dict(row, session=name, array=si)
                row["split"] = split_of(row["piece"], self.val_fraction, self.test_fraction)
                self.tracks.append(row)
        self._check_split()
        self._loaded = True

    def _check_split(self) -> None:
        pieces = self.pieces_per_split()
        if not pieces["train"] or not pieces["val"] or (self.test_fraction > 0 and not pieces["test"]):
            total = sum(pieces.values())
            raise UserError(
                f"too few pieces to split: {total} piece(s) in {', '.join(self.names)} gave "
                f"train={pieces['train']}, val={pieces['val']}, test={pieces['test']} "
                f"(val_fraction={self.val_fraction}, test_fraction={self.test_fraction}); "
                "add pieces or change data.val_fraction / data.test_fraction"
            )

    def pieces_per_split(self) -> dict[str, int]:
        return {s: len({(t["session"], t["piece"]) for t in self.tracks if t["split"] == s}) for s in SPLITS}

    # -- datasets ----------------------------------------------------------------------
    def dataset(self, split: str) -> Dataset:
        """The windows of one split (a ConcatDataset over sessions when there are several)."""
        self.load()
        parts = []
        train = split == "train"
        for si, path in enumerate(self.tokens_paths):
            rows = [t for t in self.tracks if t["array"] == si and t["split"] == split]
            if not rows:
                continue
            start = np.array([t["start"] for t in rows], dtype=np.int64)
            length = np.array([t["length"] for t in rows], dtype=np.int64)
            transposable = np.array([not t["is_drum"] for t in rows], dtype=bool)
            offsets = [self._starts(n - 2, train) for n in length]
            window_track = np.repeat(np.arange(len(rows), dtype=np.int64), [len(o) for o in offsets])
            window_offset = np.concatenate(offsets)
            parts.append(
                WindowDataset(
                    path, start, length, transposable, window_track, window_offset,
                    self.seq_len, self.vocab.pitch0, self.pad_id, self.transpose if train else 0,
                )
            )
        if not parts:
            raise UserError(
                f"the {split} split of {', '.join(self.names)} is empty; "
                "add pieces or change data.val_fraction / data.test_fraction"
            )
        return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)

    def _starts(self, body_len: int, train: bool) -> np.ndarray:
        """Training windows overlap by ``seq_len - stride``; evaluation windows tile the track."""
        width = self.seq_len - 1
        return window_starts(body_len, width, self.stride, True) if train else window_starts(body_len, width, width, False)

    def setup(self, stage: str | None = None) -> None:
        self.load()

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # -- what the checkpoint and the logger keep ---------------------------------------
    def session_info(self) -> dict:
        """Facts sampling and evaluation need later, stored in the checkpoint (``session=``)."""
        self.load()
        first_track: dict[tuple[str, str], dict] = {}
        instruments: dict[str, dict] = {}
        for t in self.tracks:
            first_track.setdefault((t["session"], t["piece"]), t)
            info = instruments.setdefault(
                t["instrument"], {"programs": Counter(), "is_drum": t["is_drum"], "tracks": 0, "notes": 0}
            )
            info["programs"][t["program"]] += 1
            info["tracks"] += 1
            info["notes"] += t["notes"]
        for info in instruments.values():
            info["program"] = info.pop("programs").most_common(1)[0][0]
        meters: Counter = Counter()
        for t in first_track.values():
            meters.update(t["meter"])
        qpms = [t["qpm"] for t in first_track.values()]
        return {
            "names": list(self.names),
            "sessions_dir": str(self.sessions_dir.resolve()),
            "qpm_median": float(np.median(qpms)) if qpms else 120.0,
            "time_signatures": dict(meters.most_common()),
            "instruments": {k: instruments[k] for k in sorted(instruments)},
            "instrument_keys": list(self.vocab.instruments),
            "instrument_key": self.instrument_key_mode,
            "encoding": self.vocab.config.to_dict(),
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "instruments_filter": self.instruments_filter,
            "seq_len": self.seq_len,
            "pieces": self.pieces_per_split(),
        }

    def statistics(self) -> dict:
        """Pieces, tracks, words and notes per split, overall and per instrument (for logging)."""
        self.load()
        stats: dict = {}
        for split in SPLITS:
            rows = [t for t in self.tracks if t["split"] == split]
            per_inst: dict[str, dict] = {}
            for t in rows:
                s = per_inst.setdefault(t["instrument"], {"pieces": set(), "tracks": 0, "words": 0, "notes": 0})
                s["pieces"].add((t["session"], t["piece"]))
                s["tracks"] += 1
                s["words"] += t["length"] - 3
                s["notes"] += t["notes"]
            for s in per_inst.values():
                s["pieces"] = len(s["pieces"])
            stats[split] = {
                "pieces": len({(t["session"], t["piece"]) for t in rows}),
                "tracks": len(rows),
                "words": sum(t["length"] - 3 for t in rows),
                "notes": sum(t["notes"] for t in rows),
                "windows": int(sum(len(self._starts(t["length"] - 2, split == "train")) for t in rows)),
                "instruments": dict(sorted(per_inst.items())),
            }
        stats["vocab_size"] = len(self.vocab)
        return stats


def example_words(vocab: Vocabulary, ids: Iterable[int]) -> str:
    """Readable words for a window, padding dropped (for debugging and tests)."""
    return " ".join(vocab.words[int(i)] for i in ids if int(i) != vocab.index[PAD])


__all__ = [
    "SPLITS",
    "NoteFileRef",
    "SessionDataModule",
    "WindowDataset",
    "build_cache",
    "cache_key",
    "checkpoint_split_files",
    "example_words",
    "load_cache",
    "note_file_refs",
    "scan_note_files",
    "session_instruments",
    "shift_pitches",
    "split_note_files",
    "split_of",
    "split_pieces",
    "window_starts",
]
