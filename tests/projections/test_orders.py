"""Orders and their line items: events in, `SELECT` out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests._helpers import T0, Harness, rebuilt, sample

if TYPE_CHECKING:
    from pathlib import Path

ID = "order_def456"
UPDATED_AT = 1705417200  # 2024-01-16T15:00:00Z, after the sample update's `updatedAt`

EXPECTED: dict[str, Any] = {
    "id": ID,
    "order_id": "ORD-001",
    "order_number": "1001",
    "status": "active",
    "fulfillment_status": "fulfilled",
    "financial_status": "paid",
    "total": 150000,
    "currency": None,
    "notes": None,  # webhook bodies carry no notes; only the Open API's snapshots do
    "customer_id": "cust_abc123",
    "customer_first_name": "John",
    "customer_last_name": "Doe",
    "customer_email": "john@example.com",
    "customer_phone_number": "+6281234567890",
    "shipping_first_name": "John",
    "shipping_last_name": "Doe",
    "shipping_phone": None,
    "shipping_address1": "Jl. Sudirman No. 1",
    "shipping_address2": None,
    "shipping_city": "Jakarta",
    "shipping_province": "DKI Jakarta",
    "shipping_country": "ID",
    "shipping_zip": "10110",
    "tags": "[]",
    "created_at": "2024-01-15T10:30:00.000Z",
    "updated_at": "2024-01-16T14:00:00.000Z",
}
LINE_ITEM = {
    "order_id": ID,
    "position": 0,
    "id": "li_001",
    "title": "Premium T-Shirt",
    "quantity": 2,
    "price": 75000,
}


def order(harness: Harness, key: str = ID) -> dict[str, Any]:
    row = harness.row("orders", key)
    assert row is not None
    return row


def line_items(harness: Harness, key: str = ID) -> list[dict[str, Any]]:
    return harness.children("order_line_items", "order_id", key)


def test_created_sample_gives_every_column(harness: Harness) -> None:
    """The documented `order.created` fills every column, the customer and the address."""
    harness.send("order.created", sample("order.created"))

    assert order(harness) == {
        **EXPECTED,
        "fulfillment_status": "unfulfilled",
        "financial_status": "pending",
        "updated_at": "2024-01-15T10:30:00.000Z",
    }
    assert line_items(harness) == [LINE_ITEM]
    assert harness.errors() == []


def test_samples_in_order(harness: Harness) -> None:
    """Created then updated: the update's statuses win, the rest of the create stays."""
    harness.send("order.created", sample("order.created"), timestamp=T0)
    harness.send("order.updated", sample("order.updated"), timestamp=UPDATED_AT)

    assert order(harness) == EXPECTED
    assert line_items(harness) == [LINE_ITEM]


def test_amounts_are_numeric(harness: Harness) -> None:
    """Totals, quantities and prices keep the JSON number sent: integer or real."""
    harness.send(
        "order.created",
        sample(
            "order.created",
            total=150000.5,
            lineItems=[{"id": "li_1", "quantity": 2, "price": 75000.25, "title": "T"}],
        ),
    )

    types = harness.select("SELECT typeof(total) AS t FROM orders")
    assert types == [{"t": "real"}]
    assert order(harness)["total"] == 150000.5
    [item] = harness.select(
        "SELECT typeof(quantity) AS q, typeof(price) AS p, price FROM order_line_items"
    )
    assert item == {"q": "integer", "p": "real", "price": 75000.25}


def test_update_before_create(harness: Harness, tmp_path: Path) -> None:
    """A late create fills `order_number` and the address; the newer status stays."""
    harness.send("order.updated", sample("order.updated", status="cancelled"), timestamp=UPDATED_AT)
    harness.send("order.created", sample("order.created"), timestamp=T0)

    assert order(harness) == {**EXPECTED, "status": "cancelled"}
    assert line_items(harness) == [LINE_ITEM]

    in_order = Harness(tmp_path / "in_order")
    try:
        in_order.send("order.created", sample("order.created"), timestamp=T0)
        in_order.send(
            "order.updated", sample("order.updated", status="cancelled"), timestamp=UPDATED_AT
        )
        assert in_order.select("SELECT * FROM orders") == harness.select("SELECT * FROM orders")
    finally:
        in_order.close()


def test_customer_null_clears_customer_columns(harness: Harness) -> None:
    """`customer: null` in a newer update sets every `customer_*` column NULL."""
    harness.send("order.created", sample("order.created"), timestamp=T0)
    harness.send("order.updated", sample("order.updated", customer=None), timestamp=UPDATED_AT)

    row = order(harness)
    assert [row[c] for c in row if c.startswith("customer_")] == [None] * 5
    assert row["shipping_city"] == "Jakarta"


def test_older_customer_null_does_not_clear_newer_customer(harness: Harness) -> None:
    """A `customer: null` older than the customer's leaves loses, leaf by leaf."""
    harness.send("order.updated", sample("order.updated"), timestamp=UPDATED_AT)
    harness.send("order.created", sample("order.created", customer=None), timestamp=T0)

    row = order(harness)
    assert row["customer_id"] == "cust_abc123"
    assert row["customer_first_name"] == "John"
    # The update did not carry these leaves, so the older create's null is the newest.
    assert row["customer_email"] is None
    assert row["customer_phone_number"] is None


