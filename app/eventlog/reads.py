"""Reading the log back: by position for the projector and export, by entity for a rebuild."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

import msgspec

from app.eventlog import erasure
from app.eventlog.rows import EVENT_COLUMN_LIST, StoredEvent
from app.eventlog.schema import open_log

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Iterator
    from pathlib import Path

SELECT_HEAD = "SELECT COALESCE(MAX(position), 0) FROM events"
SELECT_COUNT = "SELECT COUNT(*) FROM events"
# Signed rows only: the service's own rows (sync snapshots) have an empty signature.
SELECT_LAST_DELIVERY = (
    "SELECT received_at FROM events WHERE signature != '' ORDER BY position DESC LIMIT 1"
)
SELECT_AFTER = (
    f"SELECT {EVENT_COLUMN_LIST} FROM events WHERE position > ? ORDER BY position LIMIT ?"
)
SELECT_RANGE = (
    f"SELECT {EVENT_COLUMN_LIST} FROM events WHERE position > ? AND position <= ? "
    "ORDER BY position LIMIT ?"
)


class LogReader:
    """Reads events in position order, or grouped by entity; never writes an event."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, path: Path, *, synchronous: str = "FULL") -> Self:
        """Open (or create) the log file at `path`."""
        return cls(open_log(path, synchronous=synchronous))

    def close(self) -> None:
        """Close the connection; a WAL checkpoint happens on the last close."""
        self._conn.close()

    def head(self) -> int:
        """The position of the newest event, 0 for an empty log."""
        return int(self._conn.execute(SELECT_HEAD).fetchone()[0])

    def count(self) -> int:
        """How many events the log holds."""
        return int(self._conn.execute(SELECT_COUNT).fetchone()[0])

    def last_delivery_at(self) -> str | None:
        """When the newest webhook delivery was accepted; None if none ever was.

        A suspended endpoint shows as this growing old while `sync` keeps the log busy.
        """
        row = self._conn.execute(SELECT_LAST_DELIVERY).fetchone()
        return None if row is None else str(row[0])

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
            f"{EVENT_COLUMN_LIST} FROM events WHERE position <= ? AND event_type IN ({marks}) "
            "ORDER BY entity, position",
            (key_path, until, *types),
        )
        return ((row[0], StoredEvent(*row[1:])) for row in rows)

    def events_of(
        self,
        event_types: Iterable[str],
        key_path: str,
        keys: Iterable[str],
        *,
        after: int = 0,
        until: int | None = None,
    ) -> list[StoredEvent]:
        """The events of `event_types` whose key (the value at `key_path`) is one of `keys`.

        In position order, after `after` and at most `until`: every event of a few entities.
        """
        text = "CAST(payload AS TEXT)"
        rows = self._conn.execute(
            f"SELECT {EVENT_COLUMN_LIST} FROM events WHERE position > ? AND position <= ? "
            "AND event_type IN (SELECT value FROM json_each(?)) "
            f"AND json_valid({text}) "
            f"AND json_extract({text}, ?) IN (SELECT value FROM json_each(?)) ORDER BY position",
            (
                after,
                self.head() if until is None else until,
                msgspec.json.encode(sorted(event_types)).decode(),
                key_path,
                msgspec.json.encode(sorted(keys)).decode(),
            ),
        )
        return [StoredEvent(*row) for row in rows]

    def forgotten_entities(self, after_row: int = 0) -> list[tuple[int, str, str]]:
        """(rowid, kind, key) of the entities a forget named, added after `after_row`."""
        return erasure.forgotten_entities(self._conn, after_row)

    def redacted_positions(self) -> set[int]:
        """The positions of the rows `forget` redacted."""
        return erasure.redacted_positions(self._conn)

    def mark_redacted(self, webhook_ids: Iterable[str]) -> int:
        """Name the rows of `webhook_ids` in `redactions` (they came redacted); how many."""
        return erasure.mark_imported(self._conn, webhook_ids)

    def iter_all(self, batch_size: int = 5000) -> Iterator[StoredEvent]:
        """Every event in position order, read in batches so memory stays flat."""
        after = 0
        while batch := self.read(after, batch_size):
            yield from batch
            after = batch[-1].position
