"""Runs projections over the log: checkpoints, errors and staleness in `projections.db`.

Used by `serve` (live, right after each commit), by `rebuild` (into scratch tables) and
by `forget` (`refold`: a few entities deleted and folded again from their redacted
events, so the tables hold exactly what a rebuild of the rewritten log would).
Every step is one transaction that reads each projection's checkpoint, applies the
events after it and moves the checkpoint: a crash at any point resumes exactly where
the last commit left off, and another process (a rebuild switching tables) is never
interleaved with a half-applied batch.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from app import sqlite
from app.eventlog.erasure import Screen
from app.projection import feed
from projections import Touched, write_changes

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    from app.eventlog.reads import LogReader
    from app.eventlog.rows import StoredEvent
    from projections import Change, Fresh, Projection

log = structlog.get_logger("app.projection.projector")

BOOKKEEPING_DDL = """
-- `tables`: the tables and views the projection owns, as a JSON list, so that a rebuild
-- drops what an earlier version had even when the code no longer names it.
CREATE TABLE IF NOT EXISTS _projections (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    position INTEGER NOT NULL,
    tables TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS _projection_errors (
    projection TEXT NOT NULL,
    position INTEGER NOT NULL,
    webhook_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    error TEXT NOT NULL,
    PRIMARY KEY (projection, position)
) STRICT;
CREATE TABLE IF NOT EXISTS _projection_warnings (
    projection TEXT NOT NULL,
    position INTEGER NOT NULL,
    webhook_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    warning TEXT NOT NULL,
    PRIMARY KEY (projection, position)
) STRICT;
"""
# What `explore` and anyone reading the schema see of the tables above.
BOOKKEEPING_TABLES = {
    "_projections": (
        "Bookkeeping: each projection's version and how far into the log it has applied.",
        {
            "name": "the projection",
            "version": "the code version its tables were built with",
            "position": "the last log position applied (its checkpoint)",
            "tables": "the tables and views it owns, as JSON",
        },
    ),
    "_projection_errors": (
        "Events a projection could not apply; they stay in the log (see `errors`).",
        {
            "projection": "the projection that failed",
            "position": "the event's log position (events.position)",
            "webhook_id": "the delivery (events.webhook_id)",
            "event_type": "the delivery's event type",
            "error": "what went wrong",
        },
    ),
    "_projection_warnings": (
        (
            "Events a projection applied with a field of an unexpected shape, kept as its "
            "JSON text or (child rows that are not a list) left as they were (see `errors`)."
        ),
        {
            "projection": "the projection that applied it",
            "position": "the event's log position (events.position)",
            "webhook_id": "the delivery (events.webhook_id)",
            "event_type": "the delivery's event type",
            "warning": "which fields did not fit, and what was stored instead",
        },
    ),
    "_changes": (
        "Bookkeeping: the change feed (`changes`), one note per entity written, newest last.",
        {
            "seq": "the note's number: the feed's cursor",
            "projection": "the projection whose table changed",
            "tbl": "the entity's table ('' for a reset: the projection's tables were replaced)",
            "key": "the entity's id (the projection's name, for a reset)",
            "size": "how many child rows the entity had at most, before or after the change",
        },
    ),
    "_changes_sequence": (
        "Bookkeeping: the last number the change feed gave out.",
        {
            "id": "always 1",
            "last": "the last number given out",
            "notes": "how many notes there are, about",
            "compacted": "how many notes the last compaction left",
        },
    ),
}
SELECT_CHECKPOINTS = "SELECT name, version, position FROM _projections"
UPDATE_CHECKPOINT = "UPDATE _projections SET position = ? WHERE name = ?"
INSERT_ERROR = "INSERT OR REPLACE INTO _projection_errors VALUES (?, ?, ?, ?, ?)"
COUNT_ERRORS = "SELECT projection, COUNT(*) FROM _projection_errors GROUP BY projection"
# Events applied whole but for a field of an unexpected shape (kept as JSON text, or child
# rows left as they were): counted apart from errors, whose events changed nothing.
INSERT_WARNING = "INSERT OR REPLACE INTO _projection_warnings VALUES (?, ?, ?, ?, ?)"
COUNT_WARNINGS = "SELECT projection, COUNT(*) FROM _projection_warnings GROUP BY projection"


def connect(path: Path | str, *, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """Open a projections database in WAL mode with explicit transactions.

    `synchronous=NORMAL` is enough: the file is disposable, and a checkpoint is always
    committed with its tables, so a lost tail is simply re-applied from the log.
    Foreign keys are declared but never enforced (`projections.ForeignKey`): rows arrive
    in any order, and a rebuild drops and recreates tables that others refer to. Off is
    SQLite's default; it is set anyway, against a library built to turn it on.
    """
    conn = sqlite.connect(path, synchronous=synchronous, timeout_seconds=60)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.executescript(BOOKKEEPING_DDL)
    feed.create(conn)
    return conn


def install(conn: sqlite3.Connection, projection: Projection, *, record: bool = True) -> None:
    """Create a projection's tables and checkpoint, unless it already has them.

    With `record`, tables not yet in the change feed (new ones, or those of a release
    before the feed) are put there, in the same transaction.
    """
    with sqlite.write_transaction(conn):
        exists = conn.execute(
            "SELECT 1 FROM _projections WHERE name = ?", (projection.NAME,)
        ).fetchone()
        if not exists:
            create_tables(conn, projection)
            conn.execute(
                "INSERT INTO _projections VALUES (?, ?, 0, ?)",
                (
                    projection.NAME,
                    projection.VERSION,
                    msgspec.json.encode(owned_names(projection)).decode(),
                ),
            )
        if record and not feed.has_reset(conn, projection):
            feed.reset(conn, projection)


def owned_names(projection: Projection) -> list[str]:
    """The tables and views a projection owns, as `_projections.tables` records them."""
    return [*projection.TABLE.table_names, *projection.TABLE.view_names]


def create_tables(conn: sqlite3.Connection, projection: Projection) -> None:
    """Run a projection's DDL, views included (inside the caller's transaction).

    A view may read another projection's tables that do not exist yet (in a rebuild's
    scratch they never do): SQLite resolves a view's tables when it is read, not when
    it is created.
    """
    for statement in projection.TABLE.ddl():
        conn.execute(statement)


@dataclasses.dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """What `status`, `/readyz` and `/metrics` say about one projection."""

    name: str
    version: int
    position: int
    lag: int
    errors: int
    stale: bool
    # Beyond the SPEC's keys: events applied with a field of an unexpected shape.
    warnings: int = 0


@dataclasses.dataclass(slots=True)
class Applied:
    """What a projector has applied to one projection since it was made."""

    events: int = 0
    rows: int = 0


class Projector:
    """Applies the log to a set of projections in one database, batch by batch."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        store: LogReader,
        projections: Sequence[Projection],
        *,
        record: bool = True,
    ) -> None:
        self.conn = conn
        self.store = store
        self.projections = list(projections)
        # Whether its writes go into the change feed: not a rebuild's scratch, whose
        # tables reach the feed whole when they are switched in.
        self.record = record
        self.stats = {p.NAME: Applied() for p in self.projections}
        # Deliveries about a forgotten person are projected without their personal values.
        self._screen = Screen(store)

    def install_all(self) -> None:
        """Create what is missing; report (and leave alone) what is stale."""
        for projection in self.projections:
            install(self.conn, projection, record=self.record)

    def step(self, batch_size: int, until: int | None = None) -> int:
        """Apply the next batch to every current projection in one transaction.

        Returns how many events it read; 0 means every projection is caught up.
        """
        conn = self.conn
        with sqlite.write_transaction(conn):
            checkpoints = self._current_checkpoints()
            if not checkpoints:
                return 0
            start = min(checkpoints.values())
            events = self._screen.screen(self.store.read(start, batch_size, until=until))
            for projection in self.projections:
                position = checkpoints.get(projection.NAME)
                if position is None:
                    continue
                mine = [
                    e
                    for e in events
                    if e.position > position and e.event_type in projection.EVENT_TYPES
                ]
                if mine:
                    rows = apply_events(conn, projection, mine, record=self.record)
                    self.stats[projection.NAME].events += len(mine)
                    self.stats[projection.NAME].rows += rows
                if events and events[-1].position > position:
                    conn.execute(UPDATE_CHECKPOINT, (events[-1].position, projection.NAME))
        return len(events)

    def apply(
        self, projection: Projection, events: Sequence[StoredEvent], fresh: Fresh | None = None
    ) -> None:
        """Apply `events` to one projection in one transaction, leaving its checkpoint."""
        events = self._screen.screen(events)
        with sqlite.write_transaction(self.conn):
            rows = apply_events(self.conn, projection, events, fresh, record=self.record)
        self.stats[projection.NAME].events += len(events)
        self.stats[projection.NAME].rows += rows

    def set_checkpoints(self, position: int) -> None:
        """Record that every projection has applied the log up to `position`."""
        names = [p.NAME for p in self.projections]
        marks = ",".join("?" * len(names))
        self.conn.execute(
            f"UPDATE _projections SET position = ? WHERE name IN ({marks})", (position, *names)
        )

    def catch_up(self, batch_size: int = 2000, until: int | None = None) -> int:
        """Apply batches until every current projection has reached the head (or `until`)."""
        total = 0
        while True:
            read = self.step(batch_size, until)
            if not read:
                return total
            total += read

    def _current_checkpoints(self) -> dict[str, int]:
        """Checkpoints of the projections whose tables match the code's version."""
        built = built_versions(self.conn.execute(SELECT_CHECKPOINTS))
        return {
            p.NAME: built[p.NAME][1]
            for p in self.projections
            if p.NAME in built and not stale(p, built)
        }

    def statuses(self) -> list[ProjectionStatus]:
        """Position, lag, errors and staleness of every projection."""
        return statuses_of(
            self.projections,
            self.store.head(),
            self.conn.execute(SELECT_CHECKPOINTS).fetchall(),
            self.conn.execute(COUNT_ERRORS).fetchall(),
            count_warnings(self.conn),
        )