def test_nested_leaves_are_registers(harness: Harness) -> None:
    """A newer `customer` without `email` changes what it carries and keeps the email."""
    harness.send("order.created", sample("order.created"), timestamp=T0)
    harness.send(
        "order.updated",
        sample("order.updated", customer={"id": "cust_abc123", "firstName": "Johnny"}),
        timestamp=UPDATED_AT,
    )

    row = order(harness)
    assert row["customer_first_name"] == "Johnny"
    assert row["customer_last_name"] == "Doe"
    assert row["customer_email"] == "john@example.com"


def test_shipping_address_null_clears_shipping_columns(harness: Harness) -> None:
    """`shippingAddress: null` in a newer event sets every `shipping_*` column NULL."""
    harness.send("order.created", sample("order.created"), timestamp=T0)
    harness.send(
        "order.updated", sample("order.updated", shippingAddress=None), timestamp=UPDATED_AT
    )

    row = order(harness)
    assert [row[c] for c in row if c.startswith("shipping_")] == [None] * 9


def test_explicit_null_sets_null_absent_field_keeps_value(harness: Harness) -> None:
    """`currency: null` clears it; `orderNumber`, absent from the update, stays."""
    harness.send("order.created", sample("order.created", currency="IDR"), timestamp=T0)
    harness.send("order.updated", sample("order.updated", currency=None), timestamp=UPDATED_AT)

    row = order(harness)
    assert row["currency"] is None
    assert row["order_number"] == "1001"


def test_empty_lists_in_update_are_not_carried(harness: Harness) -> None:
    """`lineItems: []` and `tags: []` in `order.updated` keep the previous lists."""
    harness.send("order.created", sample("order.created", tags=["gift"]), timestamp=T0)
    harness.send("order.updated", sample("order.updated"), timestamp=UPDATED_AT)

    assert order(harness)["tags"] == '["gift"]'
    assert line_items(harness) == [LINE_ITEM]


def test_empty_lists_in_create_are_carried(harness: Harness) -> None:
    """`lineItems: []` in `order.created` means no line items; `tags: []` is `[]`."""
    harness.send("order.created", sample("order.created", lineItems=[]))

    assert line_items(harness) == []
    assert order(harness)["tags"] == "[]"


def test_only_empty_lists_in_update_leave_columns_null(harness: Harness) -> None:
    """An update whose lists are all empty writes no list at all."""
    harness.send("order.updated", sample("order.updated"))

    assert order(harness)["tags"] is None
    assert line_items(harness) == []


def test_line_items_replaced_whole(harness: Harness) -> None:
    """A newer non-empty `lineItems` replaces every row, in payload order."""
    harness.send("order.created", sample("order.created"), timestamp=T0)
    items = [
        {"id": "li_9", "quantity": 1, "price": 10, "title": "Socks"},
        {"id": "li_8", "quantity": 3, "price": 20, "title": "Cap"},
    ]
    harness.send("order.updated", sample("order.updated", lineItems=items), timestamp=UPDATED_AT)

    assert [(r["position"], r["id"], r["title"]) for r in line_items(harness)] == [
        (0, "li_9", "Socks"),
        (1, "li_8", "Cap"),
    ]


def test_older_line_items_do_not_replace_newer(harness: Harness) -> None:
    """A late create's line items lose to a newer update's."""
    items = [{"id": "li_new", "quantity": 1, "price": 1, "title": "New"}]
    harness.send("order.updated", sample("order.updated", lineItems=items), timestamp=UPDATED_AT)
    harness.send("order.created", sample("order.created"), timestamp=T0)

    assert [r["id"] for r in line_items(harness)] == ["li_new"]


def test_same_updated_at_tie_goes_to_timestamp_then_webhook_id(harness: Harness) -> None:
    """Equal `updatedAt`: the larger header wins; equal headers: the larger webhook id."""
    same = "2024-01-16T14:00:00.000Z"
    harness.send("order.updated", {"id": ID, "status": "a", "updatedAt": same}, timestamp=T0 + 5)
    harness.send("order.updated", {"id": ID, "status": "b", "updatedAt": same}, timestamp=T0)
    assert order(harness)["status"] == "a"

    harness.send(
        "order.updated",
        {"id": ID, "financialStatus": "paid", "updatedAt": same},
        webhook_id="wh-z",
        timestamp=T0,
    )
    harness.send(
        "order.updated",
        {"id": ID, "financialStatus": "refunded", "updatedAt": same},
        webhook_id="wh-a",
        timestamp=T0,
    )
    assert order(harness)["financial_status"] == "paid"


def test_order_deleted_is_not_read(harness: Harness) -> None:
    """The catalogue has no `order.deleted`: such an event changes nothing."""
    harness.send("order.created", sample("order.created"))
    harness.send("order.deleted", {"id": ID})

    assert order(harness)["status"] == "active"
    assert harness.errors() == []


def test_rebuild_equals_live(harness: Harness, tmp_path: Path) -> None:
    """Projecting event by event equals one catch-up over the same log."""
    harness.send("order.updated", sample("order.updated"), timestamp=UPDATED_AT)
    harness.send("order.created", sample("order.created"), timestamp=T0)
    harness.send("order.updated", sample("order.updated", customer=None), timestamp=T0 + 1)

    assert rebuilt(tmp_path / "rebuild", harness.store) == harness.dump()
