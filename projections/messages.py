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

Its views answer "do my WhatsApp messages get read, and who wrote" (SPEC section 11);
where the SPEC is silent:
- `message_funnel` counts every stage a message's history reached, whatever the order
  its statuses arrived in and whichever stages BitByBit skipped: a message whose only
  status is `read` was sent, delivered and read. A message both read and then `failed`
  counts in both. `read_rate` is a fraction (0.5 is half), NULL when none was sent.
- `customer_messages` matches numbers by `_rules.phone_number_key`: separators are
  removed, not every non-digit (see there). A message whose number matches no customer
  has `customer_id` NULL; one shared by several customers appears once for each.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, Struct

from projections._changes import Change, Registers
from projections._payloads import LenientDecoder, Text
from projections._rules import (
    event_time,
    event_version,
    phone_digits,
    phone_number_key,
    status_version,
)
from projections._tables import SENT_AS_IS, EntityTable, Event, HistoryTable, View

NAME = "messages"
# 3: the stored state keeps register versions only; the values are the row itself.
# 4: the views `message_funnel` and `customer_messages`; history declares its message.
# 5: a field of an unexpected type is kept as JSON text, no longer dropping the message.
VERSION = 5

_COLUMN_DESCRIPTIONS = {
    "message_id": "BitByBit's message id",
    "direction": "inbound (a customer wrote) or outbound (the shop sent)",
    "sender": "the sending phone number (personal data)",
    "recipient": "the receiving phone number (personal data)",
    "body": "the message text (personal data)",
    "source": "where the message came from, as sent",
    "template_name": "the WhatsApp template used, for outbound messages",
    "status": "pending, queued, sent, delivered, read or failed: the furthest reached",
    "received_at": f"when an inbound message arrived, {SENT_AS_IS}",
    "status_updated_at": "when the current status was reached (its event timestamp, UTC)",
}

MESSAGE_FUNNEL = View(
    name="message_funnel",
    sql="""\
SELECT
    m.template_name,
    COUNT(*) AS messages,
    SUM(COALESCE(h.sent, 0)) AS sent,
    SUM(COALESCE(h.delivered, 0)) AS delivered,
    SUM(COALESCE(h.read, 0)) AS read,
    SUM(COALESCE(h.failed, 0)) AS failed,
    CAST(SUM(COALESCE(h.read, 0)) AS DOUBLE PRECISION) / NULLIF(SUM(COALESCE(h.sent, 0)), 0)
        AS read_rate
FROM messages AS m
LEFT JOIN (
    SELECT
        message_id,
        MAX(CASE WHEN status IN ('sent', 'delivered', 'read') THEN 1 ELSE 0 END) AS sent,
        MAX(CASE WHEN status IN ('delivered', 'read') THEN 1 ELSE 0 END) AS delivered,
        MAX(CASE WHEN status = 'read' THEN 1 ELSE 0 END) AS read,
        MAX(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed
    FROM message_status_history
    GROUP BY message_id
) AS h ON h.message_id = m.message_id
WHERE m.direction = 'outbound'
GROUP BY m.template_name""",
    description=(
        "How far the shop's WhatsApp messages got, per template: every stage a message "
        "ever reached in its status history counts."
    ),
    column_descriptions={
        "template_name": "the WhatsApp template; NULL for messages sent without one",
        "messages": "outbound messages",
        "sent": "of those, the ones whose history reached sent, delivered or read",
        "delivered": "the ones whose history reached delivered or read",
        "read": "the ones whose history reached read",
        "failed": "the ones with a failed in their history",
        "read_rate": "read / sent, a fraction (0.5 is half); NULL when none was sent",
    },
    sort_desc="messages",
)

# Each side's numbers are keyed in a subquery of their own, so the rule reads once per
# side. The customers' side is DISTINCT (over a primary key it removes nothing) so that
# SQLite builds it once, into a table with an automatic index, instead of keying every
# customer's number again for every message.
_MESSAGE_NUMBER = "CASE direction WHEN 'inbound' THEN sender ELSE recipient END"
CUSTOMER_MESSAGES = View(
    name="customer_messages",
    sql=f"""\
SELECT
    m.message_id,
    m.direction,
    m.sender,
    m.recipient,
    m.body,
    m.source,
    m.template_name,
    m.status,
    m.received_at,
    m.status_updated_at,
    c.id AS customer_id
FROM (
    SELECT *, {phone_number_key("digits")} AS number
    FROM (SELECT *, {phone_digits(_MESSAGE_NUMBER)} AS digits FROM messages) AS keyed
) AS m
LEFT JOIN (
    SELECT DISTINCT id, {phone_number_key("digits")} AS number
    FROM (SELECT id, {phone_digits("phone_number")} AS digits FROM customers) AS keyed
) AS c ON c.number = m.number""",
    description=(
        "Every message, both directions, with the customer whose phone number wrote or "
        "received it (matched as a number: 0812…, +62 812… and 62-812… are one)."
    ),
    column_descriptions={
        **_COLUMN_DESCRIPTIONS,
        "customer_id": (
            "the customer whose phone_number is the sender (inbound) or recipient "
            "(outbound); NULL when none matches, one row per customer when several do"
        ),
    },
)
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
        description="Every status delivery of every message, one row each.",
        column_descriptions={
            "message_id": "the message (messages.message_id)",
            "status": "the status this delivery reported",
            "occurred_at": "when, from the delivery's event timestamp (UTC)",
            "webhook_id": "the delivery (events.webhook_id in events.db)",
        },
    ),
    indexes=(("status",), ("direction",), ("recipient",), ("sender",)),
    description="One row per WhatsApp message; its status only moves forward.",
    column_descriptions=_COLUMN_DESCRIPTIONS,
    views=(MESSAGE_FUNNEL, CUSTOMER_MESSAGES),
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
