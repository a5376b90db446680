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

Its views answer "how much did I sell" (SPEC section 11); where the SPEC is silent:
- An order whose `created_at` is missing (an `order.updated` arrived, its
  `order.created` never did) or not an instant still counts: `sales_by_day` puts it in
  a row whose `day` is NULL, so that no order drops out of the totals, and
  `customer_revenue` counts it without letting it decide `first_order_at`.
- A row exists for every day, customer and currency with an order, cancelled ones
  included: a day of cancelled orders only shows `orders` 0, not nothing.
- `customer_revenue` leaves out orders without a customer (`customer_id` NULL); they
  are in `sales_by_day`. Its `first_order_at` and `last_order_at` span all the
  customer's orders in that currency, cancelled ones too.
- A paid order without a `total` adds 0 to `paid_revenue` (and counts in `paid_orders`).
- Amounts are summed as stored: exactly for integers (rupiah); SQLite adds fractional
  amounts in binary floating point, PostgreSQL's NUMERIC exactly.
"""

from __future__ import annotations

from msgspec import UNSET, Struct, UnsetType

from projections._changes import Change, updated_entity
from projections._payloads import Amount, LenientDecoder, PostalAddress, Text
from projections._tables import (
    JSON_LIST,
    POSITION_IN_LIST,
    SENT_AS_IS,
    UTC_DAY,
    UTC_INSTANT,
    ChildTable,
    EntityTable,
    Event,
    ForeignKey,
    View,
    address_descriptions,
)

NAME = "orders"
# 3: the stored state keeps register versions only; the values are the row itself.
# 4: `notes`, which the Open API's orders have (read by `sync` as `order.snapshot`).
# 5: the views `sales_by_day` and `customer_revenue`; foreign keys declared.
# 6: a field of an unexpected type is kept as JSON text, no longer dropping the order.
VERSION = 6
EVENT_TYPES = frozenset({"order.created", "order.updated", "order.snapshot"})

LINE_ITEMS = ChildTable(
    name="order_line_items",
    parent_column="order_id",
    register="line_items",
    columns=(("id", "TEXT"), ("title", "TEXT"), ("quantity", "NUMERIC"), ("price", "NUMERIC")),
    description="What was ordered, one row per line, in the payload's order.",
    column_descriptions={
        "order_id": "the order (orders.id)",
        "position": POSITION_IN_LIST,
        "id": "the line item's id",
        "title": "product title on the line",
        "quantity": "how many",
        "price": "unit price, the number sent",
    },
)

# "Counted as in sales_by_day" (SPEC section 11), for both views: an order counts unless
# it is cancelled (a NULL status is not), and it is paid when its financial status says
# so; a cancelled order is neither, even when it was paid.
_COUNTS = """\
    SUM(CASE WHEN o.status = 'cancelled' THEN 0 ELSE 1 END) AS orders,
    SUM(CASE WHEN o.status = 'cancelled' THEN 0 WHEN o.financial_status = 'paid' THEN 1 ELSE 0 END)
        AS paid_orders,
    SUM(CASE WHEN o.status = 'cancelled' THEN 0
        WHEN o.financial_status = 'paid' THEN COALESCE(o.total, 0) ELSE 0 END) AS paid_revenue"""
_COUNT_DESCRIPTIONS = {
    "orders": "orders not cancelled (a NULL status is not cancelled)",
    "paid_orders": "of those, the ones whose financial_status is paid",
    "paid_revenue": "the sum of their total, 0 when there are none; never across currencies",
}

SALES_BY_DAY = View(
    name="sales_by_day",
    sql=f"""\
SELECT
    strftime({UTC_DAY}, o.created_at) AS day,
    o.currency,
{_COUNTS}
FROM orders AS o
GROUP BY strftime({UTC_DAY}, o.created_at), o.currency""",
    description=(
        "Sales per UTC day and currency: every day on which an order was created. "
        "Revenue counts paid orders only, never cancelled ones."
    ),
    column_descriptions={
        "day": (
            "the UTC date of created_at read as an instant, YYYY-MM-DD (an order of "
            "2024-03-02T06:59:00+07:00 is on 2024-03-01); NULL for orders without one"
        ),
        "currency": "currency code; NULL (none sent) is a group of its own",
        **_COUNT_DESCRIPTIONS,
    },
    sort_desc="day",
)
CUSTOMER_REVENUE = View(
    name="customer_revenue",
    sql=f"""\
SELECT
    o.customer_id,
    c.first_name,
    c.last_name,
    c.email,
    o.currency,
{_COUNTS},
    MIN(strftime({UTC_INSTANT}, o.created_at)) AS first_order_at,
    MAX(strftime({UTC_INSTANT}, o.created_at)) AS last_order_at
FROM orders AS o
LEFT JOIN customers AS c ON c.id = o.customer_id
WHERE o.customer_id IS NOT NULL
GROUP BY o.customer_id, c.first_name, c.last_name, c.email, o.currency""",
    description=(
        "Each customer's orders and paid revenue, per currency. Names and email come "
        "from the customer's own row, never from an order."
    ),
    column_descriptions={
        "customer_id": "the customer (customers.id)",
        "first_name": "the customer's first name, from customers (personal data)",
        "last_name": "the customer's last name, from customers (personal data)",
        "email": "the customer's email, from customers (personal data)",
        "currency": "currency code; NULL (none sent) is a group of its own",
        **_COUNT_DESCRIPTIONS,
        "first_order_at": "their earliest order's created_at, as ISO 8601 UTC (…Z)",
        "last_order_at": "their latest order's created_at, as ISO 8601 UTC (…Z)",
    },
    sort_desc="paid_revenue",
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
    description=(
        "One row per order; its customer and shipping address are flattened into columns."
    ),
    column_descriptions={
        "id": "BitByBit's order id",
        "order_id": "the shop's own order id",
        "order_number": "the order number the customer sees",
        "status": "order status: active, archived, cancelled or refunded",
        "fulfillment_status": "fulfillment status: unfulfilled or fulfilled",
        "financial_status": "payment status: pending, paid or refunded",
        "total": "order total, the number sent",
        "currency": "currency code (BitByBit may send none)",
        "customer_id": "the ordering customer (customers.id)",
        "customer_first_name": "customer's first name as on the order (personal data)",
        "customer_last_name": "customer's last name as on the order (personal data)",
        "customer_email": "customer's email as on the order (personal data)",
        "customer_phone_number": "customer's phone as on the order (personal data)",
        "shipping_phone": "phone number for delivery (personal data)",
        **address_descriptions("shipping_"),
        "tags": f"the order's tags, {JSON_LIST}",
        "created_at": f"when the order was placed, {SENT_AS_IS}",
        "updated_at": f"when the order last changed, {SENT_AS_IS}",
        "notes": "the merchant's notes on the order, read from the Open API by sync",
    },
    # Declared for links and joins, never enforced: an order may arrive before its customer.
    references=(ForeignKey("customer_id", "customers", "id"),),
    views=(SALES_BY_DAY, CUSTOMER_REVENUE),
    label_column="order_number",
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


_order = LenientDecoder(Order)
_NESTED = {"customer": "customer_", "shipping_address": "shipping_"}


def apply(event: Event) -> list[Change]:
    """What one order event says about its order."""
    match event.event_type:
        case "order.created" | "order.updated" | "order.snapshot":
            order, odd = _order.decode(event.payload)
            return [
                updated_entity(
                    order.id,
                    order.updated_at,
                    order,
                    event,
                    nested=_NESTED,
                    children=[LINE_ITEMS],
                    odd=odd,
                )
            ]
        case _:
            return []
