"""What `events` prints: a list of deliveries, or one delivery with headers and body."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from app import terminal
from app.instants import format_instant
from app.ops import deliveries
from app.sqlite import connect_read_only
from app.webhooks.delivery import bitbybit_headers

if TYPE_CHECKING:
    from pathlib import Path

LIST_HEADERS = ("position", "received_at", "event_type", "entity", "webhook_id", "marks")


def list_events(events_path: Path, selection: deliveries.Selection, *, as_json: bool) -> int:
    """Print the selected deliveries, newest first."""
    conn = connect_read_only(events_path)
    try:
        found = list(deliveries.select(conn, selection, newest_first=True))
        redacted = deliveries.redacted_positions(conn)
    finally:
        conn.close()
    if terminal.wants_json(as_json, sys.stdout):
        terminal.print_json_lines(deliveries.as_json(event, redacted) for event in found)
        return 0
    terminal.print_table(
        LIST_HEADERS,
        (
            (
                e.position,
                e.received_at,
                e.event_type,
                deliveries.entity_of(e),
                e.webhook_id,
                ", ".join(deliveries.marks(e, redacted)),
            )
            for e in found
        ),
    )
    print(f"{len(found)} deliveries shown, newest first", file=sys.stderr)
    return 0


def show(events_path: Path, webhook_id: str, *, as_json: bool) -> int:
    """Print one delivery in full; 1 when the log has no delivery with that id."""
    conn = connect_read_only(events_path)
    try:
        found = list(
            deliveries.select(
                conn, deliveries.Selection(webhook_ids=(webhook_id,)), newest_first=True
            )
        )
        kept_aside = deliveries.conflicting_count(conn, webhook_id)
        redacted = deliveries.redacted_positions(conn)
    finally:
        conn.close()
    if not found:
        print(f"no delivery with webhook id {webhook_id!r} in {events_path}", file=sys.stderr)
        return 1
    event = found[0]
    if terminal.wants_json(as_json, sys.stdout):
        terminal.print_json_lines(
            [{**deliveries.as_json(event, redacted), "conflicting_duplicates": kept_aside}]
        )
        return 0
    print(f"position     {event.position}")
    print(f"received_at  {event.received_at}")
    print(f"signed_at    {format_instant(event.signed_at)}")
    print(f"entity       {deliveries.entity_of(event) or '-'}")
    print(f"marks        {', '.join(deliveries.marks(event, redacted)) or '-'}")
    if kept_aside:
        print(f"kept aside   {kept_aside} later deliveries with this id and another body")
    print()
    headers = bitbybit_headers(
        event.webhook_id, event.event_type, event.event_timestamp, event.signature
    )
    for name, value in headers.items():
        print(f"{name}: {value}")
    print()
    print(deliveries.pretty_body(event.payload))
    return 0
