"""`events`: the stored deliveries, newest first, or one of them in full."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from app.commands.common import add_command, add_json_lines_flag, positive_int, settings_for

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "events"
DEFAULT_LIMIT = 50


def register(commands: Commands) -> None:
    """Add `events` and its options."""
    parser = add_command(
        commands,
        NAME,
        "list the stored deliveries, newest first, or show one in full",
        "List the deliveries in the log, newest first, as a table on a terminal and as "
        "JSON Lines (the export format, plus entity and marks) otherwise. Filters combine. "
        "With --id, show that one delivery: its headers as received and its body "
        "pretty-printed, marked when it is an unsigned snapshot. Reads only; safe while "
        "serve runs.",
    )
    parser.add_argument(
        "--id",
        metavar="ID",
        help="show the delivery with this webhook id (X-BitByBit-Webhook-Id) in full "
        "(default: list); takes no other filter",
    )
    parser.add_argument(
        "--type", metavar="TYPE", help="only this event type, e.g. order.updated (default: all)"
    )
    parser.add_argument(
        "--entity",
        metavar="ID",
        help="only deliveries about this customer, order, product or message id "
        "(the body's id or messageId; default: all)",
    )
    parser.add_argument(
        "--since",
        metavar="ISO",
        help="only deliveries received at or after this date or time, e.g. 2024-01-15 or "
        "2024-01-15T10:30:00Z; no zone means UTC (default: all)",
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"list at most N deliveries (default {DEFAULT_LIMIT})",
    )
    add_json_lines_flag(parser)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """List or show; exit 1 when --id names no stored delivery."""
    from app.ops import deliveries, event_listing  # noqa: PLC0415

    settings = settings_for(args, environ)
    settings.require_event_log()
    if args.id is not None:
        if args.type or args.entity or args.since:
            print("error: --id shows one delivery; it takes no other filter", file=sys.stderr)
            return 2
        return event_listing.show(settings.events_path, args.id, as_json=args.json)
    try:
        selection = deliveries.Selection(
            event_type=args.type,
            entity=args.entity,
            since=None if args.since is None else deliveries.parse_since(args.since),
            limit=args.limit,
        )
    except deliveries.SelectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return event_listing.list_events(settings.events_path, selection, as_json=args.json)
