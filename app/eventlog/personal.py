"""Which values of a logged body are a person's, and how a body is redacted.

The one place that knows where personal values sit in BitByBit's bodies (SPEC §9):
names, email, phone numbers and image URL of a customer, every field but `id` of their
addresses, of an order's `customer` and of its shipping (and billing) address, and a
message's `from`, `to` and `body`. Redacting sets exactly those to `null`; ids,
amounts, statuses, tags, timestamps and the structure stay, so a redacted body still
projects to the same rows with their personal columns NULL.

Snapshots of the sync (`customer.snapshot`, `order.snapshot`) are the entities as the
Open API returns them, with the same field names, and are redacted by the same rules.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

CUSTOMER_TYPES = frozenset(
    {
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "customer.snapshot",
        "customer.gone",
    }
)
ORDER_TYPES = frozenset({"order.created", "order.updated", "order.snapshot"})
MESSAGE_TYPES = frozenset({"message.received", "message.status.updated"})

# Where each kind of body names its entity (the same paths the projections key on).
CUSTOMER_KEY = "$.id"
ORDER_KEY = "$.id"
ORDER_CUSTOMER_KEY = "$.customer.id"
MESSAGE_KEY = "$.messageId"

_CUSTOMER_FIELDS = ("email", "phoneNumber", "firstName", "lastName", "imageUrl")
_ORDER_OBJECTS = ("customer", "shippingAddress", "billingAddress")
_MESSAGE_FIELDS = {"message.received": ("from", "body"), "message.status.updated": ("to",)}
# The one field of an embedded object or address that is not the person's.
_KEPT = "id"

_NOT_DIGITS = re.compile(r"\D")


def normalise_phone(text: object) -> str | None:
    """A phone number as digits with its country code, so `+62 812-345` and `0812345` meet.

    Indonesian numbers are written both ways: a leading `0` (a national number) becomes
    `62`. Anything with fewer than 6 digits is not taken for a phone number.
    """
    if not isinstance(text, str):
        return None
    digits = _NOT_DIGITS.sub("", text)
    if digits.startswith("0"):
        digits = "62" + digits[1:]
    return digits if len(digits) >= 6 else None


def phones_in(event_type: str, body: object) -> set[str]:
    """The normalised phone numbers a customer or order body holds for its person."""
    if not isinstance(body, dict):
        return set()
    found: list[object] = []
    if event_type in CUSTOMER_TYPES:
        found.append(body.get("phoneNumber"))
        addresses = body.get("addresses")
        if isinstance(addresses, list):
            found.extend(a.get("phone") for a in addresses if isinstance(a, dict))
    elif event_type in ORDER_TYPES:
        for name, field in (("customer", "phoneNumber"), ("shippingAddress", "phone")):
            embedded = body.get(name)
            if isinstance(embedded, dict):
                found.append(embedded.get(field))
    return {phone for value in found if (phone := normalise_phone(value))}


def decode(payload: bytes) -> Any:  # noqa: ANN401 - a JSON body is any JSON value
    """The body as Python values, or None when it is not JSON (it then holds nothing known)."""
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None


def redact(event_type: str, payload: bytes) -> bytes | None:
    """The body with its personal values set to null; None if it has none left to redact.

    Numbers keep their values and keys their order; only the personal values change
    (and the whitespace between tokens, which carries no meaning).
    """
    body = decode(payload)
    if not isinstance(body, dict) or not _redact_body(event_type, body):
        return None
    return msgspec.json.encode(body)


def _redact_body(event_type: str, body: dict[str, Any]) -> bool:
    """Null the personal values of `body` in place; whether any was not null already."""
    changed = False
    if event_type in CUSTOMER_TYPES:
        changed |= _null(body, _CUSTOMER_FIELDS)
        addresses = body.get("addresses")
        if isinstance(addresses, list):
            for address in addresses:
                changed |= _null_all_but_id(address)
    elif event_type in ORDER_TYPES:
        for name in _ORDER_OBJECTS:
            changed |= _null_all_but_id(body.get(name))
    else:
        changed |= _null(body, _MESSAGE_FIELDS.get(event_type, ()))
    return changed


def _null(body: dict[str, Any], fields: tuple[str, ...]) -> bool:
    changed = False
    for field in fields:
        if body.get(field) is not None:
            body[field] = None
            changed = True
    return changed


def _null_all_but_id(embedded: object) -> bool:
    if not isinstance(embedded, dict):
        return False
    return _null(embedded, tuple(key for key in embedded if key != _KEPT))
