"""A small account with every awkward case the views of SPEC section 11 must get right.

Two currencies and none; paid, pending and refunded; cancelled but paid; orders on both
sides of UTC midnight written with offsets (so that comparing their text would order
them wrongly); an order without `created_at`, one without a customer, one whose
customer the mirror never heard of; message statuses that arrive out of order or skip
stages, failed messages, a template nobody received; a customer's phone number written
four ways, and a number two customers share.

The expected rows of each view are worked out by hand below, not computed by code.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tests._helpers import T0, delivery

if TYPE_CHECKING:
    from app.eventlog.rows import Delivery


def _customer(
    customer_id: str, first: str, last: str, phone: str, created_at: str
) -> dict[str, Any]:
    return {
        "id": customer_id,
        "email": f"{first.lower()}@example.id",
        "phoneNumber": phone,
        "firstName": first,
        "lastName": last,
        "tags": ["vip"] if customer_id == "cust_ana" else [],
        "addresses": [{"id": f"addr_{customer_id}", "city": "Jakarta", "country": "ID"}],
        "createdAt": created_at,
        "updatedAt": created_at,
    }


CUSTOMERS = [
    _customer("cust_ana", "Ana", "Putri", "0812-1111-2222", "2024-03-01T09:00:00+07:00"),
    _customer("cust_budi", "Budi", "Santoso", "+62 813 3333 4444", "2024-03-04T10:00:00Z"),
    # A Sunday evening in New York is Monday in UTC: her week is the one of 11 March.
    _customer("cust_citra", "Citra", "Lestari", "6281355556666", "2024-03-10T23:30:00-05:00"),
    # Dewi and Eko share one number, written two ways.
    _customer("cust_dewi", "Dewi", "Sari", "0813-7777-8888", "2024-03-06T12:00:00Z"),
    _customer("cust_eko", "Eko", "Prasetyo", "+6281377778888", "2024-03-12T00:00:00.000Z"),
]


def _order(  # noqa: PLR0917 - one argument per column the views read
    order_id: str,
    customer: str | None,
    status: str | None,
    financial: str,
    total: float,
    currency: str | None,
    created_at: str | None,
) -> dict[str, Any]:
    order: dict[str, Any] = {
        "id": order_id,
        "orderNumber": order_id.removeprefix("order_"),
        "status": status,
        "financialStatus": financial,
        "total": total,
        "currency": currency,
        # The name on an order is not the customer's own: the views must not use it.
        "customer": None if customer is None else {"id": customer, "firstName": "On-the-order"},
        "lineItems": [{"id": f"li_{order_id}", "title": "Batik", "quantity": 1, "price": total}],
        "updatedAt": "2024-03-20T00:00:00Z",
    }
    if created_at is not None:
        order["createdAt"] = created_at
    return order


ORDERS = [
    # 23:30 UTC on 1 March, first pending, then paid (below).
    _order("order_01", "cust_ana", "active", "pending", 150000, "IDR", "2024-03-01T23:30:00Z"),
    # 06:59 in Jakarta on 2 March is 23:59 UTC on 1 March.
    _order("order_02", "cust_ana", "active", "paid", 50000, "IDR", "2024-03-02T06:59:00+07:00"),
    _order("order_03", "cust_ana", "active", "pending", 70000, "IDR", "2024-03-02T00:01:00Z"),
    # Cancelled, but paid: counts nowhere.
    _order("order_04", "cust_budi", "cancelled", "paid", 99000, "IDR", "2024-03-02T08:00:00+07:00"),
    _order("order_05", "cust_budi", "refunded", "refunded", 30.5, "USD", "2024-03-02T10:00:00Z"),
    _order("order_06", "cust_budi", "active", "paid", 19.99, "USD", "2024-03-02T12:00:00Z"),
    _order("order_07", "cust_citra", "active", "paid", 25000, None, "2024-03-02T13:00:00Z"),
    # Only an update ever arrived: no created_at.
    _order("order_08", "cust_citra", "archived", "paid", 10000, None, None),
    # A guest order.
    _order("order_09", None, "active", "paid", 5000, "IDR", "2024-03-02T14:00:00Z"),
    # No status (not cancelled); 05:00 in Jakarta is 22:00 UTC the day before.
    _order("order_10", "cust_ana", None, "paid", 1000, "IDR", "2024-03-02T05:00:00+07:00"),
    # A customer the mirror never heard of.
    _order("order_11", "cust_ghost", "active", "paid", 12000, "IDR", "2024-03-03T00:00:00.000Z"),
    # A day of cancelled orders only.
    _order(
        "order_12", "cust_budi", "cancelled", "pending", 40000, "IDR", "2024-03-05T09:00:00+07:00"
    ),
]

# (message id, template, recipient, statuses in the order they arrive)
OUTBOUND = [
    ("msg_01", "promo_march", "6281211112222", ["read", "sent", "delivered"]),
    ("msg_02", "promo_march", "+62 813-3333-4444", ["read"]),
    ("msg_03", "promo_march", "081355556666", ["sent", "failed"]),
    ("msg_04", "order_confirmation", "0812 1111 2222", ["delivered"]),
    ("msg_05", "win_back", "+1 555 0100", ["failed"]),
    ("msg_06", None, "0813 3333 4444", ["sent"]),
    ("msg_07", "order_confirmation", "00 62 812 1111 2222", ["pending"]),
]
# (message id, sender)
INBOUND = [
    ("msg_08", "+62 812 1111 2222"),
    ("msg_09", "0899 0000 1111"),
    ("msg_10", "081377778888"),
]


def deliveries() -> list[Delivery]:
    """The account's deliveries, in an order as BitByBit might send them."""
    ids = itertools.count(1)
    events: list[tuple[str, dict[str, Any]]] = []
    events += [("customer.created", c) for c in CUSTOMERS]
    for order in ORDERS:
        kind = "order.updated" if "createdAt" not in order else "order.created"
        events.append((kind, order))
    paid = {"id": "order_01", "financialStatus": "paid", "updatedAt": "2024-03-21T00:00:00Z"}
    events.append(("order.updated", paid))
    for message_id, template, recipient, statuses in OUTBOUND:
        for status in statuses:
            body = {"messageId": message_id, "status": status, "to": recipient}
            if template is not None:
                body["templateName"] = template
            events.append(("message.status.updated", body))
    for message_id, sender in INBOUND:
        events.append(
            ("message.received", {"messageId": message_id, "from": sender, "body": "Halo"})
        )
    return [
        delivery(kind, body, webhook_id=f"wh_account_{n:03d}", timestamp=T0 + n, signed_at=T0 + n)
        for n, (kind, body) in zip(ids, events, strict=False)
    ]


