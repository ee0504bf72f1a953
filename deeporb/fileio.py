"""Atomic writes: a reader never sees half a file, and a killed run never leaves half a folder.

Two tools, used by everything that writes results:

- :func:`atomic_write_bytes` / :func:`atomic_write_text`: one file, via a temp file in the
  same folder, fsync, then ``os.replace``; finished files get the ordinary mode from the
  umask (``mkstemp`` alone would leave them 0600).
- :func:`staged_folder`: a whole folder (a session) built in a hidden temp folder beside its
  final place and swapped in by rename. The temp folder is held by an exclusive ``flock`` on
  its own directory handle for as long as its run lives; the kernel drops the lock when the
  run dies, even on ``kill -9``. So the next staging in the same parent folder can tell a
  dead run's leftovers from a live run's work and removes them, whatever their PID.

POSIX only (``fcntl``), like the rest of the package.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from deeporb.workers import pid_alive


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file
DIR_MODE = 0o777 & ~_umask()

# `.NAME.tmp-PID-RANDOM` (being built) and `.NAME.old-PID` (the replaced folder, being removed)
_STAGING = re.compile(r"^\..+\.(tmp|old)-(\d+)(-[^/]*)?$")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _try_lock(folder: Path) -> int | None:
    """An fd holding an exclusive flock on ``folder``, or None if a live process holds it."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _pid_alive(pid: int) -> bool:
    # our own PID on a leftover is a dead run that had our number
    return pid != os.getpid() and pid_alive(pid)


def remove_stale_staging(parent: str | Path) -> list[Path]:
    """Remove the staging folders that dead runs left in ``parent``; return what was removed.

    ``.NAME.tmp-*`` folders are stale when nobody holds their lock; ``.NAME.old-PID`` folders
    (a replaced folder a run was deleting) when their PID is gone.
    """
    parent = Path(parent)
    removed = []
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = _STAGING.match(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if match.group(1) == "tmp":
            fd = _try_lock(path)
            if fd is None:
                continue
            try:
                shutil.rmtree(path, ignore_errors=True)
            finally:
                os.close(fd)
        elif _pid_alive(int(match.group(2))):
            continue
        else:
            shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _locked_temp_folder(final: Path) -> tuple[Path, int]:
    """Make ``.NAME.tmp-PID-RANDOM`` beside ``final`` and lock it (retrying if a cleaner that
    saw it unlocked for an instant removed it)."""
    while True:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return tmp, fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def staged_folder(final: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder beside ``final``; swap it into place when the block ends.

    If the block raises, the temp folder is removed and ``final`` is untouched. Stale staging
    folders of dead runs in the same parent are removed first. The swap is two renames
    (old out, new in), so there is an instant without ``final``, never a half-built one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final.parent)
    tmp, fd = _locked_temp_folder(final)
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    try:
        yield tmp
        os.chmod(tmp, DIR_MODE)  # mkdtemp makes 0700
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    finally:
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            os.close(fd)
