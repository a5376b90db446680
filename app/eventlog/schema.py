"""The log's tables, their immutability triggers, and the moves from earlier releases' layout.

`open_log` is the one way into `events.db`: whoever opens it first creates it, or brings
an earlier release's file up to date, before anything reads or writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.eventlog import redaction, signature_memory
from app.files import make_private_dir
from app.sqlite import connect, write_transaction

if TYPE_CHECKING:
    import sqlite3
    from pathlib import Path

DDL = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    webhook_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    event_timestamp INTEGER,
    signed_at INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    signature TEXT NOT NULL,
    payload BLOB NOT NULL
) STRICT;
-- UPDATE is refused by the trigger of `app.eventlog.redaction`, which lets only a
-- recorded redaction of a payload through.
CREATE TRIGGER IF NOT EXISTS events_refuse_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only: events cannot be deleted'); END;

-- One row, rewritten by each readiness probe (`/readyz`): a committed write is the only
-- proof that the log takes writes.
CREATE TABLE IF NOT EXISTS write_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at TEXT NOT NULL,
    room BLOB NOT NULL
) STRICT;

-- Deliveries whose webhook id was already logged with a different body: never dropped
-- silently, but never allowed to change the log either.
CREATE TABLE IF NOT EXISTS conflicting_duplicates (
    id INTEGER PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    logged_position INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    event_timestamp INTEGER,
    signed_at INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    signature TEXT NOT NULL,
    payload BLOB NOT NULL
) STRICT;
"""

# How long a writer waits for another one (an import, a backup) to release the log.
BUSY_TIMEOUT_MS = 30_000


def open_log(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open the log, creating it (and its directory) or bringing it up to date if needed.

    `synchronous=FULL` makes every commit reach the disk before it returns: the endpoint
    answers 200 only after that.
    """
    make_private_dir(path.parent)
    conn = connect(path, synchronous=synchronous, timeout_seconds=BUSY_TIMEOUT_MS / 1000)
    conn.executescript(DDL)
    conn.executescript(signature_memory.DDL)
    redaction.install(conn)
    _move_digests_of_earlier_releases(conn)
    return conn


def _move_digests_of_earlier_releases(conn: sqlite3.Connection) -> None:
    """Move a log's digests from the table earlier releases kept them in, in one transaction.

    That table was keyed by the digest (and by signing time before it); it has the
    digest, event type and position columns either way, and `signed_at` is taken from
    the event each row points at. The events themselves are never touched.
    """
    if not _has_old_digests(conn):
        return
    with write_transaction(conn):
        if _has_old_digests(conn):  # unless another process moved them meanwhile
            conn.execute(
                "INSERT INTO accepted_digests (signed_at, digest, event_type, position) "
                "SELECT events.signed_at, old.digest, old.event_type, old.position "
                "FROM signature_digests AS old JOIN events USING (position) "
                "ORDER BY old.position"
            )
            conn.execute("DROP TABLE signature_digests")


def _has_old_digests(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("PRAGMA table_info(signature_digests)").fetchall())