# The views' rows, worked out by hand; sorted as the tests sort them (NULLs first).
SALES_BY_DAY = [
    # day, currency, orders, paid_orders, paid_revenue
    (None, None, 1, 1, 10000),  # order_08, no created_at
    ("2024-03-01", "IDR", 3, 3, 201000),  # order_01, _02 (+07:00) and _10 (+07:00)
    ("2024-03-02", None, 1, 1, 25000),  # order_07
    ("2024-03-02", "IDR", 2, 1, 5000),  # order_03 pending, _09 paid; _04 cancelled
    ("2024-03-02", "USD", 2, 1, Decimal("19.99")),  # order_05 refunded, _06 paid
    ("2024-03-03", "IDR", 1, 1, 12000),  # order_11
    ("2024-03-05", "IDR", 0, 0, 0),  # order_12, cancelled
]
CUSTOMER_REVENUE = [
    # customer, first, last, email, currency, orders, paid, revenue, first at, last at
    (
        "cust_ana", "Ana", "Putri", "ana@example.id", "IDR", 4, 3, 201000,
        "2024-03-01T22:00:00.000Z", "2024-03-02T00:01:00.000Z",
    ),
    (
        "cust_budi", "Budi", "Santoso", "budi@example.id", "IDR", 0, 0, 0,
        "2024-03-02T01:00:00.000Z", "2024-03-05T02:00:00.000Z",
    ),
    (
        "cust_budi", "Budi", "Santoso", "budi@example.id", "USD", 2, 1, Decimal("19.99"),
        "2024-03-02T10:00:00.000Z", "2024-03-02T12:00:00.000Z",
    ),
    (
        "cust_citra", "Citra", "Lestari", "citra@example.id", None, 2, 2, 35000,
        "2024-03-02T13:00:00.000Z", "2024-03-02T13:00:00.000Z",
    ),
    (
        "cust_ghost", None, None, None, "IDR", 1, 1, 12000,
        "2024-03-03T00:00:00.000Z", "2024-03-03T00:00:00.000Z",
    ),
]  # fmt: skip
MESSAGE_FUNNEL = [
    # template, messages, sent, delivered, read, failed, read_rate
    (None, 1, 1, 0, 0, 0, 0.0),  # msg_06
    ("order_confirmation", 2, 1, 1, 0, 0, 0.0),  # msg_04 delivered only, _07 pending
    ("promo_march", 3, 3, 2, 2, 1, 2 / 3),  # msg_02 read only; msg_03 sent, then failed
    ("win_back", 1, 0, 0, 0, 1, None),  # msg_05 failed only: nothing sent
]
CUSTOMER_MESSAGES = [
    # message, direction, customer
    ("msg_01", "outbound", "cust_ana"),
    ("msg_02", "outbound", "cust_budi"),
    ("msg_03", "outbound", "cust_citra"),
    ("msg_04", "outbound", "cust_ana"),
    ("msg_05", "outbound", None),
    ("msg_06", "outbound", "cust_budi"),
    ("msg_07", "outbound", "cust_ana"),  # 00 62 …: the international prefix
    ("msg_08", "inbound", "cust_ana"),
    ("msg_09", "inbound", None),
    ("msg_10", "inbound", "cust_dewi"),  # a number two customers share
    ("msg_10", "inbound", "cust_eko"),
]
# The dashboard's other charts, over the tables.
ORDERS_BY_STATUS = [(None, 1), ("active", 7), ("archived", 1), ("cancelled", 2), ("refunded", 1)]
NEW_CUSTOMERS_PER_WEEK = [("2024-02-26", 1), ("2024-03-04", 2), ("2024-03-11", 2)]
