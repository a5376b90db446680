"""Drive the real log and projector in tests: deliveries in, rows out."""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING, Any

import projections
from app.eventlog.store import AppendResult, EventStore
from app.files import make_private_dir
from app.instants import format_instant
from app.projection.projector import Projector, connect
from tests._helpers import T0, delivery

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    from app.eventlog.rows import Delivery
    from projections import Projection

Row = dict[str, Any]
Dump = dict[str, list[tuple[Any, ...]]]


def iso(seconds: int) -> str:
    """The text the projections write for a Unix time."""
    return format_instant(seconds)


def dump_tables(conn: sqlite3.Connection, mods: Sequence[Projection]) -> Dump:
    """Every table the projections own (user-facing, child, history, state), rows sorted."""
    dump: Dump = {}
    for projection in mods:
        for table in projection.TABLE.table_names:
            width = len(conn.execute(f"PRAGMA table_info({table})").fetchall())
            order = ", ".join(str(i) for i in range(1, width + 1))
            dump[table] = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
    return dump


class Harness:
    """An event log and a projections database in one directory, driven like `serve` does."""

    def __init__(
        self,
        directory: Path,
        mods: Sequence[Projection] | None = None,
        *,
        store: EventStore | None = None,
        synchronous: str = "NORMAL",
    ) -> None:
        # As the product makes it: private, so commands run on it later accept it.
        make_private_dir(directory)
        self.directory = directory
        self.owns_store = store is None
        self.store = store or EventStore.open(directory / "events.db", synchronous=synchronous)
        self.mods = list(mods) if mods is not None else projections.discover()
        self.conn = connect(directory / "projections.db", synchronous=synchronous)
        self.projector = Projector(self.conn, self.store, self.mods)
        self.projector.install_all()
        self._ids = itertools.count(1)

    def close(self) -> None:
        """Close both databases (the log only if this harness opened it)."""
        self.conn.close()
        if self.owns_store:
            self.store.close()

    def next_id(self) -> str:
        """A fresh webhook id, increasing in string order too."""
        return f"wh-{next(self._ids):06d}"

    def append(self, deliveries: Iterable[Delivery]) -> list[AppendResult]:
        """Log deliveries in one batch, without projecting them."""
        return self.store.append(list(deliveries))

    def log(
        self,
        event_type: str,
        payload: Any,
        *,
        webhook_id: str | None = None,
        timestamp: int | None = T0,
        signed_at: int | None = None,
    ) -> Delivery:
        """Log one event (without projecting it) and return the delivery."""
        d = delivery(
            event_type,
            payload,
            webhook_id=webhook_id or self.next_id(),
            timestamp=timestamp,
            signed_at=signed_at,
        )
        self.append([d])
        return d

    def send(
        self,
        event_type: str,
        payload: Any,
        *,
        webhook_id: str | None = None,
        timestamp: int | None = T0,
        signed_at: int | None = None,
    ) -> Delivery:
        """Log one event and project it, as `serve` does right after the commit."""
        d = self.log(
            event_type, payload, webhook_id=webhook_id, timestamp=timestamp, signed_at=signed_at
        )
        self.project()
        return d

    def project(self, batch_size: int = 1000) -> int:
        """Catch every current projection up with the log."""
        return self.projector.catch_up(batch_size)

    def select(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Rows of a query as dicts keyed by column name."""
        cursor = self.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def row(self, table: str, key: str, key_column: str = "id") -> Row | None:
        """One row of a table by its key, or None."""
        rows = self.select(f"SELECT * FROM {table} WHERE {key_column} = ?", (key,))
        assert len(rows) <= 1
        return rows[0] if rows else None

    def children(self, table: str, parent_column: str, key: str) -> list[Row]:
        """The child rows of one parent, in `position` order."""
        return self.select(
            f"SELECT * FROM {table} WHERE {parent_column} = ? ORDER BY position", (key,)
        )

    def dump(self) -> Dump:
        """Every projection table, rows sorted."""
        return dump_tables(self.conn, self.mods)

    def errors(self) -> list[Row]:
        """The recorded projection errors, in position order."""
        return self.select("SELECT * FROM _projection_errors ORDER BY projection, position")

    def checkpoints(self) -> dict[str, int]:
        """Each projection's checkpoint."""
        rows = self.conn.execute("SELECT name, position FROM _projections").fetchall()
        return {str(name): int(position) for name, position in rows}


def rebuilt(directory: Path, store: EventStore, batch_size: int = 1000) -> Dump:
    """The tables a from-scratch projection of `store`'s whole log gives."""
    fresh = Harness(directory, store=store)
    try:
        fresh.project(batch_size)
        return fresh.dump()
    finally:
        fresh.close()


def replayed(harness: Harness) -> Dump:
    """The tables after applying the whole log a second time on top of itself."""
    harness.conn.execute("UPDATE _projections SET position = 0")
    harness.project()
    return harness.dump()


# The sample payloads of the sender's documentation, verbatim
# (/work/shared/reference/bitbybit-webhook-events.md).
_SAMPLES: dict[str, dict[str, Any]] = {
    "customer.created": {
        "id": "cust_abc123",
        "email": "john@example.com",
        "phoneNumber": "+6281234567890",
        "firstName": "John",
        "lastName": "Doe",
        "imageUrl": None,
        "tags": ["new-customer"],
        "addresses": [
            {
                "id": "addr_xyz",
                "firstName": "John",
                "lastName": "Doe",
                "phone": "+6281234567890",
                "address1": "Jl. Sudirman No. 1",
                "city": "Jakarta",
                "province": "DKI Jakarta",
                "country": "ID",
                "zip": "10110",
            }
        ],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z",
    },
    "customer.updated": {
        "id": "cust_abc123",
        "email": "john.updated@example.com",
        "phoneNumber": "+6281234567890",
        "firstName": "John",
        "lastName": "Doe",
        "imageUrl": None,
        "tags": ["vip"],
        "addresses": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-16T08:00:00.000Z",
    },
    "customer.deleted": {"id": "cust_abc123"},
    "order.created": {
        "id": "order_def456",
        "orderId": "ORD-001",
        "orderNumber": "1001",
        "status": "active",
        "fulfillmentStatus": "unfulfilled",
        "financialStatus": "pending",
        "total": 150000,
        "currency": None,
        "customer": {
            "id": "cust_abc123",
            "firstName": "John",
            "lastName": "Doe",
            "email": "john@example.com",
            "phoneNumber": "+6281234567890",
        },
        "lineItems": [{"id": "li_001", "quantity": 2, "price": 75000, "title": "Premium T-Shirt"}],
        "shippingAddress": {
            "firstName": "John",
            "lastName": "Doe",
            "address1": "Jl. Sudirman No. 1",
            "city": "Jakarta",
            "province": "DKI Jakarta",
            "country": "ID",
            "zip": "10110",
        },
        "tags": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z",
    },
    "order.updated": {
        "id": "order_def456",
        "orderId": "ORD-001",
        "status": "active",
        "fulfillmentStatus": "fulfilled",
        "financialStatus": "paid",
        "total": 150000,
        "customer": {"id": "cust_abc123", "firstName": "John", "lastName": "Doe"},
        "lineItems": [],
        "tags": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-16T14:00:00.000Z",
    },
    "product.created": {
        "id": "prod_ghi789",
        "productId": "PROD-001",
        "name": "Premium T-Shirt",
        "description": "High-quality cotton t-shirt",
        "media": None,
        "status": None,
        "variants": [
            {"id": "var_001", "key": "Default", "price": 75000, "inventorySku": "TSH-001"}
        ],
        "options": [],
        "tags": ["apparel"],
        "types": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z",
    },
    "product.updated": {
        "id": "prod_ghi789",
        "productId": "PROD-001",
        "name": "Premium T-Shirt (Updated)",
        "description": "Updated description",
        "variants": [],
        "options": [],
        "tags": [],
        "types": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-17T09:00:00.000Z",
    },
    "product.deleted": {"id": "prod_ghi789"},
    "message.received": {
        "messageId": "msg_jkl012",
        "from": "+6281234567890",
        "body": "Hi, I have a question about my order",
        "source": "WHATSAPP_META",
        "receivedAt": "2024-01-15T10:30:00.000Z",
    },
    "message.status.updated": {
        "messageId": "msg_mno345",
        "status": "sent",
        "to": "+6281234567890",
        "templateName": "order_confirmation",
    },
}


def sample(event_type: str, **changes: Any) -> dict[str, Any]:
    """A fresh copy of the documented sample payload of `event_type`, with `changes`."""
    payload: dict[str, Any] = json.loads(json.dumps(_SAMPLES[event_type]))
    payload.update(changes)
    return payload
