"""The token cache: a session's pieces as word ids, built once and memory-mapped.

``SESSION/cache/tokens-KEY.npy`` (uint16/uint32) holds every row's ids end to end,
``notes-KEY.npy`` (uint16) beside it how many notes each word stands for (a pitch 1, a
``rep_K`` its bar's notes: :func:`~deeporb.encoding.words.note_counts`), and
``index-KEY.json`` one entry per row: where it starts, how long it is, and how long its
header is. A row is ``header body <eos>``; the header is what every window of the row
repeats so that each sequence says what it is. Two views make rows from the same note files:

* **tracks:** a row per note file, ``<bos> [style_S] inst_KEY body <eos>``; its body is the
  note file's words as encode.py wrote them.
* **score:** a row per piece, ``<bos> [style_S] inst_A inst_B ... body <eos>``: every part of
  the piece in one time-ordered stream (:func:`deeporb.encoding.score.encode_score`), built
  from the note files' note columns; tracks of one instrument in a piece merge into one part.

In both views a piece starts at its first sounding bar (:mod:`deeporb.data.pieces`); a piece
that opens with sound keeps, in the tracks view, exactly the ids of its note files' words.

KEY hashes everything the ids depend on: the cache format, the vocabulary (styles included),
the view, the session's style, and each note file's path, size and modification time, so
editing, adding or deleting a note file by hand rebuilds the cache. Rows are made a piece
at a time and written as they come, so memory stays flat as the corpus grows.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from deeporb.data.pieces import pieces
from deeporb.data.split import NoteFileRef
from deeporb.encoding.grammar import VIEWS, View
from deeporb.encoding.score import encode_score
from deeporb.encoding.words import EOS, UNK, Vocabulary, encode_ids, note_counts
from deeporb.session_store import CACHE_DIR

# 2: index rows carry their header length ("header") and the list is named "rows"
# 3: the view and the style are in the key; pieces start at their first sounding bar
# 4: notes-KEY.npy, the notes each word stands for (rep_K words fold repeated bars)
CACHE_FORMAT = 4


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)


def cache_key(session_dir: Path, files: Sequence[Path], vocab: Vocabulary, view: str, style: str | None) -> str:
    """Hash of everything the cached ids depend on (stat, not contents: cheap at start-up)."""
    h = hashlib.sha256()
    about = {"format": CACHE_FORMAT, "vocab": vocab.to_dict(), "view": view, "style": style}
    h.update(json.dumps(about, sort_keys=True).encode())
    for f in files:
        st = f.stat()
        h.update(f"\n{f.parent.name}/{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def count_notes(ids: np.ndarray, vocab: Vocabulary) -> int:
    """The notes ``bits_per_note`` divides by, the same set in either view, folded or not."""
    return int(note_counts(ids, vocab).sum())


def notes_path(tokens_path: Path) -> Path:
    """The note counts beside a token array: ``notes-KEY.npy`` for ``tokens-KEY.npy``."""
    return tokens_path.with_name("notes-" + tokens_path.name.removeprefix("tokens-"))


def track_rows(refs: Iterable[NoteFileRef], vocab: Vocabulary, style: str | None = None) -> Iterator[tuple[np.ndarray, dict]]:
    """Tracks view: one row per note file, ``<bos> [style_S] inst_KEY body <eos>``, with its facts.

    The body is the note file's words; where the piece's first bars were silent in every part,
    or repeated bars are folded (``vocab.repeat_bars``) or the last bar is marked
    (``vocab.final_bar``), it is the note columns re-encoded from the first sounding bar (as the
    score view does)."""
    eos = vocab.index[EOS]
    for piece in pieces(refs, vocab.config):
        for track in piece.tracks:
            if piece.steps or vocab.repeat_bars or vocab.final_bar:
                body = encode_ids(track.grid, piece.meter, vocab, final=True)
            else:
                body = vocab.ids(track.record["words"])
            header = vocab.header_ids([track.ref.instrument], style)
            ids = np.concatenate([header, body, [eos]])
            yield ids, {**track.facts(), **piece.facts(), "header": len(header), "notes": count_notes(body, vocab)}


def score_rows(refs: Iterable[NoteFileRef], vocab: Vocabulary, style: str | None = None) -> Iterator[tuple[np.ndarray, dict]]:
    """Score view: one row per piece, ``<bos> [style_S] inst_A inst_B ... body <eos>``.

    Facts: the piece's, its instruments (the header's parts, ascending), and each of its
    tracks' facts with its note count (``tracks``)."""
    for piece in pieces(refs, vocab.config):
        parts = piece.parts()
        ids = encode_score(parts, piece.meter, vocab, style)
        header = 1 + (style is not None) + len(parts)
        tracks = [{**t.facts(), "notes": len(t.grid)} for t in piece.tracks]
        yield ids, {
            **piece.facts(),
            "instruments": sorted(parts),
            "tracks": tracks,
            "header": header,
            "notes": count_notes(ids[header:], vocab),
        }


