"""`errors`: the events the projections could not apply, with their deliveries."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from app import terminal
from app.commands.common import add_command, add_json_lines_flag, settings_for
from projections import discover

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands
    from app.ops.inspection import ProjectionError

NAME = "errors"
HEADERS = ("position", "received_at", "projection", "event_type", "webhook_id", "error")


def register(commands: Commands) -> None:
    """Add `errors` and its options."""
    names = [p.NAME for p in discover()]
    parser = add_command(
        commands,
        NAME,
        "list the events the projections could not apply",
        "List the recorded projection errors, newest event first: the projection, the "
        "event's position, type and webhook id, and the error; as a table on a terminal "
        "and as JSON Lines (each with its delivery in the export format) otherwise. Such "
        "events stay in the log; fix the cause and run rebuild. Warnings (kind "
        "`warning`) are events applied with a field of an unexpected shape kept as JSON "
        "text. Reads only.",
    )
    parser.add_argument(
        "--projection",
        choices=names,
        metavar="NAME",
        help=f"only this projection's errors: one of {', '.join(names)} (default: all)",
    )
    add_json_lines_flag(parser)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Print the errors."""
    from app.ops.inspection import recorded  # noqa: PLC0415

    settings = settings_for(args, environ)
    settings.require_event_log()
    found = recorded(settings.projections_path, settings.events_path, args.projection)
    if terminal.wants_json(args.json, sys.stdout):
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
                e.error if e.kind == "error" else f"{e.kind}: {e.error}",
            )
            for e in found
        ),
    )
    warnings = sum(e.kind == "warning" for e in found)
    print(f"{len(found) - warnings} projection errors, {warnings} warnings", file=sys.stderr)
    return 0


def _as_json(error: ProjectionError) -> dict[str, object]:
    from app.ops.transfer import to_line  # noqa: PLC0415

    return {
        "projection": error.projection,
        "position": error.position,
        "webhook_id": error.webhook_id,
        "event_type": error.event_type,
        "error": error.error,
        "event": None if error.event is None else to_line(error.event),
        "kind": error.kind,
    }
