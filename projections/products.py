"""Products and their variants.

Decisions where the SPEC is silent:
- `media`, `options`, `tags` and `types` are stored as JSON text whatever their items
  are; `media: null` stores NULL.
- `variants` is one register, replaced whole like every list.
- Two events with the same `updatedAt` are ordered by the timestamp header, then by
  webhook id (`_rules.event_version`); ids are unique in the log, so no two events
  tie and arrival order never decides.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, Struct, UnsetType

from projections._changes import Change, deleted_entity, updated_entity
from projections._payloads import Text
from projections._tables import ChildTable, EntityTable, Event

NAME = "products"
# 3: the stored state keeps register versions only; the values are the row itself.
VERSION = 3
EVENT_TYPES = frozenset(
    {
        "product.created",
        "product.updated",
        "product.deleted",
        # Written by `sync` from the Open API: the whole entity, and "the API has it no more".
        "product.snapshot",
        "product.gone",
    }
)

VARIANTS = ChildTable(
    name="product_variants",
    parent_column="product_id",
    register="variants",
    columns=(("id", "TEXT"), ("key", "TEXT"), ("price", "NUMERIC"), ("inventory_sku", "TEXT")),
)
TABLE = EntityTable(
    name="products",
    key="id",
    columns=(
        ("product_id", "TEXT"),
        ("name", "TEXT"),
        ("description", "TEXT"),
        ("media", "TEXT"),
        ("status", "TEXT"),
        ("options", "TEXT"),
        ("tags", "TEXT"),
        ("types", "TEXT"),
        ("created_at", "TEXT"),
        ("updated_at", "TEXT"),
        ("deleted_at", "TEXT"),
    ),
    children=(VARIANTS,),
    indexes=(("product_id",), ("status",)),
    json_columns=frozenset({"media", "options", "tags", "types"}),
)

AnyList = list[Any] | None | UnsetType


class Variant(Struct, rename="camel"):
    """One entry of a product's `variants`."""

    id: Text = UNSET
    key: Text = UNSET
    price: int | float | UnsetType | None = UNSET
    inventory_sku: Text = UNSET


class Product(Struct, rename="camel"):
    """The body of `product.created`, `product.updated` and `product.snapshot`."""

    id: str
    product_id: Text = UNSET
    name: Text = UNSET
    description: Text = UNSET
    media: AnyList = UNSET
    status: Text = UNSET
    variants: list[Variant] | UnsetType | None = UNSET
    options: AnyList = UNSET
    tags: AnyList = UNSET
    types: AnyList = UNSET
    created_at: Text = UNSET
    updated_at: Text = UNSET


_product = msgspec.json.Decoder(Product)


def apply(event: Event) -> list[Change]:
    """What one product event says about its product."""
    match event.event_type:
        case "product.created" | "product.updated" | "product.snapshot":
            product = _product.decode(event.payload)
            return [
                updated_entity(product.id, product.updated_at, product, event, children=[VARIANTS])
            ]
        case "product.deleted" | "product.gone":
            return [deleted_entity(event)]
        case _:
            return []
