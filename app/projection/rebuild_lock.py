"""The data directory's rebuild lock: one rebuild (or `--check`) at a time."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from app.files import holding

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class RebuildError(Exception):
    """A rebuild cannot start: unknown projection names, or another rebuild running."""


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's rebuild lock; a second rebuild refuses at once."""
    # `forget` and serve's forget sweep hold it too: the scratch copies would hold what
    # they erase.
    busy = RebuildError(
        f"another rebuild, or a forget, is running on {data_dir}; wait for it to finish"
    )
    with holding(data_dir / "rebuild.lock", busy):
        yield
