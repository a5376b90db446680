"""The signature memory: which event type each authentic signature digest is bound to.

BitByBit does not sign the event header, so the same signature under another event type
is a replay (SPEC §3). Every digest of an authentic delivery is a row of
`accepted_digests`, duplicates' included (BitByBit signs each retry anew, and a captured
retry must not come back as another type under a new id), appended in log order: a
table keyed by the digest put each new row on a random page, and those pages were half
of what every commit wrote. Rows are found by signing second instead (a replay carries
the same `t`), and the seconds being looked up are kept in memory, kept current at each
batch from the rows appended since (by this process or another, such as an import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable

DDL = """
CREATE TABLE IF NOT EXISTS accepted_digests (
    signed_at INTEGER NOT NULL,
    digest TEXT NOT NULL,
    event_type TEXT NOT NULL,
    position INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS accepted_digests_by_signed_at ON accepted_digests (signed_at);
-- Append-only like the log itself; the memory below relies on rows never going away.
CREATE TRIGGER IF NOT EXISTS accepted_digests_refuse_update BEFORE UPDATE ON accepted_digests
BEGIN SELECT RAISE(ABORT, 'accepted digests are append-only: they cannot be updated'); END;
CREATE TRIGGER IF NOT EXISTS accepted_digests_refuse_delete BEFORE DELETE ON accepted_digests
BEGIN SELECT RAISE(ABORT, 'accepted digests are append-only: they cannot be deleted'); END;
"""
INSERT = (
    "INSERT INTO accepted_digests (signed_at, digest, event_type, position) VALUES (?, ?, ?, ?)"
)


class SignatureMemory:
    """The accepted digests of the signing seconds looked up lately, by second.

    Used only inside the log's write transaction, which is what keeps it exact: no other
    writer can append meanwhile, and each lookup first takes in every row appended since
    the last one. A second not in memory is read from the table whole. What it took in
    of a transaction that is then rolled back is not in the table: `forget` drops it all.
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
        lookup need not read them back. Should the transaction roll back, `forget`.
        """
        for signed_at, digest, event_type, _position in rows:
            self._take_in(signed_at, digest, event_type)
            self._last_row += 1

    def forget(self) -> None:
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
