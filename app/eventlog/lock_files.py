"""Lock files in the data directory: one rebuild, one sync at a time, refused rather than queued.

An `flock` goes with the process: a killed holder leaves the file, never the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
from typing import TYPE_CHECKING

from app.eventlog.private_files import make_private_dir, open_private

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@contextlib.contextmanager
def holding(lock: Path, busy: Exception) -> Iterator[None]:
    """Hold the lock file `lock` (in a private directory); raise `busy` if it is held."""
    make_private_dir(lock.parent)
    with open_private(lock) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        yield
