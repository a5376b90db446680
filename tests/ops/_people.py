"""A log about two customers who share a first name, one of whom is then forgotten."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import msgspec

from tests.projections._helpers import T0, Harness, delivery, iso

if TYPE_CHECKING:
    from pathlib import Path

    from app.eventlog.rows import Delivery

FORGOTTEN = "cust_alice"
KEPT = "cust_bob"
SHARED_NAME = "Budi"
# Distinctive values of the forgotten person, as they are written in the bodies.
ALICE = {
    "email": "alice.forgotten@example.com",
    "conflict_email": "alice.conflict@example.com",
    "phone": "+62 811-1111-2222",
    "address_phone": "081199998888",
    "last_name": "Sëntosörahasia",
    "image": "https://img.example/alice-secret.png",
    "street": "Jl. Melati Rahasia No. 7",
    "snapshot_street": "Blok Rahasia Snapshot 12",
    "shipping_street": "Jl. Kenanga Tersembunyi 3",
    "shipping_phone": "+6281277776666",
    "closure_street": "Jl. Closure Only 9",
    "message_in": "my secret question about parcel",
    "later_email": "alice.came.back@example.com",
}
BOB = {
    "email": "bob.keeps@example.com",
    "phone": "+6282233334444",
    "street": "Jl. Mawar Tetap 5",
    "message_in": "hello from bob, keep me",
}


def _address(street: str, phone: str, last_name: str) -> dict[str, Any]:
    return {
        "id": f"addr_{street[-2:].strip()}",
        "firstName": SHARED_NAME,
        "lastName": last_name,
        "phone": phone,
        "address1": street,
        "city": "Jakarta",
        "province": "DKI Jakarta",
        "country": "ID",
        "zip": "10110",
    }


def customer(customer_id: str, values: dict[str, str], **extra: Any) -> dict[str, Any]:
    """A customer body with `values`' email, phone and street."""
    last_name = values.get("last_name", "Tetap")
    body = {
        "id": customer_id,
        "email": values["email"],
        "phoneNumber": values["phone"],
        "firstName": SHARED_NAME,
        "lastName": last_name,
        "imageUrl": values.get("image"),
        "tags": ["vip"],
        "addresses": [_address(values["street"], values.get("address_phone", ""), last_name)],
        "createdAt": iso(T0),
        "updatedAt": iso(T0),
    }
    return body | extra


def order(order_id: str, customer_id: str, values: dict[str, str]) -> dict[str, Any]:
    """An order of `customer_id` with its embedded customer and shipping address."""
    return {
        "id": order_id,
        "orderId": f"ORD-{order_id}",
        "orderNumber": "1001",
        "status": "active",
        "financialStatus": "paid",
        "total": 150000.50,
        "currency": "IDR",
        "customer": {
            "id": customer_id,
            "firstName": SHARED_NAME,
            "lastName": values.get("last_name", "Tetap"),
            "email": values["email"],
            "phoneNumber": values["phone"],
        },
        "lineItems": [{"id": "li_1", "title": "Kaos", "quantity": 2, "price": 75000.25}],
        "shippingAddress": _address(
            values.get("shipping_street", values["street"]),
            values.get("shipping_phone", values["phone"]),
            values.get("last_name", "Tetap"),
        ),
        "tags": ["gift"],
        "createdAt": iso(T0),
        "updatedAt": iso(T0),
    }


def snapshot(event_type: str, body: dict[str, Any], webhook_id: str) -> Delivery:
    """A snapshot row as the sync stores it: unsigned, without a timestamp header."""
    signed = delivery(event_type, body, webhook_id=webhook_id)
    return msgspec.structs.replace(signed, signature="", event_timestamp=None)


def populate(directory: Path) -> None:
    """Two customers named Budi, their orders and messages, a snapshot and a conflict."""
    h = Harness(directory)
    try:
        alice = customer(FORGOTTEN, ALICE)
        h.log("customer.created", alice, webhook_id="wh-alice-created")
        h.log("customer.updated", alice | {"updatedAt": iso(T0 + 60)}, timestamp=T0 + 60)
        h.log("customer.created", customer(KEPT, BOB))
        h.log("order.created", order("order_a1", FORGOTTEN, ALICE))
        h.log("order.created", order("order_b1", KEPT, BOB))
        # No `customer` in it: found as an event of their order all the same.
        h.log(
            "order.updated",
            {
                "id": "order_a1",
                "status": "completed",
                "shippingAddress": {"address1": ALICE["closure_street"]},
                "updatedAt": iso(T0 + 120),
            },
            timestamp=T0 + 120,
        )
        h.log("message.received", {"messageId": "msg_a_in", "from": "+6281111112222",
                                   "body": ALICE["message_in"], "source": "WHATSAPP"})  # fmt: skip
        h.log("message.status.updated", {"messageId": "msg_a_out", "status": "sent",
                                         "to": "+62 811 9999 8888"})  # fmt: skip
        h.log("message.received", {"messageId": "msg_b_in", "from": BOB["phone"],
                                   "body": BOB["message_in"], "source": "WHATSAPP"})  # fmt: skip
        snap = customer(FORGOTTEN, ALICE | {"street": ALICE["snapshot_street"]})
        h.append([snapshot("customer.snapshot", snap, "snap-cust-alice")])
        h.append([snapshot("order.snapshot", order("order_a1", FORGOTTEN, ALICE), "snap-ord")])
        # The same webhook id with another body: kept aside as a conflicting duplicate.
        conflict = alice | {"email": ALICE["conflict_email"]}
        h.log("customer.created", conflict, webhook_id="wh-alice-created")
        h.project()
    finally:
        h.close()


def forms(value: str) -> list[bytes]:
    """The byte forms a value can be stored in: UTF-8, and JSON-escaped."""
    return list({value.encode(), json.dumps(value).encode()[1:-1]})
