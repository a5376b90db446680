"""The product's files: private to its user (SPEC §4), and the lock files in the data directory.

The log and the projections hold customers' names, addresses and messages. So a data
directory the product creates is 0700 and every file it writes is 0600, whatever the
caller's umask: the CLI runs every command under `PRIVATE_UMASK`, and the files that
matter are also created with their mode explicitly, so that a library caller (a test,
another tool) gets the same. SQLite gives a database's `-wal` and `-shm` files the
database file's own mode, so creating the database 0600 is enough for all three.

Like PostgreSQL and ssh, the product refuses to work with files that others can read
rather than quietly changing them: `exposures` and `secret_file_exposure` find them, and
each `Exposure` names the `chmod` that fixes it. A shared directory (group may read,
never write; others nothing) is accepted only when the operator asks for it.

A lock file (one rebuild, one sync at a time) is refused rather than queued. It is a
POSIX record lock (`fcntl.lockf`), not an `flock`: both go with the process, so a killed
holder leaves the file, never the lock, but an `flock` belongs to the open file, which a
forked child (a rebuild's workers) inherits and keeps holding after its parent is
killed, while a record lock is never inherited. Record locks do not exclude each other
within one process, and closing any descriptor of the file releases them, so `holding`
also keeps the process's own held locks and refuses a second one without opening the
file.

This module is a leaf, importable by every layer: it knows files, not settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import shlex
import stat
import threading
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
# What `--allow-shared-data-dir` adds: the group may read (and enter the directory).
SHARED_DIR_MODE = 0o750
SHARED_FILE_MODE = 0o640


def make_private_dir(path: Path) -> None:
    """Create the directory 0700 unless it exists; an existing one is left as it is.

    An existing directory's mode is the operator's decision: it is checked, not changed.
    Missing parents are created with the process's umask, like `mkdir -p`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        return
    path.chmod(DIR_MODE)  # `mkdir`'s mode is masked by the umask; this is not


def create_private_file(path: Path) -> None:
    """Create an empty file 0600; `FileExistsError` if there is one already.

    For a SQLite database, call it before the first connection: SQLite then takes the
    empty file as a new database and gives its side files the same mode. Exclusive
    creation also makes it the way to refuse overwriting a file (a backup's target).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def open_private(path: Path) -> BinaryIO:
    """Open the file for writing from empty, made 0600 even if it existed wider."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "wb")


@dataclasses.dataclass(frozen=True, slots=True)
class Exposure:
    """A path that other users can reach, and the `chmod` that makes it private again."""

    path: Path
    mode: int
    fix_mode: int
    # Whether the mode is wider than private but within what a shared directory allows.
    shared_only: bool

    @property
    def fix(self) -> str:
        """The command that fixes it, ready to paste."""
        return f"chmod {self.fix_mode:o} {shlex.quote(str(self.path))}"

    def describe(self) -> str:
        """One sentence: which path, its mode, who can reach it, and the fix."""
        who = "its group" if self.shared_only else "other users"
        return f"{self.path} is {self.mode:04o}, open to {who}: run `{self.fix}`"


def exposures(data_dir: Path, *, shared: bool = False) -> list[Exposure]:
    """What in the data directory (itself and each entry in it) is wider than it may be.

    Private means 0700 for directories and 0600 for files; with `shared`, the group may
    also read (0750, 0640), but never write, and others never get anything. Every entry
    is checked, not only the databases: whatever the product writes there is private. A
    missing directory exposes nothing: the product will create it private.
    """
    found = []
    for path in (data_dir, *_entries(data_dir)):
        try:
            status = path.stat()
        except FileNotFoundError:  # gone meanwhile, or a dangling symlink
            continue
        exposure = _exposure(
            path, stat.S_IMODE(status.st_mode), is_dir=stat.S_ISDIR(status.st_mode), shared=shared
        )
        if exposure is not None:
            found.append(exposure)
    return found


def secret_file_exposure(path: Path) -> Exposure | None:
    """The exposure of a file holding a secret, if anyone but its owner can reach it.

    Stricter than the data directory: no flag lets its group read it, as ssh treats a
    private key.
    """
    return _exposure(path, stat.S_IMODE(path.stat().st_mode), is_dir=False, shared=False)


def file_modes(data_dir: Path) -> dict[str, int]:
    """The mode of the data directory (under '.') and of each entry in it, by name."""
    modes = {".": stat.S_IMODE(data_dir.stat().st_mode)}
    for path in _entries(data_dir):
        try:
            modes[path.name] = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
    return modes


def _entries(data_dir: Path) -> Iterable[Path]:
    try:
        return sorted(data_dir.iterdir())
    except FileNotFoundError:
        return []


def _exposure(path: Path, mode: int, *, is_dir: bool, shared: bool) -> Exposure | None:
    private = DIR_MODE if is_dir else FILE_MODE
    shareable = SHARED_DIR_MODE if is_dir else SHARED_FILE_MODE
    if not mode & ~private & 0o077:
        return None
    within_shared = not mode & ~shareable & 0o077
    if shared and within_shared:
        return None
    return Exposure(
        path=path,
        mode=mode,
        fix_mode=shareable if shared else private,
        shared_only=within_shared,
    )


# The lock files this process holds, by (device, inode), with the holding process's id:
# a forked child inherits this memory but never the locks themselves.
_held: dict[tuple[int, int], int] = {}
_held_guard = threading.Lock()


@contextlib.contextmanager
def holding(lock: Path, busy: Exception) -> Iterator[None]:
    """Hold the lock file `lock` (in a private directory); raise `busy` if it is held."""
    make_private_dir(lock.parent)
    with _held_guard:
        # Checked before opening: closing a descriptor of a file this process holds a
        # record lock on would release that lock.
        if _held_here(lock):
            raise busy
        handle = open_private(lock)
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno not in {errno.EACCES, errno.EAGAIN}:
                raise
            raise busy from None
        status = os.fstat(handle.fileno())
        key = (status.st_dev, status.st_ino)
        _held[key] = os.getpid()
    try:
        yield
    finally:
        with _held_guard:
            del _held[key]
            handle.close()


def _held_here(lock: Path) -> bool:
    try:
        status = lock.stat()
    except FileNotFoundError:
        return False
    return _held.get((status.st_dev, status.st_ino)) == os.getpid()
