"""Sample bodies for every event type of BitByBit's catalogue, for `send-test`.

They follow the examples of `reference/bitbybit-webhook-events.md`, with the times of
the moment they are sent, and name the same customer, order and product every time, so
repeated test deliveries show one row each in the projection tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from app.instants import format_instant
from app.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

# Where `serve` listens by default, so `send-test` works with no options.
DEFAULT_URL = f"http://{Settings().host}:{Settings().port}/webhooks"

CUSTOMER_ID = "cust_sendtest01"
ORDER_ID = "order_sendtest01"
PRODUCT_ID = "prod_sendtest01"
INBOUND_MESSAGE_ID = "msg_sendtest_in01"
OUTBOUND_MESSAGE_ID = "msg_sendtest_out01"
PHONE = "+6281234567890"

# An update is stamped a minute after its entity's creation so that it wins the
# field-level last-writer rule however the two arrive.
_CREATED_EARLIER_SECONDS = 60

_encode = msgspec.json.encode


def _customer_created(now: float) -> dict[str, object]:
    created = format_instant(now - _CREATED_EARLIER_SECONDS)
    return {
        "id": CUSTOMER_ID,
        "email": "john@example.com",
        "phoneNumber": PHONE,
        "firstName": "John",
        "lastName": "Doe",
        "imageUrl": None,
        "tags": ["new-customer"],
        "addresses": [
            {
                "id": "addr_sendtest01",
                "firstName": "John",
                "lastName": "Doe",
                "phone": PHONE,
                "address1": "Jl. Sudirman No. 1",
                "city": "Jakarta",
                "province": "DKI Jakarta",
                "country": "ID",
                "zip": "10110",
            }
        ],
        "createdAt": created,
        "updatedAt": created,
    }


def _customer_updated(now: float) -> dict[str, object]:
    return {
        "id": CUSTOMER_ID,
        "email": "john.updated@example.com",
        "phoneNumber": PHONE,
        "firstName": "John",
        "lastName": "Doe",
        "imageUrl": None,
        "tags": ["vip"],
        "addresses": [],
        "createdAt": format_instant(now - _CREATED_EARLIER_SECONDS),
        "updatedAt": format_instant(now),
    }


def _customer_deleted(_now: float) -> dict[str, object]:
    return {"id": CUSTOMER_ID}


def _order_created(now: float) -> dict[str, object]:
    created = format_instant(now - _CREATED_EARLIER_SECONDS)
    return {
        "id": ORDER_ID,
        "orderId": "ORD-TEST-001",
        "orderNumber": "1001",
        "status": "active",
        "fulfillmentStatus": "unfulfilled",
        "financialStatus": "pending",
        "total": 150000,
        "currency": None,
        "customer": {
            "id": CUSTOMER_ID,
            "firstName": "John",
            "lastName": "Doe",
            "email": "john@example.com",
            "phoneNumber": PHONE,
        },
        "lineItems": [
            {"id": "li_sendtest01", "quantity": 2, "price": 75000, "title": "Premium T-Shirt"}
        ],
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
        "createdAt": created,
        "updatedAt": created,
    }


def _order_updated(now: float) -> dict[str, object]:
    return {
        "id": ORDER_ID,
        "orderId": "ORD-TEST-001",
        "status": "active",
        "fulfillmentStatus": "fulfilled",
        "financialStatus": "paid",
        "total": 150000,
        "customer": {"id": CUSTOMER_ID, "firstName": "John", "lastName": "Doe"},
        "lineItems": [],
        "tags": [],
        "createdAt": format_instant(now - _CREATED_EARLIER_SECONDS),
        "updatedAt": format_instant(now),
    }


def _product_created(now: float) -> dict[str, object]:
    created = format_instant(now - _CREATED_EARLIER_SECONDS)
    return {
        "id": PRODUCT_ID,
        "productId": "PROD-TEST-001",
        "name": "Premium T-Shirt",
        "description": "High-quality cotton t-shirt",
        "media": None,
        "status": None,
        "variants": [
            {"id": "var_sendtest01", "key": "Default", "price": 75000, "inventorySku": "TSH-001"}
        ],
        "options": [],
        "tags": ["apparel"],
        "types": [],
        "createdAt": created,
        "updatedAt": created,
    }


def _product_updated(now: float) -> dict[str, object]:
    return {
        "id": PRODUCT_ID,
        "productId": "PROD-TEST-001",
        "name": "Premium T-Shirt (Updated)",
        "description": "Updated description",
        "variants": [],
        "options": [],
        "tags": [],
        "types": [],
        "createdAt": format_instant(now - _CREATED_EARLIER_SECONDS),
        "updatedAt": format_instant(now),
    }


def _product_deleted(_now: float) -> dict[str, object]:
    return {"id": PRODUCT_ID}


def _message_received(now: float) -> dict[str, object]:
    return {
        "messageId": INBOUND_MESSAGE_ID,
        "from": PHONE,
        "body": "Hi, I have a question about my order",
        "source": "WHATSAPP_META",
        "receivedAt": format_instant(now),
    }


def _message_status_updated(_now: float) -> dict[str, object]:
    return {
        "messageId": OUTBOUND_MESSAGE_ID,
        "status": "sent",
        "to": PHONE,
        "templateName": "order_confirmation",
    }


# In the catalogue's order, which is also a sensible order to send them in: each entity
# is created before it is updated and deleted.
_BUILDERS: dict[str, Callable[[float], dict[str, object]]] = {
    "customer.created": _customer_created,
    "customer.updated": _customer_updated,
    "customer.deleted": _customer_deleted,
    "order.created": _order_created,
    "order.updated": _order_updated,
    "product.created": _product_created,
    "product.updated": _product_updated,
    "product.deleted": _product_deleted,
    "message.received": _message_received,
    "message.status.updated": _message_status_updated,
}

EVENT_TYPES: tuple[str, ...] = tuple(_BUILDERS)


def sample_body(event_type: str, now: float) -> bytes:
    """A realistic JSON body for `event_type`, stamped with the time `now`."""
    return _encode(_BUILDERS[event_type](now))
