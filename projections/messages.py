"""WhatsApp messages and every status delivery.

Decisions where the SPEC is silent:
- A `message.received` is the only authority on direction: an id it names is
  `inbound` even if a status event for it (which says `outbound`) is newer. Such status
  events still rank into `status` and `message_status_history`.
- Fields of messages have no `updatedAt`, so their registers are ordered by
  (timestamp header, webhook id); ids are unique in the log, so no two events tie, and
  two statuses of the same rank go to the later timestamp header, then the larger id.
- `status_updated_at` moves with `status`: it is the winning status event's time.
- History keeps a row even for a status value the ranking does not know.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, Struct

from projections._changes import Change, Registers
from projections._payloads import LenientDecoder, Text
from projections._rules import event_time, event_version, status_version
from projections._tables import EntityTable, Event, HistoryTable

NAME = "messages"
# 3: the stored state keeps register versions only; the values are the row itself.
# 4: a field of an unexpected type is kept as JSON text, no longer dropping the message.
VERSION = 4
EVENT_TYPES = frozenset({"message.received", "message.status.updated"})

TABLE = EntityTable(
    name="messages",
    key="message_id",
    payload_key="$.messageId",
    columns=(
        ("direction", "TEXT"),
        ("sender", "TEXT"),
        ("recipient", "TEXT"),
        ("body", "TEXT"),
        ("source", "TEXT"),
        ("template_name", "TEXT"),
        ("status", "TEXT"),
        ("received_at", "TEXT"),
        ("status_updated_at", "TEXT"),
    ),
    history=HistoryTable(
        name="message_status_history",
        columns=(
            ("message_id", "TEXT NOT NULL"),
            ("status", "TEXT"),
            ("occurred_at", "TEXT"),
            ("webhook_id", "TEXT NOT NULL"),
        ),
        primary_key=("message_id", "webhook_id"),
    ),
    indexes=(("status",), ("direction",), ("recipient",), ("sender",)),
)


class Received(Struct, rename="camel"):
    """The body of `message.received`."""

    message_id: str
    from_: Text = msgspec.field(default=UNSET, name="from")
    body: Text = UNSET
    source: Text = UNSET
    received_at: Text = UNSET


class StatusUpdated(Struct, rename="camel"):
    """The body of `message.status.updated`."""

    message_id: str
    status: Text = UNSET
    to: Text = UNSET
    template_name: Text = UNSET


_received = LenientDecoder(Received)
_status_updated = LenientDecoder(StatusUpdated)

# A received message's direction outranks any status event's, whatever their times.
_INBOUND_AUTHORITY = "1"
_OUTBOUND_GUESS = "0"


def apply(event: Event) -> list[Change]:
    """What one message event says about its message."""
    version = event_version(None, event.event_timestamp, event.webhook_id)
    registers: Registers
    match event.event_type:
        case "message.received":
            message, odd = _received.decode(event.payload)
            registers = {"direction": ("inbound", _INBOUND_AUTHORITY + version)}
            for column, value in (
                ("sender", message.from_),
                ("body", message.body),
                ("source", message.source),
                ("received_at", message.received_at),
            ):
                if value is not UNSET:
                    registers[column] = (value, version)
            return [Change(message.message_id, registers, odd=odd)]
        case "message.status.updated":
            update, odd = _status_updated.decode(event.payload)
            occurred_at = event_time(event)
            registers = {"direction": ("outbound", _OUTBOUND_GUESS + version)}
            for column, value in (
                ("recipient", update.to),
                ("template_name", update.template_name),
            ):
                if value is not UNSET:
                    registers[column] = (value, version)
            if update.status is not UNSET:
                ranked = status_version(update.status, version)
                registers["status"] = (update.status, ranked)
                registers["status_updated_at"] = (occurred_at, ranked)
            sent_status = None if update.status is UNSET else update.status
            history = (update.message_id, sent_status, occurred_at, event.webhook_id)
            return [Change(update.message_id, registers, history=history, odd=odd)]
        case _:
            return []
