"""Appending to the event log: the append-only table of every authentic delivery, kept forever.

One writer owns the transactions (see `app.eventlog.group_commit`), so a batch either
commits whole or not at all, and a duplicate in the middle of a batch can never roll
back its neighbours.
"""

from __future__ import annotations

import enum
import sqlite3
from typing import TYPE_CHECKING, TypeVar

import msgspec

from app.eventlog.reads import SELECT_HEAD, LogReader
from app.eventlog.rows import ROW_COLUMN_LIST, Delivery
from app.eventlog.schema import BUSY_TIMEOUT_MS, INSERT_DIGEST
from app.sqlite import rollback_if_open

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

INSERT_EVENT = f"INSERT INTO events (position, {ROW_COLUMN_LIST}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_CONFLICT = (
    f"INSERT INTO conflicting_duplicates (logged_position, {ROW_COLUMN_LIST}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# A page of zeros: the probe needs about the room a small delivery does, so a log that
# cannot grow fails it.
WRITE_PROBE = (
    "INSERT OR REPLACE INTO write_probe (id, probed_at, room) VALUES (1, ?, zeroblob(4096))"
)

# SQLite's limit on host parameters is 32766 by default (999 before 3.32); stay below it.
_LOOKUP_CHUNK = 500
_ROWS_PER_INSERT = 100  # at most 8 values a row: 800 parameters

T = TypeVar("T")


class StoreUnavailableError(Exception):
    """The log could not be written (disk full, I/O error, locked): nothing was stored."""


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


class EventStore(LogReader):
    """Appends deliveries in batches, each batch one transaction, and reads like a reader.

    Only one writer appends at a time (the group commit, or an import), so the
    duplicate and replay checks of a batch are decided against a log nobody else changes.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self._signatures = SignatureMemory()

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
        return self.begin_within(0)

    def begin_within(self, seconds: float) -> bool:
        """Take the write lock, waiting at most `seconds` for another writer to let it go.

        False when it is still held then: the caller answers in time rather than wait
        the whole busy timeout. Nothing is written either way until a True.
        """
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {max(int(seconds * 1000), 0)}")
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
        self._signatures.drop()
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
                events.append((position, *d.row()))
                logged[d.webhook_id] = (position, event_type, d.payload)
            elif known[2] is None or known[2] == d.payload:
                # A redacted row cannot be compared with what BitByBit (or sync) sends
                # again; keeping the new body aside would bring the erased values back.
                at, bound_type, _ = known
                outcome = Outcome.DUPLICATE
            else:
                at, outcome = known[0], Outcome.CONFLICTING_DUPLICATE
                conflicts.append((at, *d.row()))
            for digest in d.digests:
                if (signed_at, digest) not in digest_types:
                    digest_types[signed_at, digest] = bound_type
                    digests.append((signed_at, digest, bound_type, at))
            results.append(AppendResult(outcome, at))
        _insert_rows(conn, INSERT_EVENT, events)
        _insert_rows(conn, INSERT_DIGEST, digests)
        self._signatures.appended(digests)
        _insert_rows(conn, INSERT_CONFLICT, conflicts)
        return results

    def _logged(self, webhook_ids: list[str]) -> dict[str, tuple[int, str, bytes | None]]:
        """(position, event type, payload) of each of `webhook_ids` already in the log.

        The payload is None for a row `forget` redacted.
        """
        found: dict[str, tuple[int, str, bytes | None]] = {}
        for chunk in _chunks(webhook_ids):
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                "SELECT webhook_id, position, event_type, CASE WHEN position IN "
                "(SELECT position FROM redactions) THEN NULL ELSE payload END FROM events "
                f"WHERE webhook_id IN ({marks})",
                chunk,
            )
            found.update((w, (p, t, b)) for w, p, t, b in rows)
        return found

    def _digest_types(self, batch: Sequence[Delivery]) -> dict[tuple[int, str], str]:
        """The event types already logged under any of the batch's (signed_at, digest) keys."""
        keys = {(d.signed_at, digest) for d in batch for digest in d.digests}
        return self._signatures.event_types(self._conn, keys)