def built_versions(checkpoints: Iterable[tuple[Any, ...]]) -> dict[str, tuple[int, int]]:
    """(version, position) of each installed projection, from the rows of `SELECT_CHECKPOINTS`."""
    return {str(name): (int(version), int(position)) for name, version, position in checkpoints}


def stale(projection: Projection, built: dict[str, tuple[int, int]]) -> bool:
    """Whether the projection's tables were built by another version than the code's.

    Such tables are left alone (still readable) until `rebuild`: applying new events to
    them, or re-folding a forgotten person's entities, could not be exact.
    """
    return projection.NAME in built and built[projection.NAME][0] != projection.VERSION


def statuses_of(
    projections: Sequence[Projection],
    head: int,
    checkpoints: Iterable[tuple[Any, ...]],
    errors: Iterable[tuple[Any, ...]],
    warnings: Iterable[tuple[Any, ...]] = (),
) -> list[ProjectionStatus]:
    """The statuses from the rows of `SELECT_CHECKPOINTS`, `COUNT_ERRORS`, `COUNT_WARNINGS`.

    One function for the projector's own connection and the event loop's aiosqlite one.
    """
    built = built_versions(checkpoints)
    error_counts: dict[str, int] = dict(errors)
    warning_counts: dict[str, int] = dict(warnings)
    result = []
    for projection in projections:
        _, position = built.get(projection.NAME, (projection.VERSION, 0))
        result.append(
            ProjectionStatus(
                name=projection.NAME,
                version=projection.VERSION,
                position=position,
                lag=max(head - position, 0),
                errors=error_counts.get(projection.NAME, 0),
                stale=stale(projection, built),
                warnings=warning_counts.get(projection.NAME, 0),
            )
        )
    return result


