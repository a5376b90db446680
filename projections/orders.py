"""Orders and their line items.

Decisions where the SPEC is silent:
- `customer` and `shippingAddress` are flattened to `customer_*` and `shipping_*`
  columns, each leaf its own register. `customer: null` (or `shippingAddress: null`) in
  a newer event sets all of that object's columns to NULL: the sender says the order has
  none. A leaf absent from the object leaves its column alone.
- The SPEC lists no `deleted_at` for orders and the catalogue has no `order.deleted`,
  so this projection reads only `order.created`, `order.updated` and the Open API's
  `order.snapshot` (orders have no `*.gone` either).
- Two events with the same `updatedAt` are ordered by the timestamp header, then by
  webhook id (`_rules.event_version`); ids are unique in the log, so no two events
  tie and arrival order never decides.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, Struct, UnsetType

from projections._changes import Change, updated_entity
from projections._payloads import Amount, PostalAddress, Text
from projections._tables import ChildTable, EntityTable, Event

NAME = "orders"
# 3: the stored state keeps register versions only; the values are the row itself.
# 4: `notes`, which the Open API's orders have (read by `sync` as `order.snapshot`).
VERSION = 4
EVENT_TYPES = frozenset({"order.created", "order.updated", "order.snapshot"})

LINE_ITEMS = ChildTable(
    name="order_line_items",
    parent_column="order_id",
    register="line_items",
    columns=(("id", "TEXT"), ("title", "TEXT"), ("quantity", "NUMERIC"), ("price", "NUMERIC")),
)
TABLE = EntityTable(
    name="orders",
    key="id",
    columns=(
        ("order_id", "TEXT"),
        ("order_number", "TEXT"),
        ("status", "TEXT"),
        ("fulfillment_status", "TEXT"),
        ("financial_status", "TEXT"),
        ("total", "NUMERIC"),
        ("currency", "TEXT"),
        ("customer_id", "TEXT"),
        ("customer_first_name", "TEXT"),
        ("customer_last_name", "TEXT"),
        ("customer_email", "TEXT"),
        ("customer_phone_number", "TEXT"),
        ("shipping_first_name", "TEXT"),
        ("shipping_last_name", "TEXT"),
        ("shipping_phone", "TEXT"),
        ("shipping_address1", "TEXT"),
        ("shipping_address2", "TEXT"),
        ("shipping_city", "TEXT"),
        ("shipping_province", "TEXT"),
        ("shipping_country", "TEXT"),
        ("shipping_zip", "TEXT"),
        ("tags", "TEXT"),
        ("created_at", "TEXT"),
        ("updated_at", "TEXT"),
        # Beyond SPEC section 5, last so that its columns keep their order.
        ("notes", "TEXT"),
    ),
    children=(LINE_ITEMS,),
    indexes=(("customer_id",), ("status",), ("created_at",), ("order_id",)),
    json_columns=frozenset({"tags"}),
)


class LineItem(Struct, rename="camel"):
    """One entry of an order's `lineItems`."""

    id: Text = UNSET
    title: Text = UNSET
    quantity: Amount = UNSET
    price: Amount = UNSET


class OrderCustomer(Struct, rename="camel"):
    """The customer as embedded in an order."""

    id: Text = UNSET
    first_name: Text = UNSET
    last_name: Text = UNSET
    email: Text = UNSET
    phone_number: Text = UNSET


class Order(Struct, rename="camel"):
    """The body of `order.created`, `order.updated` and `order.snapshot`."""

    id: str
    order_id: Text = UNSET
    order_number: Text = UNSET
    status: Text = UNSET
    fulfillment_status: Text = UNSET
    financial_status: Text = UNSET
    total: Amount = UNSET
    currency: Text = UNSET
    notes: Text = UNSET
    customer: OrderCustomer | UnsetType | None = UNSET
    line_items: list[LineItem] | UnsetType | None = UNSET
    shipping_address: PostalAddress | UnsetType | None = UNSET
    tags: list[str] | UnsetType | None = UNSET
    created_at: Text = UNSET
    updated_at: Text = UNSET


_order = msgspec.json.Decoder(Order)
_NESTED = {"customer": "customer_", "shipping_address": "shipping_"}


def apply(event: Event) -> list[Change]:
    """What one order event says about its order."""
    match event.event_type:
        case "order.created" | "order.updated" | "order.snapshot":
            order = _order.decode(event.payload)
            return [
                updated_entity(
                    order.id, order.updated_at, order, event, nested=_NESTED, children=[LINE_ITEMS]
                )
            ]
        case _:
            return []
