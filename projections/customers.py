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

import msgspec
from msgspec import UNSET, Struct, UnsetType

from projections._changes import Change, deleted_entity, updated_entity
from projections._payloads import PostalAddress, Text
from projections._tables import ChildTable, EntityTable, Event

NAME = "customers"
# 3: the stored state keeps register versions only; the values are the row itself.
VERSION = 3
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


_customer = msgspec.json.Decoder(Customer)


def apply(event: Event) -> list[Change]:
    """What one customer event says about its customer."""
    match event.event_type:
        case "customer.created" | "customer.updated" | "customer.snapshot":
            customer = _customer.decode(event.payload)
            return [
                updated_entity(
                    customer.id, customer.updated_at, customer, event, children=[ADDRESSES]
                )
            ]
        case "customer.deleted" | "customer.gone":
            return [deleted_entity(event)]
        case _:
            return []
