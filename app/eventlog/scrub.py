"""Leaving no trace of rewritten or deleted content in a SQLite file and its WAL.

SQLite keeps what a row held before an UPDATE or DELETE: in the page's free space, on
freelist pages, in stale copies a page split left behind, and in the WAL's frames until
the WAL is truncated. `PRAGMA secure_delete` zeroes what a statement frees, but not the
copies earlier statements left. So, after the rewrite (made with `secure_delete` on):
`VACUUM` rebuilds every page of the file from its live rows alone, and a
`wal_checkpoint(TRUNCATE)` copies those pages into the file and cuts the WAL to zero
bytes. The checkpoint waits (the connection's busy timeout) for readers still reading
an older snapshot; a reader that holds one longer leaves the old frames in the WAL, and
`scrub` says so rather than claim success.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

TRUNCATE_SECONDS = 30.0
RETRY_SECONDS = 0.05


class ScrubError(Exception):
    """The WAL could not be truncated: a reader holds an old snapshot of the file."""


def secure(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Make `conn` zero whatever its statements free (content, then freelist pages)."""
    conn.execute("PRAGMA secure_delete = ON")
    return conn


def scrub(conn: sqlite3.Connection, name: str) -> None:
    """Rebuild the file of `conn` from its live rows, then empty its WAL.

    Holds the file's write lock for as long as VACUUM takes: writers wait meanwhile.
    """
    secure(conn)
    conn.execute("VACUUM")
    truncate_wal(conn, name)


def truncate_wal(conn: sqlite3.Connection, name: str, seconds: float = TRUNCATE_SECONDS) -> None:
    """Checkpoint the whole WAL into the file and cut the WAL to zero bytes.

    A checkpoint another connection runs at that moment (an automatic one) makes SQLite
    answer busy at once, without waiting, so it is tried again until `seconds` are up.
    """
    deadline = time.monotonic() + seconds
    while conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
        if time.monotonic() > deadline:
            raise ScrubError(
                f"{name}: another connection keeps reading an old snapshot, so its WAL still "
                "holds the old content; close long-running readers (sqlite3 shells) and run "
                "forget again"
            )
        time.sleep(RETRY_SECONDS)  # a pause between attempts, not a synchronisation
