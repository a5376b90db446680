"""Inspecting the log: the deliveries a person asks for, and the projections' errors.

`events`, `replay` and Datasette's "every delivery of an entity" select deliveries with
the same filters (by id, type, entity and time), so the deliveries `events` lists are
the ones `replay` sends. `errors` lists each recorded projection error with the delivery
it came from. Reads only, through read-only connections: safe while `serve` writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from typing import TYPE_CHECKING

import msgspec

from app.eventlog import erasure
from app.eventlog.rows import EVENT_COLUMN_LIST, StoredEvent
from app.ops.transfer import to_line
from app.sqlite import connect_read_only, read_only_uri
from projections import discover

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator
    from pathlib import Path

# Where each projection finds its entity's id in a body (`$.id`, `$.messageId`).
ENTITY_PATHS = tuple(sorted({p.TABLE.payload_key for p in discover()}))
_TEXT = "CAST(payload AS TEXT)"
# The entity a delivery is about, as text; NULL for a body that is not JSON or has none.
ENTITY_SQL = (
    f"CAST(CASE WHEN json_valid({_TEXT}) THEN COALESCE("
    + ", ".join(f"json_extract({_TEXT}, '{path}')" for path in ENTITY_PATHS)
    + ") END AS TEXT)"
)
# The event types that sync appends without a signature (SPEC §8).
SNAPSHOT_SUFFIXES = (".snapshot", ".gone")


class SelectionError(Exception):
    """A filter cannot be understood; the message says which and why."""


@dataclasses.dataclass(frozen=True, slots=True)
class Selection:
    """Which deliveries: every filter given must hold (none given: all of them)."""

    webhook_ids: tuple[str, ...] = ()
    event_type: str | None = None
    entity: str | None = None
    since: str | None = None  # as `received_at` is written: ISO 8601 UTC, ms, `Z`
    limit: int | None = None
    after: int = 0  # only positions above this: a caller pages through a long log


def parse_since(text: str) -> str:
    """An ISO 8601 date or instant as the log writes `received_at`; no zone means UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise SelectionError(
            f"--since must be an ISO 8601 date or time such as 2024-01-15 or "
            f"2024-01-15T10:30:00Z, not {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    # From the parts, not from float seconds, which would lose the milliseconds.
    utc = moment.astimezone(dt.UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def select(
    conn: sqlite3.Connection, selection: Selection, *, newest_first: bool
) -> Iterator[StoredEvent]:
    """The selected deliveries of the log on `conn`, newest or oldest first."""
    where: list[str] = ["position > ?"]
    parameters: list[object] = [selection.after]
    if selection.webhook_ids:
        where.append(f"webhook_id IN ({','.join('?' * len(selection.webhook_ids))})")
        parameters.extend(selection.webhook_ids)
    if selection.event_type is not None:
        where.append("event_type = ?")
        parameters.append(selection.event_type)
    if selection.entity is not None:
        where.append(f"{ENTITY_SQL} = ?")
        parameters.append(selection.entity)
    if selection.since is not None:
        where.append("received_at >= ?")
        parameters.append(selection.since)
    query = f"SELECT {EVENT_COLUMN_LIST} FROM events WHERE " + " AND ".join(where)
    query += f" ORDER BY position {'DESC' if newest_first else 'ASC'}"
    if selection.limit is not None:
        query += " LIMIT ?"
        parameters.append(selection.limit)
    for row in conn.execute(query, parameters):
        yield StoredEvent(*row)


def entity_of(event: StoredEvent) -> str | None:
    """The id of the customer, order, product or message the delivery is about."""
    try:
        body = msgspec.json.decode(event.payload)
    except msgspec.DecodeError:
        return None
    if not isinstance(body, dict):
        return None
    for path in ENTITY_PATHS:
        value = body.get(path.removeprefix("$."))
        if value is not None:
            return str(value)
    return None


def marks(event: StoredEvent, redacted: Collection[int] = frozenset()) -> tuple[str, ...]:
    """What a reader must know before trusting a delivery as BitByBit sent it.

    The one place that says so: a snapshot that `sync` read from the API carries no
    signature, and a row whose position is in `redacted` had its personal values erased
    by `forget`, so its signature no longer matches its body.
    """
    found = []
    if event.event_type.endswith(SNAPSHOT_SUFFIXES) or not event.signature:
        found.append("snapshot (unsigned: read from the API, not a webhook)")
    if event.position in redacted:
        found.append("redacted (personal values erased by forget)")
    return tuple(found)


def redacted_positions(conn: sqlite3.Connection) -> set[int]:
    """The positions `forget` rewrote; none in a log no release with forget has opened."""
    try:
        return erasure.redacted_positions(conn)
    except sqlite3.OperationalError:
        return set()


def as_json(event: StoredEvent, redacted: Collection[int] = frozenset()) -> dict[str, object]:
    """A line of `export` (so `events --json` output can be imported), with entity and marks."""
    return {
        **msgspec.structs.asdict(to_line(event)),
        "entity": entity_of(event),
        "marks": list(marks(event, redacted)),
    }


def conflicting_count(conn: sqlite3.Connection, webhook_id: str) -> int:
    """How many deliveries with this id but another body are kept aside."""
    row = conn.execute(
        "SELECT COUNT(*) FROM conflicting_duplicates WHERE webhook_id = ?", (webhook_id,)
    ).fetchone()
    return int(row[0])


def pretty_body(payload: bytes) -> str:
    """The body indented as JSON, or as it came when it is not JSON."""
    try:
        return msgspec.json.format(payload, indent=2).decode()
    except (msgspec.DecodeError, UnicodeDecodeError):
        return payload.decode("utf-8", errors="replace")


def listed(events_path: Path, selection: Selection) -> tuple[list[StoredEvent], set[int]]:
    """The selected deliveries, newest first, and the positions of the redacted ones."""
    conn = connect_read_only(events_path)
    try:
        return list(select(conn, selection, newest_first=True)), redacted_positions(conn)
    finally:
        conn.close()


@dataclasses.dataclass(frozen=True, slots=True)
class Shown:
    """One delivery in full, for `events --id`."""

    event: StoredEvent
    redacted: set[int]
    # Later deliveries with this id and another body, kept aside.
    kept_aside: int


def shown(events_path: Path, webhook_id: str) -> Shown | None:
    """The delivery with `webhook_id`, or None when the log has none."""
    conn = connect_read_only(events_path)
    try:
        found = list(select(conn, Selection(webhook_ids=(webhook_id,)), newest_first=True))
        if not found:
            return None
        return Shown(found[0], redacted_positions(conn), conflicting_count(conn, webhook_id))
    finally:
        conn.close()


# The log is attached read-only beside projections.db; an error whose event is not in
# this log (a projections.db from another log) still shows, without its delivery.
SELECT_ERRORS = """
SELECT e.projection, e.error,
       ev.position, ev.webhook_id, ev.event_type, ev.event_timestamp, ev.signed_at,
       ev.received_at, ev.signature, ev.payload,
       e.position, e.webhook_id, e.event_type, e.kind
FROM ({recorded}) AS e LEFT JOIN log.events AS ev ON ev.position = e.position
WHERE ?1 IS NULL OR e.projection = ?1
ORDER BY e.position DESC, e.projection
"""
_ERRORS = "SELECT *, 'error' AS kind FROM _projection_errors"
# Files of earlier releases have no warnings table; status and errors open them read-only.
_WARNINGS = (
    "SELECT projection, position, webhook_id, event_type, warning, 'warning' AS kind "
    "FROM _projection_warnings"
)


@dataclasses.dataclass(frozen=True, slots=True)
class ProjectionError:
    """One recorded error and, where the log has it, its delivery."""

    projection: str
    position: int
    webhook_id: str
    event_type: str
    error: str
    event: StoredEvent | None
    # `warning`: the event was applied, but a field of an unexpected shape was kept as
    # JSON text or left alone (see `projections._payloads.LenientDecoder`).
    kind: str = "error"


def recorded(
    projections_path: Path, events_path: Path, projection: str | None = None
) -> list[ProjectionError]:
    """Every recorded error and warning, newest event first; none without a projections.db."""
    if not projections_path.exists():
        return []
    conn = connect_read_only(projections_path)
    try:
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_schema WHERE name IN "
                "('_projection_errors', '_projection_warnings')"
            )
        }
        if "_projection_errors" not in tables:
            return []
        parts = [_ERRORS, _WARNINGS] if "_projection_warnings" in tables else [_ERRORS]
        conn.execute("ATTACH DATABASE ? AS log", (read_only_uri(events_path),))
        query = SELECT_ERRORS.format(recorded=" UNION ALL ".join(parts))
        return [
            ProjectionError(
                projection=row[0],
                position=row[10],
                webhook_id=row[11],
                event_type=row[12],
                error=row[1],
                event=None if row[2] is None else StoredEvent(*row[2:10]),
                kind=row[13],
            )
            for row in conn.execute(query, (projection,))
        ]
    finally:
        conn.close()
