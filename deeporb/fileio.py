"""Atomic writes: a reader never sees half a file, and a killed run never leaves half a folder.

Two tools, used by everything that writes results:

- :func:`atomic_write_bytes` / :func:`atomic_write_text`: one file, via a temp file in the
  same folder, fsync, then ``os.replace``; finished files get the ordinary mode from the
  umask (``mkstemp`` alone would leave them 0600).
- :func:`staged_folder`: a whole folder (a session) built in a hidden temp folder beside its
  final place and swapped in by rename. The temp folder is held by an exclusive ``flock`` on
  its own directory handle for as long as its run lives; the kernel drops the lock when the
  run dies, even on ``kill -9``. So the next staging in the same parent folder can tell a
  dead run's leftovers from a live run's work and removes them, whatever their PID. Only
  folders carrying DeepOrb's ``staging`` marker are ever removed, and ``final`` is replaced
  only when the caller's ``replaceable`` says it is DeepOrb's own (a session: its manifest).

- :func:`claim_folder` / :func:`owned_folder`: the one rule for output folders that DeepOrb
  fills or prunes (sample folders, the server's pieces): a folder is DeepOrb's only when it
  carries the marker file DeepOrb put there, so nothing it did not write is ever replaced or
  deleted. Sessions are recognised by their manifest instead (:mod:`deeporb.session_store`).

POSIX only (``fcntl``), like the rest of the package.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from deeporb.errors import UserError
from deeporb.workers import pid_alive


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file
DIR_MODE = 0o777 & ~_umask()

# `.NAME.tmp-PID-RANDOM` (being built) and `.NAME.old-PID` (the replaced folder, being removed)
_STAGING = re.compile(r"^\..+\.(tmp|old)-(\d+)(-[^/]*)?$")
MARKER = ".deeporb"  # in a folder DeepOrb made: one line naming what the folder is for
STAGING = "staging"  # the marker's kind in both staging folders: only they are ever cleaned up


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
    (a replaced folder a run was deleting) when their PID is gone. Either must carry the
    ``staging`` marker: a folder of someone's that merely matches the names is never touched.
    """
    parent = Path(parent)
    removed = []
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = _STAGING.match(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False) or not owned_folder(entry.path, STAGING):
            continue
        path = Path(entry.path)
        if match.group(1) == "tmp":
            fd = _try_lock(path)
            if fd is None:
                continue
            try:
                _remove_staging(path)
            finally:
                os.close(fd)
        elif _pid_alive(int(match.group(2))):
            continue
        else:
            _remove_staging(path)
        removed.append(path)
    return removed


def _remove_staging(folder: Path) -> None:
    """Delete a staging folder, its marker last: a removal cut short (``kill -9``) leaves a
    folder still recognisably DeepOrb's, which the next run finishes off."""
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name == MARKER:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    with contextlib.suppress(OSError):
        if set(os.listdir(folder)) <= {MARKER}:  # the marker goes only with the last file
            (folder / MARKER).unlink(missing_ok=True)
            os.rmdir(folder)


def _locked_temp_folder(final: Path) -> tuple[Path, int]:
    """Make ``.NAME.tmp-PID-RANDOM`` beside ``final``, lock it, then mark it as staging. A
    cleaner removes only marked folders it can lock, so none can take this one from us."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        atomic_write_text(tmp / MARKER, STAGING + "\n")
    except BaseException:
        os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp, fd


def _move_out(final: Path, old: Path) -> None:
    """Rename ``final`` to ``old``, marked as staging first: if its removal is cut short, the
    next run recognises the leftover as DeepOrb's and finishes it."""
    atomic_write_text(final / MARKER, STAGING + "\n")
    try:
        os.replace(final, old)
    except BaseException:
        (final / MARKER).unlink(missing_ok=True)
        raise


def _check_replaceable(final: Path, replaceable: Callable[[Path], bool]) -> None:
    if os.path.lexists(final) and not replaceable(final):
        raise UserError(f"{str(final)!r} exists and is not DeepOrb's to replace; move it away or pass another name")


