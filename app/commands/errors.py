"""`errors`: the events the projections could not apply, with their deliveries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.commands.common import add_command, add_json_lines_flag, settings_for
from projections import discover

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "errors"


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
        "events stay in the log; fix the cause and run rebuild. Reads only.",
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
    from app.ops.error_listing import print_errors  # noqa: PLC0415

    settings = settings_for(args, environ)
    settings.require_event_log()
    return print_errors(settings, args.projection, as_json=args.json)
