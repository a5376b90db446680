"""What `errors` prints."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from app import terminal
from app.ops.projection_errors import recorded
from app.ops.transfer import to_line

if TYPE_CHECKING:
    from app.ops.projection_errors import ProjectionError
    from app.settings import Settings

HEADERS = ("position", "received_at", "projection", "event_type", "webhook_id", "error")


def print_errors(settings: Settings, projection: str | None, *, as_json: bool) -> int:
    """Print the recorded errors, newest event first."""
    found = recorded(settings.projections_path, settings.events_path, projection)
    if terminal.wants_json(as_json, sys.stdout):
        terminal.print_json_lines(_as_json(error) for error in found)
        return 0
    terminal.print_table(
        HEADERS,
        (
            (
                e.position,
                e.event.received_at if e.event else None,
                e.projection,
                e.event_type,
                e.webhook_id,
                e.error,
            )
            for e in found
        ),
    )
    print(f"{len(found)} projection errors", file=sys.stderr)
    return 0


def _as_json(error: ProjectionError) -> dict[str, object]:
    return {
        "projection": error.projection,
        "position": error.position,
        "webhook_id": error.webhook_id,
        "event_type": error.event_type,
        "error": error.error,
        "event": None if error.event is None else to_line(error.event),
    }