def count_warnings(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """The rows of `COUNT_WARNINGS`; none in a file of a release that kept no warnings.

    `status` opens the file read-only, so the table is not created there.
    """
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE name = '_projection_warnings'"
    ).fetchone():
        return []
    return conn.execute(COUNT_WARNINGS).fetchall()


def apply_events(
    conn: sqlite3.Connection,
    projection: Projection,
    events: Sequence[StoredEvent],
    fresh: Fresh | None = None,
    *,
    record: bool = True,
) -> int:
    """Fold `events` into one projection's tables; record (and skip) any it cannot apply.

    The batch is written under a savepoint; should writing it fail, it is applied again
    one event at a time (looking every entity up) so that only the event at fault is
    recorded as an error. `fresh` is what a rebuild knows of a fresh scratch. With
    `record`, the rows written are noted in the change feed in the same transaction.
    """
    changes: list[Change] = []
    odd: list[tuple[StoredEvent, list[Change]]] = []
    for event in events:
        try:
            applied = projection.apply(event)
        except Exception as exc:  # noqa: BLE001 - any failure of one event is recorded, not fatal
            record_error(conn, projection, event, exc)
            continue
        changes.extend(applied)
        if any(change.odd for change in applied):
            odd.append((event, applied))
    if fresh is not None:
        fresh.note(changes)
    touched = Touched() if record else None
    conn.execute("SAVEPOINT batch")
    try:
        for event, applied in odd:
            record_warning(conn, projection, event, applied)
        written = write_changes(conn, projection.TABLE, changes, fresh, touched)
    except Exception as exc:
        if database_failed(exc):
            raise
        # Something in the batch SQLite would not take (an integer too large to bind,
        # say): found by applying the events one by one.
        conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
        touched = Touched() if record else None
        written = _apply_one_by_one(conn, projection, events, touched)
    else:
        conn.execute("RELEASE batch")
    if touched is not None:
        feed.record(conn, projection, touched)
    return written


