"""`status`: the log's size and each projection's position, lag and errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.commands.common import add_command, settings_for

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "status"


def register(commands: Commands) -> None:
    """Add `status` and its options."""
    parser = add_command(
        commands,
        NAME,
        "show the log's size and each projection's position, lag and errors",
        "Show the log's event count and head, and per projection its version, "
        "checkpoint, lag, error count and whether it is stale.",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Print the status."""
    from app.ops.status import print_status  # noqa: PLC0415

    settings = settings_for(args, environ)
    settings.require_event_log()
    return print_status(settings, as_json=args.json)
