"""The DataModule: one or more sessions as train/val/test windows of word ids.

It wires the pieces of :mod:`deeporb.data` together: the split by piece
(:mod:`~deeporb.data.split`), the memory-mapped token cache in one of two views
(:mod:`~deeporb.data.cache`: a row per track, or a row per piece), and windows with
transposition (:mod:`~deeporb.data.windows`). Several sessions share one vocabulary (they
must be encoded alike) and each adds its style word after ``<bos>``; a missing session is
encoded on first use when ``encode`` says how.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from deeporb.data.cache import load_cache
from deeporb.data.facts import SessionFacts
from deeporb.data.split import (
    SPLITS,
    check_fractions,
    note_file_refs,
    parts_top_down,
    session_instruments,
    split_of,
)
from deeporb.data.streams import LaneSampler, RowChunks
from deeporb.data.windows import WindowDataset, tile_starts, training_starts
from deeporb.encoding.grammar import VIEWS, View
from deeporb.encoding.words import BAR, MAX_REPEAT_BARS, PAD, EncodingConfig, Vocabulary
from deeporb.errors import UserError
from deeporb.instruments import safe_key
from deeporb.session_store import MANIFEST, list_sessions, load_manifest, session_name_for

ENCODE_HINT = "python encode.py dataset=bach_chorales  (or: python encode.py midi_dir=DIR session=NAME)"


class SessionDataModule(pl.LightningDataModule):
    """One or more sessions as train/val/test windows of word ids.

    Args:
        session: a session name or a list of names under ``sessions_dir``.
        view: ``"score"`` (a sequence per piece, all its parts in one stream) or ``"tracks"``
            (a sequence per track, the original approach); see :mod:`deeporb.data.cache`.
        instruments: instrument keys to keep (None: all).
        score_order: the parts' order in the vocabulary, so in the score (a checkpoint's:
            :meth:`~deeporb.data.facts.SessionFacts.data_settings` gives it, and a checkpoint
            trained before parts stood top-down keeps its key order). None: top-down by the
            sessions' mean pitches (:func:`deeporb.data.split.parts_top_down`).
        seq_len: words per training sequence (inputs; the batch holds ``seq_len + 1``).
        stride: words between training windows before each start moves back to a bar line
            (None: ``seq_len // 2``).
        transpose: random transposition range in semitones for training windows.
        carry_state: read each training piece in order, ``seq_len`` words a step, the LSTM state
            carried from step to step (truncated backpropagation through time,
            :mod:`deeporb.data.streams`), instead of windows from a fresh state. One device.
        repeat_bars: a bar equal to one at most this many bars back (same meter) becomes one
            ``rep_K`` word (0: every bar written out, the vocabulary of older checkpoints); see
            :func:`deeporb.encoding.words.repeated_bars`. The note files are not changed.
        fill_share: the share of training items that are fill examples (score view): a piece with
            a random gap, its contents written last (:mod:`deeporb.data.fill_examples`), so the
            checkpoint can also fill bars and parts (``sample.py fill.parts=... fill.bars=...``).
            0: plain windows only, and no fill words in the vocabulary.
        final_bar: a whole piece's last bar opens with the word ``final`` (``bar [ts] final``), so
            the network knows it is writing the bar that ends the piece and learns how pieces end;
            sampling then ends a piece after the bar the model (or ``bars``) makes final. False
            (the default: at 800 steps it did not help, ``benchmarks/form.py``): no such word.
        val_fraction, test_fraction: split fractions, by piece (see :func:`split_of`).
        encode: how to build a missing session: a ``functools.partial`` of the encode stage
            (:func:`deeporb.stages.encode.encode_session`) with its input, e.g. ``dataset=
            "bach_chorales"``, called with ``session=`` and ``sessions_dir=``; the configs make
            it with Hydra's ``_partial_: true``. Injected rather than imported because the
            encode stage sits above the data layer. None: a missing session is an error.
    """

    def __init__(
        self,
        session: str | Sequence[str] = "bach_chorales",
        sessions_dir: str = "data/sessions",
        view: View | str = View.SCORE,
        instruments: Sequence[str] | None = None,
        score_order: Sequence[str] | None = None,
        seq_len: int = 256,
        stride: int | None = None,
        batch_size: int = 32,
        transpose: int = 0,
        repeat_bars: int = 16,
        carry_state: bool = False,
        fill_share: float = 0.25,
        final_bar: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        num_workers: int = 0,
        pin_memory: bool = False,
        encode: functools.partial | None = None,
    ) -> None:
        super().__init__()
        names = [session] if isinstance(session, str) else list(session)
        if not names:
            raise UserError("data.session is empty; name at least one session")
        self.names = names
        self.sessions_dir = Path(sessions_dir)
        if view not in VIEWS:
            raise UserError(f"data.view={view!r} is not a view; use one of: {', '.join(VIEWS)}")
        self.view = View(view)
        self.instruments_filter = sorted(set(instruments)) if instruments else None
        self.given_order = list(dict.fromkeys(score_order)) if score_order else None
        if seq_len < 2:
            raise UserError(f"data.seq_len must be at least 2, not {seq_len}")
        self.seq_len = int(seq_len)
        self.stride = int(stride) if stride else max(1, self.seq_len // 2)
        self.batch_size = int(batch_size)
        self.transpose = int(transpose)
        if not 0 <= int(repeat_bars) <= MAX_REPEAT_BARS:
            raise UserError(f"data.repeat_bars must be from 0 to {MAX_REPEAT_BARS}, not {repeat_bars}")
        self.repeat_bars = int(repeat_bars)
        self.carry_state = bool(carry_state)
        if not 0.0 <= float(fill_share) < 1.0:
            raise UserError(f"data.fill_share must be at least 0 and below 1, not {fill_share}: the share of "
                            "training items that are fill examples")
        self.fill_share = float(fill_share) if self.view == View.SCORE else 0.0
        if fill_share and self.view != View.SCORE:
            print(f"note: data.fill_share={fill_share} applies to the score view only; the tracks view trains without fills")
        if self.fill_share and self.carry_state:
            raise UserError("data.carry_state=true reads whole pieces in order, with no fill examples; "
                            "set data.fill_share=0 with it (or data.carry_state=false)")
        self.final_bar = bool(final_bar)
        check_fractions(val_fraction, test_fraction)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        if encode and not isinstance(encode, functools.partial):
            raise UserError(
                f"data.encode={encode!r} is not the encode stage; give it `_target_: "
                "deeporb.stages.encode.encode_session` and `_partial_: true` beside its input, "
                "as configs/data/bach_chorales.yaml does"
            )
        self.encode = encode or None
        self._loaded = False

    # -- sessions ----------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Make sure every session exists (encoding a built-in one if configured) and is cached."""
        existing = set(list_sessions(self.sessions_dir))
        for name in self.names:
            if name in existing:
                continue
            if self._encodes(name):
                print(f"session {name!r} not found in {self.sessions_dir}: encoding it now")
                self.encode(session=name, sessions_dir=str(self.sessions_dir))
                continue
            have = ", ".join(sorted(existing)) or "none"
            raise UserError(
                f"unknown session {name!r} in {self.sessions_dir} (existing: {have}); "
                f"make it with: {ENCODE_HINT.replace('NAME', name)}"
            )
        self.load()

    def _encodes(self, name: str) -> bool:
        """Whether the configured ``encode`` input builds this session (not some other name)."""
        spec = self.encode.keywords if self.encode else {}
        if spec.get("session"):
            return spec["session"] == name
        if spec.get("dataset"):
            return spec["dataset"] == name
        if spec.get("midi_dir"):
            return session_name_for(spec["midi_dir"]) == name
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
        configs = {name: EncodingConfig.from_dict(m["encoding"]) for name, m in manifests.items()}
        self.instrument_key_mode = manifests[self.names[0]].get("instrument_key", "program")
        first = configs[self.names[0]]
        for name, c in configs.items():
            if c != first:
                raise UserError(
                    f"sessions {self.names[0]!r} and {name!r} were encoded with different settings "
                    f"({first.to_dict()} vs {c.to_dict()}); re-encode them alike to train on both"
                )
        available = sorted({k for n in self.names for k in session_instruments(self.sessions_dir / n)})
        if self.instruments_filter is not None:
            unknown = [k for k in self.instruments_filter if k not in available]
            if unknown:
                raise UserError(
                    f"unknown instrument(s) {', '.join(unknown)} in session(s) {', '.join(self.names)}; "
                    f"available: {', '.join(available)}"
                )
        if not (self.instruments_filter or available):
            raise UserError(f"session(s) {', '.join(self.names)} hold no note files; re-run encode.py")
        keys, unplaced = parts_top_down(self.instruments_filter or available, manifests.values())
        if self.given_order is not None:  # a checkpoint's order: its parts first, as it has them
            keys = [k for k in self.given_order if k in keys] + [k for k in keys if k not in self.given_order]
        elif unplaced and len(keys) > 1:
            print(f"note: session(s) {', '.join(self.names)} were encoded before the manifest kept each part's mean "
                  f"pitch, so {', '.join(unplaced)} keep key order in the score; re-encode to write the parts top-down")
        self.styles = session_styles(manifests) if len(self.names) > 1 else {}
        self.vocab = Vocabulary(first, tuple(keys), tuple(self.styles.values()), self.repeat_bars, self.fill_share > 0,
                                self.final_bar)
        self.pad_id = self.vocab.index[PAD]

        # the token cache's rows (a track or a piece each); "array" says which session's cache
        self.rows: list[dict] = []
        self.tokens_paths: list[Path] = []
        for si, name in enumerate(self.names):
            session_dir = self.sessions_dir / name
            refs = note_file_refs(session_dir, keys)
            path, index = load_cache(session_dir, refs, self.vocab, self.view, self.styles.get(name))
            self.tokens_paths.append(path)
            for row in index["rows"]:
                row = dict(row, session=name, array=si)
                row["split"] = split_of(row["piece"], self.val_fraction, self.test_fraction)
                self.rows.append(row)
        # drum parts: instruments whose note files say is_drum (transposition never moves them)
        self.drum_keys = sorted({t["instrument"] for row in self.rows for t in row_tracks(row) if t["is_drum"]})
        self._windows: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
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
        return {s: len({(t["session"], t["piece"]) for t in self.rows if t["split"] == s}) for s in SPLITS}

    # -- datasets ----------------------------------------------------------------------
    def dataset(self, split: str) -> Dataset:
        """The windows of one split (a ConcatDataset over sessions when there are several)."""
        self.load()
        parts = []
        train = split == "train"
        inst_ids = self.vocab.blocks["inst"]
        drum_ids = np.array([self.vocab.inst_id(k) for k in self.drum_keys], dtype=np.int64)
        for si, (rows, (window_row, window_offset)) in enumerate(zip(self._split_rows(split), self.windows(split), strict=True)):
            if not rows:
                continue
            start, length, header = (np.array([t[k] for t in rows], dtype=np.int64) for k in ("start", "length", "header"))
            parts.append(
                WindowDataset(
                    self.tokens_paths[si], start, length, header, window_row, window_offset,
                    self.seq_len, self.vocab.pitch0, inst_ids, drum_ids, self.pad_id,
                    self.transpose if train else 0, self.fill_share if train else 0.0, self.vocab,
                )
            )
        if not parts:
            raise UserError(
                f"the {split} split of {', '.join(self.names)} is empty; "
                "add pieces or change data.val_fraction / data.test_fraction"
            )
        return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)

    def _split_rows(self, split: str) -> list[list[dict]]:
        """The rows of one split, per session's token array, in the order of the array."""
        return [sorted((t for t in self.rows if t["array"] == si and t["split"] == split), key=lambda t: t["start"])
                for si in range(len(self.tokens_paths))]

    def windows(self, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """(row, body offset) of each window of a split, per session (rows as :meth:`_split_rows`
        orders them). Training windows start at bar lines (found once per split, reading the
        cache a chunk at a time), evaluation windows tile the rows. Each repeats its row's header."""
        if split in self._windows:
            return self._windows[split]
        out = []
        onset_ids = self.vocab.blocks["pos"]
        for si, rows in enumerate(self._split_rows(split)):
            header = np.array([t["header"] for t in rows], dtype=np.int64)
            width = self.seq_len + 1 - header
            if len(rows) and width.min() < 1:
                row = rows[int(np.argmin(width))]
                raise UserError(
                    f"data.seq_len={self.seq_len} leaves no room after a {row['header']}-word header "
                    f"({row['session']}: {row['piece']}); raise data.seq_len"
                )
            body_len = np.array([t["length"] for t in rows], dtype=np.int64) - header
            if split == "train" and len(rows):
                body_start = np.array([t["start"] for t in rows], dtype=np.int64) + header
                tokens = np.load(self.tokens_paths[si], mmap_mode="r")
                out.append(training_starts(tokens, body_start, body_len, width, self.stride,
                                           self.vocab.index[BAR], onset_ids))
            else:
                out.append(tile_starts(body_len, width))
        self._windows[split] = out
        return out

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
        if not self.carry_state:
            return self._loader("train", shuffle=True)
        if self.trainer is not None and self.trainer.world_size > 1:
            raise UserError("data.carry_state=true trains on one device (its lanes carry state from step to step); "
                            "use trainer.devices=1 or data.carry_state=false")
        chunks = self.row_chunks("train")
        return DataLoader(chunks, batch_sampler=LaneSampler(chunks, self.batch_size, seed=torch.initial_seed() % 2**31),
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0)

    def row_chunks(self, split: str) -> RowChunks:
        """The rows of a split as chunks read in order (``data.carry_state``)."""
        self.load()
        rows = [t for per_array in self._split_rows(split) for t in per_array]
        column = {k: np.array([t[k] for t in rows], dtype=np.int64) for k in ("array", "start", "length", "header")}
        drum_ids = np.array([self.vocab.inst_id(k) for k in self.drum_keys], dtype=np.int64)
        return RowChunks(self.tokens_paths, column["array"], column["start"], column["length"], column["header"],
                         self.seq_len, self.vocab.pitch0, self.vocab.blocks["inst"], drum_ids, self.pad_id,
                         self.transpose, seed=torch.initial_seed() % 2**31)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # -- what the checkpoint and the logger keep ---------------------------------------
    def session_info(self) -> dict:
        """Facts sampling and evaluation need later, stored in the checkpoint (``session=``):
        :class:`deeporb.data.facts.SessionFacts` as plain data."""
        self.load()
        first_row: dict[tuple[str, str], dict] = {}
        instruments: dict[str, dict] = {}
        for row in self.rows:
            first_row.setdefault((row["session"], row["piece"]), row)
            for t in row_tracks(row):
                info = instruments.setdefault(
                    t["instrument"], {"programs": Counter(), "is_drum": t["is_drum"], "tracks": 0, "notes": 0}
                )
                info["programs"][t["program"]] += 1
                info["tracks"] += 1
                info["notes"] += t["notes"]
        for info in instruments.values():
            info["program"] = info.pop("programs").most_common(1)[0][0]
        meters: Counter = Counter()
        style_meters: dict[str, Counter] = {}
        for row in first_row.values():
            meters.update(row["meter"])
            if row["session"] in self.styles:
                style_meters.setdefault(self.styles[row["session"]], Counter()).update(row["meter"])
        qpms = [row["qpm"] for row in first_row.values()]
        return SessionFacts(
            names=tuple(self.names),
            sessions_dir=str(self.sessions_dir.resolve()),
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            instruments_filter=None if self.instruments_filter is None else tuple(self.instruments_filter),
            seq_len=self.seq_len,
            repeat_bars=self.repeat_bars,
            fill_share=self.fill_share,
            final_bar=self.final_bar,
            time_signatures=dict(meters.most_common()),
            instruments={k: instruments[k] for k in sorted(instruments)},
            instrument_keys=tuple(self.vocab.instruments),
            instrument_key=self.instrument_key_mode,
            encoding=self.vocab.config,
            pieces=self.pieces_per_split(),
            view=self.view,
            styles=tuple(self.styles[n] for n in self.names) if self.styles else (),  # each session's, in order
            style_time_signatures={k: dict(c.most_common()) for k, c in sorted(style_meters.items())},
            **({"qpm_median": float(np.median(qpms))} if qpms else {}),
        ).to_dict()

    def statistics(self) -> dict:
        """Pieces, tracks, rows, words, notes and windows per split, and pieces, tracks and
        notes per instrument (for logging). Words are body words: a row's header and ``<eos>``
        are framing, not words. Notes are the same in both views (every note of every piece)."""
        self.load()
        stats: dict = {"view": self.view, "styles": dict(self.styles)}
        for split in SPLITS:
            rows = [t for t in self.rows if t["split"] == split]
            per_inst: dict[str, dict] = {}
            for row in rows:
                for t in row_tracks(row):
                    s = per_inst.setdefault(t["instrument"], {"pieces": set(), "tracks": 0, "notes": 0})
                    s["pieces"].add((row["session"], row["piece"]))
                    s["tracks"] += 1
                    s["notes"] += t["notes"]
            for s in per_inst.values():
                s["pieces"] = len(s["pieces"])
            stats[split] = {
                "pieces": len({(t["session"], t["piece"]) for t in rows}),
                "tracks": sum(len(row_tracks(t)) for t in rows),
                "rows": len(rows),
                "words": sum(t["length"] - t["header"] - 1 for t in rows),
                "notes": sum(t["notes"] for t in rows),
                "windows": int(sum(len(r) for r, _ in self.windows(split))),
                "instruments": dict(sorted(per_inst.items())),
            }
        stats["vocab_size"] = len(self.vocab)
        return stats


def row_tracks(row: dict) -> list[dict]:
    """The facts of the tracks in a cache row: a score row lists its piece's tracks, a tracks
    row is one track's facts itself."""
    return row.get("tracks", [row])


def session_styles(manifests: dict[str, dict]) -> dict[str, str]:
    """{session: style word key}: the manifest's ``style`` (the session name when absent),
    made a safe key. Styles separate sessions trained together, so only several sessions
    have them: one session keeps the vocabulary (and the ids) it has alone."""
    styles = {}
    for name, manifest in manifests.items():
        style = str(manifest.get("style") or name)
        styles[name] = safe_key(style)
        if not styles[name]:
            raise UserError(
                f"session {name!r} has style {style!r}, which leaves no letter or digit for a style word; "
                f"re-encode it with: python encode.py ... session={name} style=NAME"
            )
    return styles
