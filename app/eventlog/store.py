"""The event log: an append-only SQLite table of every authentic delivery, kept forever.

Knows nothing of HTTP or projections. One writer owns the transactions (see
`app.eventlog.group_commit`), so a batch either commits whole or not at all, and a duplicate in the
middle of a batch can never roll back its neighbours.
"""

from __future__ import annotations

import enum
import sqlite3
from typing import TYPE_CHECKING, TypeVar

import msgspec

from app.eventlog import signature_memory

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
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
CREATE TRIGGER IF NOT EXISTS events_refuse_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only: events cannot be updated'); END;
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

_COLUMNS = "webhook_id, event_type, event_timestamp, signed_at, received_at, signature, payload"
INSERT_EVENT = f"INSERT INTO events (position, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_CONFLICT = (
    f"INSERT INTO conflicting_duplicates (logged_position, {_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# A page of zeros: the probe needs about the room a small delivery does, so a log that
# cannot grow fails it.
WRITE_PROBE = (
    "INSERT OR REPLACE INTO write_probe (id, probed_at, room) VALUES (1, ?, zeroblob(4096))"
)
SELECT_HEAD = "SELECT COALESCE(MAX(position), 0) FROM events"
SELECT_COUNT = "SELECT COUNT(*) FROM events"
SELECT_AFTER = (
    f"SELECT position, {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
)
SELECT_RANGE = (
    f"SELECT position, {_COLUMNS} FROM events WHERE position > ? AND position <= ? "
    "ORDER BY position LIMIT ?"
)

# SQLite's limit on host parameters is 32766 by default (999 before 3.32); stay below it.
_LOOKUP_CHUNK = 500
_ROWS_PER_INSERT = 100  # at most 8 values a row: 800 parameters
# How long a writer waits for another one (an import, a backup) to release the log.
BUSY_TIMEOUT_MS = 30_000

T = TypeVar("T")


class StoreUnavailableError(Exception):
    """The log could not be written (disk full, I/O error, locked): nothing was stored."""


class Delivery(msgspec.Struct, frozen=True):
    """One authentic delivery, as it will be kept (a Struct: one per request, C init)."""

    webhook_id: str
    event_type: str
    event_timestamp: int | None
    signed_at: int
    received_at: str
    signature: str
    payload: bytes
    digests: tuple[str, ...]


class StoredEvent(msgspec.Struct, frozen=True):
    """One row of the log (a Struct: a rebuild makes millions, and its init is C)."""

    position: int
    webhook_id: str
    event_type: str
    event_timestamp: int | None
    signed_at: int
    received_at: str
    signature: str
    payload: bytes


