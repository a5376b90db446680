"""The README's example queries run against a populated database and answer correctly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pytest

from app.eventlog.rows import Delivery
from app.eventlog.store import EventStore
from app.projection import projector
from projections import discover

if TYPE_CHECKING:
    import sqlite3

README = Path(__file__).resolve().parent.parent / "README.md"


def _queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def _delivery(number: int, event_type: str, payload: dict[str, object]) -> Delivery:
    return Delivery(
        webhook_id=f"evt_{number:04d}",
        event_type=event_type,
        event_timestamp=1_705_000_000 + number,
        signed_at=1_705_000_000 + number,
        received_at="2024-01-15T10:30:00.000Z",
        signature=f"t=1705000000,v1={number:064x}",
        payload=msgspec.json.encode(payload),
        digests=(f"{number:064x}",),
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


@pytest.fixture
def database(tmp_path: Path) -> sqlite3.Connection:
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
    store = EventStore.open(tmp_path / "events.db")
    store.append([_delivery(n, kind, body) for n, (kind, body) in enumerate(events)])
    conn = projector.connect(tmp_path / "projections.db")
    runner = projector.Projector(conn, store, discover())
    runner.install_all()
    runner.catch_up()
    store.close()
    return conn


def test_readme_has_the_promised_queries() -> None:
    """The README shows the five example queries."""
    assert len(_queries()) == 5


def test_orders_per_status(database: sqlite3.Connection) -> None:
    """Orders are counted per status, most frequent first."""
    rows = database.execute(_queries()[0]).fetchall()
    assert rows[0] == ("active", 2)
    assert sorted(rows) == [("active", 2), ("cancelled", 1), ("completed", 1)]


def test_revenue_per_customer(database: sqlite3.Connection) -> None:
    """Revenue adds up each customer's orders that were not cancelled."""
    rows = database.execute(_queries()[1]).fetchall()
    assert [(r[0], r[3]) for r in rows] == [("cust_abc123", 150), ("cust_b", 30)]


def test_message_funnel(database: sqlite3.Connection) -> None:
    """Outbound messages are counted per status; inbound ones are left out."""
    rows = database.execute(_queries()[2]).fetchall()
    assert rows == [("read", 2), ("sent", 1)]


def test_vip_customers(database: sqlite3.Connection) -> None:
    """Only customers tagged vip that are not deleted are listed."""
    rows = database.execute(_queries()[3]).fetchall()
    assert rows == [("cust_abc123", "a@x.id", None, None)]


def test_line_items_of_a_customer(database: sqlite3.Connection) -> None:
    """One customer's line items come with their order numbers, in order."""
    rows = database.execute(_queries()[4]).fetchall()
    assert rows == [("0001", "Shirt", 1, 100), ("0002", "Shirt", 1, 50)]
