"""The server's run folder: each piece's files under an unguessable id, the oldest pruned.

A client never names a path: it names an id, which must be one this store handed out
(still kept) and a kind from :data:`KINDS`; the path is built here. Ids are 128 random bits
(``secrets``), so one client cannot find another's pieces by counting.

The folder is bounded in pieces (``keep``) and in bytes (``max_bytes``), oldest first, and the
bounds hold across restarts: a store opened on a folder of an earlier run takes its pieces in
(oldest first by modification time) and prunes them like its own. DeepOrb deletes only what it
wrote: the folder must carry DeepOrb's ``pieces`` marker (:func:`deeporb.fileio.claim_folder`;
a folder of someone else's files is refused), and only names this store makes are ever
deleted (:data:`FILE`, :data:`TEMPORARY`). One server per folder: a second one is refused
while the first holds the folder's lock, so one never prunes the other's pieces.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import threading
from collections import OrderedDict
from pathlib import Path

from deeporb.errors import UserError
from deeporb.fileio import claim_folder
from deeporb.render.musicxml import MEDIA_TYPE

# what a piece has: its MIDI (written before the answer), and what is drawn from it when first fetched
KINDS = {"mid": "audio/midi", "png": "image/png", "wav": "audio/wav", "musicxml": MEDIA_TYPE}
ID = re.compile(r"[A-Za-z0-9_-]{22}")
_KIND = "|".join(KINDS)
FILE = re.compile(rf"(?P<id>{ID.pattern})\.(?:{_KIND})")
# what a write in progress leaves when its run is killed: a draft (.draft-ID.png), or the temp
# file of an atomic write (.ID.mid.XXXXXXXX.tmp, ..draft-ID.wav.XXXXXXXX.tmp: deeporb.fileio)
TEMPORARY = re.compile(rf"\.draft-{ID.pattern}\.(?:{_KIND})|\.(?:\.draft-)?{ID.pattern}\.(?:{_KIND})\.[a-z0-9_]+\.tmp")


class PieceStore:
    """Pieces in ``folder``: past ``keep`` pieces or ``max_bytes`` bytes the oldest's files go."""

    def __init__(self, folder: str | Path, keep: int, max_bytes: int, setting: str = "out_dir") -> None:
        if keep < 1:
            raise UserError(f"keep_pieces must be at least 1 (got {keep})")
        if max_bytes < 1:
            raise UserError(f"max_pieces_bytes must be at least 1 (got {max_bytes})")
        self.folder = claim_folder(folder, "pieces", setting)
        self.keep, self.max_bytes = keep, max_bytes
        self._lock_fd = _lock(self.folder, setting)
        self._ids: OrderedDict[str, int] = OrderedDict()  # id -> bytes of its files, oldest first
        self._bytes = 0
        self._lock = threading.Lock()
        self._take_in()

    def _take_in(self) -> None:
        """An earlier run's pieces, oldest first, pruned to the bounds; its half-written files removed."""
        found: dict[str, list[os.stat_result]] = {}
        for entry in os.scandir(self.folder):
            if not entry.is_file(follow_symlinks=False):
                continue
            if TEMPORARY.fullmatch(entry.name):
                Path(entry.path).unlink(missing_ok=True)
            elif match := FILE.fullmatch(entry.name):
                found.setdefault(match["id"], []).append(entry.stat(follow_symlinks=False))
        with self._lock:
            for piece, stats in sorted(found.items(), key=lambda item: max(s.st_mtime for s in item[1])):
                self._ids[piece] = sum(s.st_size for s in stats)
                self._bytes += self._ids[piece]
            self._prune(None)

    def new_id(self) -> str:
        """A fresh id, reserved; its files go to :meth:`path`, then :meth:`added` counts them."""
        piece = secrets.token_urlsafe(16)
        with self._lock:
            self._ids[piece] = 0
            self._prune(piece)
        return piece

    def added(self, piece: str) -> None:
        """Count the bytes of ``piece``'s files as they are now, and prune the oldest past the
        bounds (never ``piece`` itself: a client gets the file it asked for, so the folder holds at
        most ``max_bytes`` plus one piece)."""
        size = sum(_size(self.path(piece, kind)) for kind in KINDS)
        with self._lock:
            if piece in self._ids:
                self._bytes += size - self._ids[piece]
                self._ids[piece] = size
            self._prune(piece)

    def _prune(self, spare: str | None) -> None:
        for old in list(self._ids):
            if len(self._ids) <= self.keep and self._bytes <= self.max_bytes:
                return
            if old != spare:
                self._bytes -= self._ids.pop(old)
                for kind in KINDS:
                    self.path(old, kind).unlink(missing_ok=True)

    def path(self, piece: str, kind: str) -> Path:
        return self.folder / f"{piece}.{kind}"

    def draft(self, piece: str, kind: str) -> Path:
        """Where a file is drawn before it is renamed into place (a reader never sees half of it)."""
        return self.folder / f".draft-{piece}.{kind}"

    def discard_drafts(self, piece: str, kind: str) -> None:
        """Remove what drawing one file left behind (its draft; the temp file of a killed write)."""
        for path in self.folder.glob(f".*{piece}.{kind}*"):
            if TEMPORARY.fullmatch(path.name):
                path.unlink(missing_ok=True)

    def find(self, piece: str, kind: str) -> Path | None:
        """The path of a kept piece's file kind, or None (unknown id or kind, or pruned)."""
        if kind not in KINDS or not ID.fullmatch(piece):
            return None
        with self._lock:
            known = piece in self._ids
        return self.path(piece, kind) if known else None

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._ids)

    def close(self) -> None:
        """Let another server open the folder."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _lock(folder: Path, setting: str) -> int:
    """An exclusive lock on the folder for as long as this server runs (the kernel drops it when
    the process dies, however it dies)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UserError(f"{setting}={str(folder)!r} is in use by another running server; "
                        f"pass {setting}=PATH to another folder") from None
    return fd