@contextlib.contextmanager
def staged_folder(final: str | Path, replaceable: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield a new temp folder beside ``final``; swap it into place when the block ends. It
    holds only the ``staging`` marker (``.deeporb``), which is taken out before the swap.

    An existing ``final`` is replaced only when ``replaceable(final)`` is true: the caller
    says what its own folders look like (a session has its manifest), so no caller can
    replace someone's folder by accident. It is asked before the block and again at the swap;
    a no raises :class:`UserError` and leaves ``final`` untouched. If the block raises, the
    temp folder is removed and ``final`` is untouched. Stale staging folders of dead runs in
    the same parent are removed first. The swap is two renames (old out, new in), so there is
    an instant without ``final``, never a half-built one.
    """
    final = Path(final)
    _check_replaceable(final, replaceable)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final.parent)
    tmp, fd = _locked_temp_folder(final)
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    moved = False  # final renamed to old: ours to delete
    try:
        yield tmp
        os.chmod(tmp, DIR_MODE)  # mkdtemp makes 0700
        (tmp / MARKER).unlink()
        if os.path.lexists(final):
            _check_replaceable(final, replaceable)
            _move_out(final, old)
            moved = True
        try:
            os.replace(tmp, final)
        except BaseException:
            if moved:  # put the old folder back rather than lose both
                os.replace(old, final)
                moved = False
                (final / MARKER).unlink(missing_ok=True)
            raise
    finally:
        try:
            if tmp.is_dir():
                _remove_staging(tmp)
            if moved:
                _remove_staging(old)
        finally:
            os.close(fd)


def owned_folder(folder: str | Path, kind: str) -> bool:
    """True when ``folder`` carries DeepOrb's marker for ``kind`` (e.g. ``samples``, ``pieces``)."""
    try:
        return (Path(folder) / MARKER).read_text().strip() == kind
    except (OSError, UnicodeDecodeError):
        return False


def claim_folder(folder: str | Path, kind: str, setting: str = "out_dir") -> Path:
    """Make ``folder`` an output folder of ``kind`` that DeepOrb may fill and prune.

    A new or empty folder is created and marked; one already marked for ``kind`` is reused.
    Anything else (a folder of someone's files, or DeepOrb's of another kind, or a file) is
    refused with one line: DeepOrb never overwrites or deletes what it did not write.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{setting}={str(folder)!r} is a file, not a folder; pass {setting}=PATH to a new folder")
    if owned_folder(folder, kind):
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.iterdir()):
            raise UserError(
                f"{setting}={str(folder)!r} already holds files DeepOrb did not write there; "
                f"pass {setting}=PATH to a new or empty folder"
            )
        atomic_write_text(folder / MARKER, kind + "\n")
    except OSError as e:
        raise UserError(f"cannot write {setting}={str(folder)!r}: {e.strerror or e}; pass a writable {setting}=PATH") from None
    return folder


def find_files(folder: Path, suffixes, unreadable: list[tuple[Path, str]] | None = None,
               hidden: bool = True) -> list[Path]:
    """Files under ``folder`` whose suffix (any case) is one of ``suffixes``, sorted for a
    stable order; ``hidden=False`` leaves out names starting with a dot, folders too.

    A subfolder that cannot be listed is never skipped in silence (as ``Path.rglob`` would):
    it is added to ``unreadable`` as (path, reason) when a list is given, else its
    :class:`OSError` is raised; ``folder`` itself unreadable always raises.
    """
    folder = Path(folder)

    def cannot_list(error: OSError) -> None:
        if unreadable is None or Path(error.filename) == folder:
            raise error
        unreadable.append((Path(error.filename), error.strerror or str(error)))

    found = []
    for root, dirs, names in os.walk(folder, onerror=cannot_list):
        if not hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += (Path(root, n) for n in names if os.path.splitext(n)[1].lower() in suffixes
                  and (hidden or not n.startswith(".")))
    if unreadable:
        unreadable.sort()  # walk order is the file system's: sort for a stable manifest
    return sorted(p for p in found if p.is_file())