class Outcome(enum.Enum):
    """What appending one delivery did."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICTING_DUPLICATE = "conflicting_duplicate"
    SIGNATURE_REPLAYED = "signature_replayed"


class AppendResult(msgspec.Struct, frozen=True):
    """The outcome of one delivery and the log position it is (or already was) at."""

    outcome: Outcome
    position: int | None


def connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open the log in WAL mode with explicit transactions, creating it if needed.

    `synchronous=FULL` makes every commit reach the disk before it returns: the endpoint
    answers 200 only after that.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.executescript(DDL)
    conn.executescript(signature_memory.DDL)
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
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _has_old_digests(conn):  # unless another process moved them meanwhile
            conn.execute(
                "INSERT INTO accepted_digests (signed_at, digest, event_type, position) "
                "SELECT events.signed_at, old.digest, old.event_type, old.position "
                "FROM signature_digests AS old JOIN events USING (position) "
                "ORDER BY old.position"
            )
            conn.execute("DROP TABLE signature_digests")
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


def _has_old_digests(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("PRAGMA table_info(signature_digests)").fetchall())


class EventStore:
    """Appends deliveries in batches and reads them back in position order."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._signatures = signature_memory.SignatureMemory()

    @classmethod
    def open(cls, path: Path, *, synchronous: str = "FULL") -> EventStore:
        """Open (or create) the log file at `path`."""
        return cls(connect(path, synchronous=synchronous))

    def close(self) -> None:
        """Close the connection; a WAL checkpoint happens on the last close."""
        self._conn.close()

    def append(self, batch: Sequence[Delivery]) -> list[AppendResult]:
        """Append a batch in one transaction; one result per delivery, in order.

        Duplicates and replays are decided in memory against one lookup per batch, so a
        batch costs a handful of statements however many deliveries it holds.
        """
        self.begin()
        try:
            results = self.append_in_transaction(batch)
            self.commit()
        except BaseException:
            self.rollback()
            raise
        return results

    def begin(self) -> None:
        """Take the log's write lock (waiting for another writer, such as an import)."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailableError(str(exc)) from exc

    def try_begin(self) -> bool:
        """Take the write lock if it is free right now; False if another writer holds it.

        Never waits: the caller decides where waiting may happen (not on an event loop).
        """
        conn = self._conn
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            # The extended code: SQLITE_BUSY_RECOVERY (another process recovering the WAL
            # after a crash) is a wait like any other.
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                return False
            raise StoreUnavailableError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StoreUnavailableError(str(exc)) from exc
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return True

    def commit(self) -> None:
        """Make the open transaction durable; with `synchronous=FULL` this waits for fsync."""
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.rollback()
            raise StoreUnavailableError(str(exc)) from exc

    def rollback(self) -> None:
        """Abandon the open transaction (if SQLite has not already), and what it took in."""
        self._signatures.forget()
        rollback_if_open(self._conn)

    def append_in_transaction(self, batch: Sequence[Delivery]) -> list[AppendResult]:
        """Write a batch inside a transaction opened by `begin`; one result per delivery."""
        try:
            return self._append_in_transaction(batch)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(str(exc)) from exc

    def write_probe(self, probed_at: str) -> None:
        """Rewrite the probe row inside a transaction opened by `begin`."""
        try:
            self._conn.execute(WRITE_PROBE, (probed_at,))
        except sqlite3.Error as exc:
            raise StoreUnavailableError(str(exc)) from exc

    def _append_in_transaction(self, batch: Sequence[Delivery]) -> list[AppendResult]:
        conn = self._conn
        logged = self._logged(list({d.webhook_id for d in batch}))
        digest_types = self._digest_types(batch)
        position = conn.execute(SELECT_HEAD).fetchone()[0]
        events: list[tuple[object, ...]] = []
        digests: list[tuple[int, str, str, int]] = []
        conflicts: list[tuple[object, ...]] = []
        results: list[AppendResult] = []
        for d in batch:
            signed_at, event_type = d.signed_at, d.event_type
            if any(digest_types.get((signed_at, g), event_type) != event_type for g in d.digests):
                results.append(AppendResult(Outcome.SIGNATURE_REPLAYED, None))
                continue
            # The type each new signature is bound to: the one it came with, except that
            # the same delivery again (such as a retry BitByBit signed anew) is bound to
            # the type the log holds it under, so a captured retry cannot be relabelled
            # under a new webhook id.
            bound_type = event_type
            known = logged.get(d.webhook_id)
            if known is None:
                position += 1
                at, outcome = position, Outcome.ACCEPTED
                events.append((position, *_row(d)))
                logged[d.webhook_id] = (position, event_type, d.payload)
            elif known[2] == d.payload:
                at, bound_type, _ = known
                outcome = Outcome.DUPLICATE
            else:
                at, outcome = known[0], Outcome.CONFLICTING_DUPLICATE
                conflicts.append((at, *_row(d)))
            for digest in d.digests:
                if (signed_at, digest) not in digest_types:
                    digest_types[signed_at, digest] = bound_type
                    digests.append((signed_at, digest, bound_type, at))
            results.append(AppendResult(outcome, at))
        _insert_rows(conn, INSERT_EVENT, events)
        _insert_rows(conn, signature_memory.INSERT, digests)
        self._signatures.appended(digests)
        _insert_rows(conn, INSERT_CONFLICT, conflicts)
        return results

    def _logged(self, webhook_ids: list[str]) -> dict[str, tuple[int, str, bytes]]:
        """(position, event type, payload) of each of `webhook_ids` already in the log."""
        found: dict[str, tuple[int, str, bytes]] = {}
        for chunk in _chunks(webhook_ids):
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                "SELECT webhook_id, position, event_type, payload FROM events "
                f"WHERE webhook_id IN ({marks})",
                chunk,
            )
            found.update((w, (p, t, b)) for w, p, t, b in rows)
        return found

    def _digest_types(self, batch: Sequence[Delivery]) -> dict[tuple[int, str], str]:
        """The event types already logged under any of the batch's (signed_at, digest) keys."""
        keys = {(d.signed_at, digest) for d in batch for digest in d.digests}
        return self._signatures.event_types(self._conn, keys)

    def head(self) -> int:
        """The position of the newest event, 0 for an empty log."""
        return int(self._conn.execute(SELECT_HEAD).fetchone()[0])

    def count(self) -> int:
        """How many events the log holds."""
        return int(self._conn.execute(SELECT_COUNT).fetchone()[0])

    def count_other_types(self, known: Iterable[str]) -> int:
        """How many events have an event type outside `known` (kept, but projected nowhere)."""
        types = list(known)
        marks = ",".join("?" * len(types))
        row = self._conn.execute(
            f"SELECT COUNT(*) FROM events WHERE event_type NOT IN ({marks})", types
        ).fetchone()
        return int(row[0])

    def read(self, after: int, limit: int, *, until: int | None = None) -> list[StoredEvent]:
        """Up to `limit` events after position `after` (and at most `until`), in order."""
        if until is None:
            rows = self._conn.execute(SELECT_AFTER, (after, limit))
        else:
            rows = self._conn.execute(SELECT_RANGE, (after, until, limit))
        return [StoredEvent(*row) for row in rows]

    def events_by_entity(
        self, event_types: Iterable[str], key_path: str, until: int
    ) -> Iterator[tuple[object, StoredEvent]]:
        """(entity key, event) of the events of `event_types` up to `until`, by entity.

        The key is the value at `key_path` in the JSON payload (NULL where there is none).
        A rebuild reads the log in this order so that it folds each entity once. SQLite
        sorts in bounded memory, spilling to temporary files as the log grows.
        """
        types = list(event_types)
        marks = ",".join("?" * len(types))
        text = "CAST(payload AS TEXT)"
        rows = self._conn.execute(
            f"SELECT CASE WHEN json_valid({text}) THEN json_extract({text}, ?) END AS entity, "
            f"position, {_COLUMNS} FROM events WHERE position <= ? AND event_type IN ({marks}) "
            "ORDER BY entity, position",
            (key_path, until, *types),
        )
        return ((row[0], StoredEvent(*row[1:])) for row in rows)

    def iter_all(self, batch_size: int = 5000) -> Iterator[StoredEvent]:
        """Every event in position order, read in batches so memory stays flat."""
        after = 0
        while batch := self.read(after, batch_size):
            yield from batch
            after = batch[-1].position


def _row(d: Delivery) -> tuple[object, ...]:
    return (
        d.webhook_id,
        d.event_type,
        d.event_timestamp,
        d.signed_at,
        d.received_at,
        d.signature,
        d.payload,
    )


def _insert_rows(conn: sqlite3.Connection, insert: str, rows: Sequence[tuple[object, ...]]) -> None:
    """`insert` (ending in one VALUES tuple) for all `rows`, many rows per statement.

    Each row of `executemany` is a statement step of its own, and every step releases
    the GIL and takes it back, on the event loop's thread where the batch is written;
    a batch's rows in one statement do that once.
    """
    head, _, values = insert.partition(" VALUES ")
    for chunk in _chunks(rows, _ROWS_PER_INSERT):
        conn.execute(
            f"{head} VALUES {','.join([values] * len(chunk))}",
            [value for row in chunk for value in row],
        )


def _chunks(items: Sequence[T], size: int = _LOOKUP_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
