"""A small projected log, and the helper that appends deliveries and projects them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from app.eventlog.store import EventStore
from app.projection import projector
from projections import discover
from tests._helpers import delivery

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from app.eventlog.rows import Delivery


def _delivery(number: int, event_type: str, payload: dict[str, object]) -> Delivery:
    return delivery(
        event_type,
        msgspec.json.encode(payload),
        webhook_id=f"evt_{number:04d}",
        timestamp=1_705_000_000 + number,
        received_at="2024-01-15T10:30:00.000Z",
        signature=f"t=1705000000,v1={number:064x}",
    )


def _order(order_id: str, customer: str, status: str, total: int) -> dict[str, object]:
    return {
        "id": order_id,
        "orderNumber": order_id[-4:],
        "status": status,
        "total": total,
        "customer": {"id": customer, "firstName": customer.title(), "lastName": "X"},
        "lineItems": [{"id": f"li_{order_id}", "title": "Shirt", "quantity": 1, "price": total}],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z",
    }


def populate(data_dir: Path) -> None:
    """A log of a few customers, orders and messages in `data_dir`, projected."""
    events: list[tuple[str, dict[str, object]]] = [
        ("customer.created", {"id": "cust_abc123", "email": "a@x.id", "tags": ["vip"]}),
        ("customer.created", {"id": "cust_b", "email": "b@x.id", "tags": ["new"]}),
        ("customer.created", {"id": "cust_c", "email": "c@x.id", "tags": ["vip", "new"]}),
        ("customer.deleted", {"id": "cust_c"}),
        ("order.created", _order("order_0001", "cust_abc123", "active", 100)),
        ("order.created", _order("order_0002", "cust_abc123", "active", 50)),
        ("order.created", _order("order_0003", "cust_b", "cancelled", 70)),
        ("order.created", _order("order_0004", "cust_b", "completed", 30)),
        ("message.status.updated", {"messageId": "m1", "status": "sent", "to": "+62"}),
        ("message.status.updated", {"messageId": "m2", "status": "read", "to": "+62"}),
        ("message.status.updated", {"messageId": "m3", "status": "read", "to": "+62"}),
        ("message.received", {"messageId": "m4", "from": "+62", "body": "hi"}),
    ]
    append_and_project(
        data_dir, [_delivery(n, kind, body) for n, (kind, body) in enumerate(events)]
    )


def append_and_project(data_dir: Path, deliveries: Sequence[Delivery]) -> None:
    """Append `deliveries` to the log in `data_dir` and bring every projection up to date."""
    store = EventStore.open(data_dir / "events.db")
    store.append(deliveries)
    conn = projector.connect(data_dir / "projections.db")
    runner = projector.Projector(conn, store, discover())
    runner.install_all()
    runner.catch_up()
    conn.close()
    store.close()
