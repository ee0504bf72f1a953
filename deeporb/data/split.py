"""The split by piece: which note files are train, validation or test.

:func:`split_of` hashes a piece id (the ``source`` path the note file came from), so every
run, sweep and evaluation sees the same split, and every track of a piece lands in the same
split. The test split is carved first, so changing the validation fraction never moves a
test piece.

The truth on disk is the instrument folders (a user may move or delete note files by hand);
the manifest supplies the source of each known file, and a file it does not know is read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deeporb.errors import UserError
from deeporb.session_store import load_manifest, load_note_file, scan_note_files

SPLITS = ("train", "val", "test")


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


def parts_top_down(keys: Iterable[str], manifests: Iterable[dict]) -> tuple[list[str], list[str]]:
    """``keys`` top-down, as a printed score stands: the highest-sounding part first (by mean
    pitch over the sessions' manifests), drums last, ties by key; and the keys no manifest
    gives a mean pitch for (sessions encoded before it was recorded), which keep key order
    after the others. The score view writes the parts at each onset in this order, so a
    melody comes before the parts that accompany it and they hear it at their own onset (a
    kept soprano, given first, is heard by the alto, tenor and bass the model writes)."""
    pitch_sum: dict[str, float] = {}
    notes: dict[str, int] = {}
    drums: set[str] = set()
    for manifest in manifests:
        for key, inst in manifest.get("instruments", {}).items():
            if inst.get("is_drum"):
                drums.add(key)
            if inst.get("mean_pitch") is not None and inst.get("notes"):
                pitch_sum[key] = pitch_sum.get(key, 0.0) + inst["mean_pitch"] * inst["notes"]
                notes[key] = notes.get(key, 0) + inst["notes"]
    keys = sorted(set(keys))
    unknown = [k for k in keys if k not in notes and k not in drums]
    known = [k for k in keys if k in notes and k not in drums]
    ordered = sorted(known, key=lambda k: (-pitch_sum[k] / notes[k], k)) + unknown + [k for k in keys if k in drums]
    return ordered, unknown


def note_file_refs(session_dir: Path, instruments: Iterable[str] | None = None) -> list[NoteFileRef]:
    """Every note file with its piece id; the manifest names known files, others are read."""
    session_dir = Path(session_dir)
    manifest = load_manifest(session_dir)
    source_of = {f: p["source"] for p in manifest.get("pieces", []) for f in p["files"]}
    refs = []
    for path in scan_note_files(session_dir, instruments):
        rel = f"{path.parent.name}/{path.name}"
        piece = source_of.get(rel) or load_note_file(path).get("source", rel)
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
