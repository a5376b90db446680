"""Read-only connections for the commands that look at the files while `serve` writes them."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open `path` with `mode=ro`: nothing can be written, and the WAL's newest commits show.

    Not `immutable=1`: that skips the `-wal` file, so a live log would look older than
    it is, or empty.
    """
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