def _apply_one_by_one(
    conn: sqlite3.Connection,
    projection: Projection,
    events: Sequence[StoredEvent],
    touched: Touched | None,
) -> int:
    written = 0
    for event in events:
        conn.execute("SAVEPOINT event")
        try:
            applied = projection.apply(event)
            record_warning(conn, projection, event, applied)
            mine = Touched() if touched is not None else None
            written += write_changes(conn, projection.TABLE, applied, None, mine)
            if touched is not None and mine is not None:
                touched.add(mine)
        except Exception as exc:
            if database_failed(exc):
                raise
            # The event's own fault: recorded, and the projection moves on.
            conn.execute("ROLLBACK TO event")
            record_error(conn, projection, event, exc)
        conn.execute("RELEASE event")
    return written


def database_failed(exc: Exception) -> bool:
    """Whether `exc` is the database's fault (disk full, I/O, corruption, no memory).

    Such a failure fails the whole step, to be retried; recording it against the events
    would skip them for good. Constraint and binding errors remain the event's own.
    """
    return isinstance(exc, sqlite3.OperationalError | MemoryError) or (
        type(exc) is sqlite3.DatabaseError
    )


def record_error(
    conn: sqlite3.Connection, projection: Projection, event: StoredEvent, exc: Exception
) -> None:
    """Keep what went wrong where `status`, `/metrics` and a person can find it."""
    message = f"{type(exc).__name__}: {exc}"
    conn.execute(
        INSERT_ERROR, (projection.NAME, event.position, event.webhook_id, event.event_type, message)
    )
    log.warning(
        "projection_error",
        projection=projection.NAME,
        position=event.position,
        webhook_id=event.webhook_id,
        error=message,
    )


def record_warning(
    conn: sqlite3.Connection, projection: Projection, event: StoredEvent, changes: Sequence[Change]
) -> None:
    """Keep which fields of an applied event had an unexpected shape, if any had.

    The event changed its entity by the shape rule (`projections._payloads`); this is
    where `status`, `errors` and a person find that it did not fit as sent.
    """
    odd = [reason for change in changes for reason in change.odd]
    if not odd:
        return
    message = "; ".join(odd)
    conn.execute(
        INSERT_WARNING,
        (projection.NAME, event.position, event.webhook_id, event.event_type, message),
    )
    log.warning(
        "projection_warning",
        projection=projection.NAME,
        position=event.position,
        webhook_id=event.webhook_id,
        warning=message,
    )


class StaleProjectionError(Exception):
    """A projection's tables were built by another version: re-folding them cannot be exact."""


def stale_names(conn: sqlite3.Connection, projections: Sequence[Projection]) -> list[str]:
    """The names of the projections whose tables another version built."""
    built = built_versions(conn.execute(SELECT_CHECKPOINTS))
    return [p.NAME for p in projections if stale(p, built)]


def refold(
    conn: sqlite3.Connection,
    store: LogReader,
    projections: Sequence[Projection],
    events: Iterable[tuple[str, str]],
) -> int:
    """Delete and fold again the entities named by (event type, entity key) `events`.

    Returns how many entities were re-folded. `conn` should be `secure` (zeroing what
    it deletes).
    """
    named = list(events)
    if names := stale_names(conn, projections):
        raise StaleProjectionError(f"projections {', '.join(names)} are stale: run rebuild first")
    refolded = 0
    screen = Screen(store)
    for projection in projections:
        keys = {key for event_type, key in named if event_type in projection.EVENT_TYPES}
        if not keys:
            continue
        with sqlite.write_transaction(conn):
            row = conn.execute(
                "SELECT position FROM _projections WHERE name = ?", (projection.NAME,)
            ).fetchone()
            if row is None:
                continue  # never installed: nothing of theirs to re-fold
            _delete(conn, projection, keys)
            # A deleted row that no event writes again must reach the feed as removed.
            feed.record(conn, projection, Touched(entities=dict.fromkeys(keys, 0)))
            table = projection.TABLE
            found = store.events_of(projection.EVENT_TYPES, table.payload_key, keys, until=row[0])
            apply_events(conn, projection, screen.screen(found))
        refolded += len(keys)
    return refolded


def _delete(conn: sqlite3.Connection, projection: Projection, keys: set[str]) -> None:
    table = projection.TABLE
    values = msgspec.json.encode(sorted(keys)).decode()
    targets = [
        (table.name, table.key),
        (table.state_table, "key"),
        *((child.name, child.parent_column) for child in table.children),
    ]
    if table.history is not None:
        targets.append((table.history.name, table.history.columns[0][0]))
    for name, column in targets:
        # The names come from the projection's own description, never from input.
        conn.execute(
            f"DELETE FROM {name} WHERE {column} IN (SELECT value FROM json_each(?))",
            (values,),
        )
