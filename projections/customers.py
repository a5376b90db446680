"""Customers and their addresses.

Decisions where the SPEC is silent:
- `addresses` is one register: the child rows are replaced whole when a newer event
  carries a non-empty list (or a `customer.created` carries any list).
- `addresses: null` clears the child rows, like any explicit null.
- Any event naming an id makes its row exist, even an update that carries no field.
- Two events with the same `updatedAt` are ordered by the timestamp header, then by
  webhook id (`_rules.event_version`); ids are unique in the log, so no two events
  tie and arrival order never decides.
"""

from __future__ import annotations

from msgspec import UNSET, Struct, UnsetType

from projections._changes import Change, deleted_entity, updated_entity
from projections._payloads import LenientDecoder, PostalAddress, Text
from projections._tables import (
    DELETED,
    JSON_LIST,
    POSITION_IN_LIST,
    SENT_AS_IS,
    ChildTable,
    EntityTable,
    Event,
    address_descriptions,
)

NAME = "customers"
# 3: the stored state keeps register versions only; the values are the row itself.
# 4: addresses declare their customer as a foreign key.
# 5: a field of an unexpected type is kept as JSON text, no longer dropping the customer.
VERSION = 5
EVENT_TYPES = frozenset(
    {
        "customer.created",
        "customer.updated",
        "customer.deleted",
        # Written by `sync` from the Open API: the whole entity, and "the API has it no more".
        "customer.snapshot",
        "customer.gone",
    }
)

ADDRESSES = ChildTable(
    name="customer_addresses",
    parent_column="customer_id",
    register="addresses",
    columns=(
        ("id", "TEXT"),
        ("first_name", "TEXT"),
        ("last_name", "TEXT"),
        ("phone", "TEXT"),
        ("address1", "TEXT"),
        ("address2", "TEXT"),
        ("city", "TEXT"),
        ("province", "TEXT"),
        ("country", "TEXT"),
        ("zip", "TEXT"),
    ),
    description="A customer's addresses, in the payload's order.",
    column_descriptions={
        "customer_id": "the customer (customers.id)",
        "position": POSITION_IN_LIST,
        "id": "the address's own id",
        "phone": "phone number on the address (personal data)",
        **address_descriptions(""),
    },
)
TABLE = EntityTable(
    name="customers",
    key="id",
    columns=(
        ("email", "TEXT"),
        ("phone_number", "TEXT"),
        ("first_name", "TEXT"),
        ("last_name", "TEXT"),
        ("image_url", "TEXT"),
        ("tags", "TEXT"),
        ("created_at", "TEXT"),
        ("updated_at", "TEXT"),
        ("deleted_at", "TEXT"),
    ),
    children=(ADDRESSES,),
    indexes=(("email",), ("phone_number",), ("created_at",)),
    description=(
        "One row per customer BitByBit told us about; each field holds the newest value sent."
    ),
    column_descriptions={
        "id": "BitByBit's customer id",
        "email": "email address (personal data)",
        "phone_number": "phone number (personal data)",
        "first_name": "first name (personal data)",
        "last_name": "last name (personal data)",
        "image_url": "profile picture address",
        "tags": f"the customer's tags, {JSON_LIST}",
        "created_at": f"when the customer was created, {SENT_AS_IS}",
        "updated_at": f"when the customer last changed, {SENT_AS_IS}",
        "deleted_at": DELETED,
    },
    label_column="email",
    json_columns=frozenset({"tags"}),
)


class Address(PostalAddress, rename="camel"):
    """One entry of a customer's `addresses`: a postal address with an id."""

    id: Text = UNSET


class Customer(Struct, rename="camel"):
    """The body of `customer.created`, `customer.updated` and `customer.snapshot`."""

    id: str
    email: Text = UNSET
    phone_number: Text = UNSET
    first_name: Text = UNSET
    last_name: Text = UNSET
    image_url: Text = UNSET
    tags: list[str] | UnsetType | None = UNSET
    addresses: list[Address] | UnsetType | None = UNSET
    created_at: Text = UNSET
    updated_at: Text = UNSET


_customer = LenientDecoder(Customer)


def apply(event: Event) -> list[Change]:
    """What one customer event says about its customer."""
    match event.event_type:
        case "customer.created" | "customer.updated" | "customer.snapshot":
            customer, odd = _customer.decode(event.payload)
            return [
                updated_entity(
                    customer.id, customer.updated_at, customer, event, children=[ADDRESSES], odd=odd
                )
            ]
        case "customer.deleted" | "customer.gone":
            return [deleted_entity(event)]
        case _:
            return []
