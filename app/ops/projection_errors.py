"""The events the projections could not apply, with the deliveries they came from."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from app.eventlog.rows import StoredEvent
from app.sqlite import connect_read_only, read_only_uri

if TYPE_CHECKING:
    from pathlib import Path

# The log is attached read-only beside projections.db; an error whose event is not in
# this log (a projections.db from another log) still shows, without its delivery.
SELECT_ERRORS = """
SELECT e.projection, e.error,
       ev.position, ev.webhook_id, ev.event_type, ev.event_timestamp, ev.signed_at,
       ev.received_at, ev.signature, ev.payload,
       e.position, e.webhook_id, e.event_type
FROM _projection_errors AS e LEFT JOIN log.events AS ev ON ev.position = e.position
WHERE ?1 IS NULL OR e.projection = ?1
ORDER BY e.position DESC, e.projection
"""


@dataclasses.dataclass(frozen=True, slots=True)
class ProjectionError:
    """One recorded error and, where the log has it, its delivery."""

    projection: str
    position: int
    webhook_id: str
    event_type: str
    error: str
    event: StoredEvent | None


def recorded(
    projections_path: Path, events_path: Path, projection: str | None = None
) -> list[ProjectionError]:
    """Every recorded error, newest event first; none while no projections.db exists."""
    if not projections_path.exists():
        return []
    conn = connect_read_only(projections_path)
    try:
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_schema WHERE name = '_projection_errors'"
        ).fetchone()
        if not has_table:
            return []
        conn.execute("ATTACH DATABASE ? AS log", (read_only_uri(events_path),))
        return [
            ProjectionError(
                projection=row[0],
                position=row[10],
                webhook_id=row[11],
                event_type=row[12],
                error=row[1],
                event=None if row[2] is None else StoredEvent(*row[2:10]),
            )
            for row in conn.execute(SELECT_ERRORS, (projection,))
        ]
    finally:
        conn.close()