def build_cache(session_dir: Path, rows: Iterable[tuple[np.ndarray, dict]], vocab: Vocabulary, key: str) -> None:
    """Write ``tokens-KEY.npy`` and ``index-KEY.json`` from (ids, facts) rows, streaming:
    memory does not grow with the corpus. Each index row is its facts plus ``start`` and
    ``length``; files appear only complete (written aside, then renamed). The note counts
    (:func:`notes_path`) are written beside the ids, word for word."""
    cache = Path(session_dir) / CACHE_DIR
    cache.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(len(vocab))
    suffix = f".tmp-{os.getpid()}"
    raw_path, raw_notes = cache / f"tokens-{key}.raw{suffix}", cache / f"notes-{key}.raw{suffix}"
    npy_path, index_path = cache / f"tokens-{key}.npy", cache / f"index-{key}.json"
    unk = vocab.index[UNK]
    index, offset, unknown = [], 0, 0
    try:
        with open(raw_path, "wb") as raw, open(raw_notes, "wb") as counts:
            for ids, facts in rows:
                unknown += int((ids == unk).sum())
                raw.write(np.asarray(ids).astype(dtype).tobytes())
                counts.write(np.minimum(note_counts(ids, vocab), NOTES_MAX).astype(np.uint16).tobytes())
                index.append({**facts, "start": offset, "length": len(ids)})
                offset += len(ids)
        write_npy(raw_notes, notes_path(npy_path), np.dtype(np.uint16), offset, suffix)
        write_npy(raw_path, npy_path, dtype, offset, suffix)
        tmp_index = cache / f"index-{key}.json{suffix}"
        tmp_index.write_text(json.dumps({"key": key, "unknown_words": unknown, "rows": index}))
        os.replace(tmp_index, index_path)
    finally:
        for leftover in cache.glob(f"*{suffix}"):
            leftover.unlink(missing_ok=True)


NOTES_MAX = np.iinfo(np.uint16).max  # notes one word may stand for in the cache (a bar's)


def write_npy(raw_path: Path, npy_path: Path, dtype: np.dtype, length: int, suffix: str) -> None:
    """A raw file of ``length`` values as ``npy_path``, which appears only complete."""
    tmp = npy_path.with_name(npy_path.name + suffix)
    with open(tmp, "wb") as out, open(raw_path, "rb") as raw:
        np.lib.format.write_array_header_1_0(out, {"descr": dtype.str, "fortran_order": False, "shape": (length,)})
        while chunk := raw.read(1 << 22):
            out.write(chunk)
    os.replace(tmp, npy_path)


def load_cache(
    session_dir: Path, refs: Sequence[NoteFileRef], vocab: Vocabulary, view: View = View.SCORE, style: str | None = None
) -> tuple[Path, dict]:
    """(path of the token array, index) of a session in a view, its rows framed with ``style``
    (None: no style word), building the cache when its key is new."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, not {view!r}")
    key = cache_key(session_dir, [r.path for r in refs], vocab, view, style)
    cache = Path(session_dir) / CACHE_DIR
    npy_path, index_path = cache / f"tokens-{key}.npy", cache / f"index-{key}.json"
    if not (npy_path.is_file() and notes_path(npy_path).is_file() and index_path.is_file()):
        rows = score_rows if view == View.SCORE else track_rows
        build_cache(session_dir, rows(refs, vocab, style), vocab, key)
    index = json.loads(index_path.read_text())
    if index["unknown_words"]:
        print(
            f"warning: {index['unknown_words']} word(s) in {session_dir} are not in the vocabulary "
            "and were read as <unk>"
        )
    return npy_path, index
