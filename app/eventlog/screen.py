"""Deliveries about a forgotten person, redacted in memory before anything projects them.

A delivery about a forgotten customer (their customer events, an order of theirs, a
status of a message already forgotten) may arrive after `forget`. The endpoint stores it
as received, so that its hot path stays as it is; the sweep of `serve` redacts it in the
log within the hour (`app.ops.forget_sweep`). Meanwhile every projector passes the events
it reads through a `Screen`, so such a delivery never brings the person's values into the
tables, and a rebuild (which screens the same way) still equals the live tables.

A log nobody was forgotten in costs one indexed query per step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from app.eventlog import personal

if TYPE_CHECKING:
    from collections.abc import Sequence

    from app.eventlog.reads import LogReader
    from app.eventlog.rows import StoredEvent


class _Names(msgspec.Struct):
    """What a body says about whom: the only fields a screen reads."""

    id: Any = None
    messageId: Any = None  # noqa: N815 - the body's own name
    customer: Any = None


_names = msgspec.json.Decoder(_Names)


class Screen:
    """Redacts the events about the forgotten entities the log knows, as they are read."""

    def __init__(self, store: LogReader) -> None:
        self._store = store
        self._last_row = 0
        self._keys: dict[str, set[str]] = {"customer": set(), "order": set(), "message": set()}

    def screen(self, events: Sequence[StoredEvent]) -> Sequence[StoredEvent]:
        """`events`, those about a forgotten entity with their personal values nulled."""
        for row, kind, key in self._store.forgotten_entities(self._last_row):
            self._keys[kind].add(key)
            self._last_row = row
        if not self._keys["customer"]:
            return events
        return [self._screened(event) for event in events]

    def _screened(self, event: StoredEvent) -> StoredEvent:
        if not self.concerns(event.event_type, event.payload):
            return event
        redacted = personal.redact(event.event_type, event.payload)
        return event if redacted is None else msgspec.structs.replace(event, payload=redacted)

    def concerns(self, event_type: str, payload: bytes) -> bool:
        """Whether a body of `event_type` is about an entity a forget named."""
        if not (
            event_type in personal.CUSTOMER_TYPES
            or event_type in personal.ORDER_TYPES
            or event_type in personal.MESSAGE_TYPES
        ):
            return False
        try:
            names = _names.decode(payload)
        except msgspec.DecodeError:
            return False  # not JSON: nothing a projection could show
        keys = self._keys
        if event_type in personal.CUSTOMER_TYPES:
            return _among(names.id, keys["customer"])
        if event_type in personal.ORDER_TYPES:
            customer = names.customer
            return _among(names.id, keys["order"]) or (
                isinstance(customer, dict) and _among(customer.get("id"), keys["customer"])
            )
        return _among(names.messageId, keys["message"])


def _among(value: object, keys: set[str]) -> bool:
    return isinstance(value, str) and value in keys
