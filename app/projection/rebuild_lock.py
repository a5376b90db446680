"""The data directory's rebuild lock: one rebuild (or `--check`) at a time."""

from __future__ import annotations

import contextlib
import fcntl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class RebuildError(Exception):
    """A rebuild cannot start: unknown projection names, or another rebuild running."""


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's rebuild lock; a second rebuild refuses at once."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "rebuild.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RebuildError(
                f"another rebuild is running on {data_dir}; wait for it to finish"
            ) from None
        yield
