"""How this product opens SQLite: for writing, read-only, and a write transaction.

Both files (the log and the projections) are WAL databases with explicit transactions
(`isolation_level=None`): every write transaction is a `BEGIN IMMEDIATE`, which takes
the write lock up front, so a transaction never fails halfway on a lock it could not
upgrade.

Commands that only look (status, events, backup, sync's reads) open the files with
`mode=ro`: nothing can be written, and the WAL's newest commits show. Not `immutable=1`:
that skips the `-wal` file, so a live log would look older than it is, or empty.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from app.files import create_private_file

if TYPE_CHECKING:
    from collections.abc import Iterator


def connect(path: Path | str, *, synchronous: str, timeout_seconds: float) -> sqlite3.Connection:
    """A connection in WAL mode with explicit transactions and the given durability.

    `timeout_seconds` is how long a statement waits for another process's write lock.
    A file that does not exist yet is created 0600 first, and SQLite gives its `-wal` and
    `-shm` files that mode too: the databases hold personal data.
    """
    if os.fspath(path) != ":memory:":
        # It exists already, or SQLite says in its own words why it cannot be opened.
        with contextlib.suppress(OSError):
            create_private_file(Path(path))
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=timeout_seconds
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back if anything in the block raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        rollback_if_open(conn)
        raise


def rollback_if_open(conn: sqlite3.Connection) -> None:
    """Abandon the open transaction, unless SQLite already did.

    SQLite rolls back by itself on some errors (SQLITE_FULL, SQLITE_IOERR); a second
    ROLLBACK would fail with "no transaction is active" and hide the real cause.
    """
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def read_only_uri(path: Path) -> str:
    """The URI that opens `path` read-only (for `sqlite3`, `aiosqlite` and `ATTACH`)."""
    return f"{path.resolve().as_uri()}?mode=ro"


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection to `path` that can write nothing and sees the WAL's newest commits."""
    return sqlite3.connect(read_only_uri(path), uri=True)