class SignatureMemory:
    """The accepted digests of the signing seconds looked up lately, by second.

    BitByBit does not sign the event header, so the same signature under another event type
    is a replay (SPEC §3). Every digest of an authentic delivery is a row of
    `accepted_digests`, duplicates' included (BitByBit signs each retry anew, and a captured
    retry must not come back as another type under a new id), appended in log order: a
    table keyed by the digest put each new row on a random page, and those pages were half
    of what every commit wrote. Rows are found by signing second instead (a replay carries
    the same `t`), and the seconds being looked up are kept in memory, kept current at each
    batch from the rows appended since (by this process or another, such as an import).

    Used only inside the log's write transaction, which is what keeps it exact: no other
    writer can append meanwhile, and each lookup first takes in every row appended since
    the last one. A second not in memory is read from the table whole. What it took in
    of a transaction that is then rolled back is not in the table: `drop` empties it.
    """

    # Live deliveries are signed within a second or two of now; a few more cover the
    # stragglers. Memory holds at most this many seconds' worth of digests.
    MAX_SECONDS = 16
    MAX_CATCH_UP_ROWS = 10_000

    def __init__(self) -> None:
        self._seconds: dict[int, dict[str, str]] = {}
        self._last_row = 0

    def event_types(
        self, conn: sqlite3.Connection, keys: Iterable[tuple[int, str]]
    ) -> dict[tuple[int, str], str]:
        """The event type each of the (signed_at, digest) `keys` was accepted with, if any."""
        self._catch_up(conn)
        found: dict[tuple[int, str], str] = {}
        # By second: a batch spanning more seconds than memory holds reads each once.
        for signed_at, digest in sorted(keys):
            event_type = self._second(conn, signed_at).get(digest)
            if event_type is not None:
                found[signed_at, digest] = event_type
        return found

    def appended(self, rows: Iterable[tuple[int, str, str, int]]) -> None:
        """Take in the rows this transaction just appended, right after `event_types`.

        They follow the newest row that lookup took in (a rowid table numbers new rows
        from its largest rowid up, and nobody else can append meanwhile), so the next
        lookup need not read them back. Should the transaction roll back, `drop`.
        """
        for signed_at, digest, event_type, _position in rows:
            self._take_in(signed_at, digest, event_type)
            self._last_row += 1

    def drop(self) -> None:
        """Drop everything held; it is read from the table again as it is looked up."""
        self._seconds.clear()

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        rows = []
        if self._seconds:
            rows = conn.execute(
                "SELECT rowid, signed_at, digest, event_type FROM accepted_digests "
                "WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (self._last_row, self.MAX_CATCH_UP_ROWS),
            ).fetchall()
        if not self._seconds or len(rows) == self.MAX_CATCH_UP_ROWS:
            # Nothing held to update, or too much to take in (a large import ran): start
            # afresh from the newest row, and read seconds again as they are looked up.
            self._seconds.clear()
            self._last_row = conn.execute(
                "SELECT COALESCE(MAX(rowid), 0) FROM accepted_digests"
            ).fetchone()[0]
            return
        for row, signed_at, digest, event_type in rows:
            self._take_in(signed_at, digest, event_type)
            self._last_row = row

    def _take_in(self, signed_at: int, digest: str, event_type: str) -> None:
        """Note an appended row in its second, if that second is held (else it is read whole)."""
        second = self._seconds.get(signed_at)
        if second is not None:
            second.setdefault(digest, event_type)

    def _second(self, conn: sqlite3.Connection, signed_at: int) -> dict[str, str]:
        second = self._seconds.get(signed_at)
        if second is None:
            second = {}
            rows = conn.execute(
                "SELECT digest, event_type FROM accepted_digests "
                "WHERE signed_at = ? ORDER BY rowid",
                (signed_at,),
            )
            for digest, event_type in rows:
                second.setdefault(digest, event_type)
            if len(self._seconds) >= self.MAX_SECONDS:
                del self._seconds[min(self._seconds)]
            self._seconds[signed_at] = second
        return second


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
