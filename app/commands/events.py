"""`events`: the stored deliveries, newest first, or one of them in full."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from app import terminal
from app.commands.common import add_command, add_json_lines_flag, positive_int, settings_for
from app.instants import format_instant
from app.ops import inspection
from app.webhooks.delivery import bitbybit_headers

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from pathlib import Path

    from app.commands.common import Commands

NAME = "events"
LIST_HEADERS = ("position", "received_at", "event_type", "entity", "webhook_id", "marks")
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
    settings = settings_for(args, environ)
    settings.require_event_log()
    if args.id is not None:
        if args.type or args.entity or args.since:
            print("error: --id shows one delivery; it takes no other filter", file=sys.stderr)
            return 2
        return _show(settings.events_path, args.id, as_json=args.json)
    try:
        selection = inspection.Selection(
            event_type=args.type,
            entity=args.entity,
            since=None if args.since is None else inspection.parse_since(args.since),
            limit=args.limit,
        )
    except inspection.SelectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _list(settings.events_path, selection, as_json=args.json)


def _list(events_path: Path, selection: inspection.Selection, *, as_json: bool) -> int:
    """Print the selected deliveries, newest first."""
    from app.ops import inspection  # noqa: PLC0415 - the command's modules load when it runs

    found, redacted = inspection.listed(events_path, selection)
    if terminal.wants_json(as_json, sys.stdout):
        terminal.print_json_lines(inspection.as_json(event, redacted) for event in found)
        return 0
    terminal.print_table(
        LIST_HEADERS,
        (
            (
                e.position,
                e.received_at,
                e.event_type,
                inspection.entity_of(e),
                e.webhook_id,
                ", ".join(inspection.marks(e, redacted)),
            )
            for e in found
        ),
    )
    print(f"{len(found)} deliveries shown, newest first", file=sys.stderr)
    return 0


def _show(events_path: Path, webhook_id: str, *, as_json: bool) -> int:
    """Print one delivery in full; 1 when the log has no delivery with that id."""
    shown = inspection.shown(events_path, webhook_id)
    if shown is None:
        print(f"no delivery with webhook id {webhook_id!r} in {events_path}", file=sys.stderr)
        return 1
    event, redacted = shown.event, shown.redacted
    if terminal.wants_json(as_json, sys.stdout):
        terminal.print_json_lines(
            [{**inspection.as_json(event, redacted), "conflicting_duplicates": shown.kept_aside}]
        )
        return 0
    print(f"position     {event.position}")
    print(f"received_at  {event.received_at}")
    print(f"signed_at    {format_instant(event.signed_at)}")
    print(f"entity       {inspection.entity_of(event) or '-'}")
    print(f"marks        {', '.join(inspection.marks(event, redacted)) or '-'}")
    if shown.kept_aside:
        print(f"kept aside   {shown.kept_aside} later deliveries with this id and another body")
    print()
    headers = bitbybit_headers(
        event.webhook_id, event.event_type, event.event_timestamp, event.signature
    )
    for name, value in headers.items():
        print(f"{name}: {value}")
    print()
    print(inspection.pretty_body(event.payload))
    return 0
