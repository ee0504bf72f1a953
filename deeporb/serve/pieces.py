"""The server's run folder: each piece's files under an unguessable id, the oldest pruned.

A client never names a path: it names an id, which must be one this store handed out
(still kept) and a kind from :data:`KINDS`; the path is built here. Ids are 128 random bits
(``secrets``), so one client cannot find another's pieces by counting.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from pathlib import Path

KINDS = {"mid": "audio/midi", "png": "image/png", "wav": "audio/wav"}
ID = re.compile(r"[A-Za-z0-9_-]{22}")


class PieceStore:
    """Pieces in ``folder``, at most ``keep`` of them: adding one more deletes the oldest's files."""

    def __init__(self, folder: str | Path, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1 (got {keep})")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def new_id(self) -> str:
        """A fresh id, reserved; its files go to :meth:`path`. Prunes past ``keep``."""
        piece = secrets.token_urlsafe(16)
        with self._lock:
            self._ids[piece] = None
            while len(self._ids) > self.keep:
                old, _ = self._ids.popitem(last=False)
                for kind in KINDS:
                    self.path(old, kind).unlink(missing_ok=True)
        return piece

    def path(self, piece: str, kind: str) -> Path:
        return self.folder / f"{piece}.{kind}"

    def find(self, piece: str, kind: str) -> Path | None:
        """The path of a kept piece's file kind, or None (unknown id or kind, or pruned)."""
        if kind not in KINDS or not ID.fullmatch(piece):
            return None
        with self._lock:
            known = piece in self._ids
        return self.path(piece, kind) if known else None

    def __len__(self) -> int:
        return len(self._ids)
