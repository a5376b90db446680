"""An entity read from the Open API as a row of the log: a snapshot, or a `*.gone`.

Conventions shared with the log, `export`/`import` and `events`: a row the service wrote
itself is unsigned (`signature` is the empty string, no digests); its event timestamp
and signing time are the moment it was read. Its webhook id is a hash of the event type,
the entity id and the body, so the same content read again collides with the row already
logged and the log's own duplicate rule makes a second pass over unchanged data add
nothing.

The body is the entity as the API returned it, with its keys sorted and no whitespace:
the same content always makes the same bytes (and the same id), however the API happens
to format it.
"""

from __future__ import annotations

import dataclasses
import hashlib

import msgspec

from app.eventlog.rows import Delivery
from app.instants import format_instant

UNSIGNED = ""
_id_only = msgspec.json.Decoder(dict[str, object])


@dataclasses.dataclass(frozen=True, slots=True)
class Kind:
    """One entity type of the API, and the event types its rows have in the log."""

    name: str  # as on the command line and in the report: "customers"
    singular: str  # as in event types: "customer"
    deletable: bool  # orders are never deleted (there is no `order.deleted`)

    @property
    def snapshot_type(self) -> str:
        """The event type of a snapshot of this entity."""
        return f"{self.singular}.snapshot"

    @property
    def gone_type(self) -> str:
        """The event type that says the API no longer has it."""
        return f"{self.singular}.gone"

    @property
    def event_types(self) -> tuple[str, ...]:
        """Every event type in the log about this entity, webhooks and sync alike."""
        s = self.singular
        return (f"{s}.created", f"{s}.updated", f"{s}.deleted", self.snapshot_type, self.gone_type)

    @property
    def deleted_types(self) -> tuple[str, ...]:
        """The event types that end an entity (deletion is final)."""
        return (f"{self.singular}.deleted", self.gone_type)


CUSTOMERS = Kind("customers", "customer", deletable=True)
ORDERS = Kind("orders", "order", deletable=False)
PRODUCTS = Kind("products", "product", deletable=True)
KINDS = {kind.name: kind for kind in (CUSTOMERS, ORDERS, PRODUCTS)}


class SnapshotError(ValueError):
    """An entity the API returned that cannot be kept: not an object, or without an id."""


def entity_id(body: bytes) -> tuple[str, bytes]:
    """The entity's id and its canonical body (sorted keys, compact)."""
    try:
        entity = _id_only.decode(body)
    except msgspec.DecodeError as exc:
        raise SnapshotError(f"not a JSON object: {exc}") from None
    key = entity.get("id")
    if not isinstance(key, str) or not key:
        raise SnapshotError("the entity has no id")
    return key, msgspec.json.encode(entity, order="sorted")


def snapshot(kind: Kind, body: bytes, read_at: float) -> tuple[str, Delivery]:
    """The entity's id and the snapshot row that keeps it (see the module's docstring)."""
    key, canonical = entity_id(body)
    return key, _unsigned(kind.snapshot_type, key, canonical, read_at)


def gone(kind: Kind, key: str, checked_at: float) -> Delivery:
    """The row saying the API answered 404 `NOT_FOUND` for this entity at `checked_at`."""
    return _unsigned(kind.gone_type, key, msgspec.json.encode({"id": key}), checked_at)


def _unsigned(event_type: str, key: str, body: bytes, at: float) -> Delivery:
    digest = hashlib.sha256(b"\0".join((event_type.encode(), key.encode(), body))).hexdigest()
    return Delivery(
        webhook_id=f"sync_{digest}",
        event_type=event_type,
        event_timestamp=int(at),
        signed_at=int(at),
        received_at=format_instant(at),
        signature=UNSIGNED,
        payload=body,
        digests=(),
    )
