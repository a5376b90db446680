"""Products and their variants.

Decisions where the SPEC is silent:
- `media`, `options`, `tags` and `types` are stored as JSON text whatever their items
  are; `media: null` stores NULL. The Open API sends `media` as one URL string: by the
  shape rule (`_payloads.LenientDecoder`) that is stored as its JSON text too.
- `variants` is one register, replaced whole like every list.
- Two events with the same `updatedAt` are ordered by the timestamp header, then by
  webhook id (`_rules.event_version`); ids are unique in the log, so no two events
  tie and arrival order never decides.
"""

from __future__ import annotations

from typing import Any

from msgspec import UNSET, Struct, UnsetType

from projections._changes import Change, deleted_entity, updated_entity
from projections._payloads import Amount, LenientDecoder, Text
from projections._tables import (
    DELETED,
    JSON_LIST,
    POSITION_IN_LIST,
    SENT_AS_IS,
    ChildTable,
    EntityTable,
    Event,
)

NAME = "products"
# 3: the stored state keeps register versions only; the values are the row itself.
# 4: variants declare their product as a foreign key.
# 5: a field of an unexpected type is kept as JSON text (`media` as one URL string from
# the Open API), no longer dropping the whole product.
VERSION = 5
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
    description="A product's variants, in the payload's order.",
    column_descriptions={
        "product_id": "the product (products.id)",
        "position": POSITION_IN_LIST,
        "id": "the variant's id",
        "key": "the variant's option values, e.g. M / Red",
        "price": "the variant's price, the number sent",
        "inventory_sku": "stock-keeping unit",
    },
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
    description="One row per product in the catalogue.",
    column_descriptions={
        "id": "BitByBit's product id",
        "product_id": "the shop's own product id",
        "name": "product name",
        "description": "product description",
        "media": f"images and videos, {JSON_LIST}",
        "status": "product status, e.g. active or draft",
        "options": f"option names such as size or colour, {JSON_LIST}",
        "tags": f"the product's tags, {JSON_LIST}",
        "types": f"product types, {JSON_LIST}",
        "created_at": f"when the product was created, {SENT_AS_IS}",
        "updated_at": f"when the product last changed, {SENT_AS_IS}",
        "deleted_at": DELETED,
    },
    label_column="name",
    json_columns=frozenset({"media", "options", "tags", "types"}),
)

AnyList = list[Any] | None | UnsetType


class Variant(Struct, rename="camel"):
    """One entry of a product's `variants`."""

    id: Text = UNSET
    key: Text = UNSET
    price: Amount = UNSET
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


_product = LenientDecoder(Product)


def apply(event: Event) -> list[Change]:
    """What one product event says about its product."""
    match event.event_type:
        case "product.created" | "product.updated" | "product.snapshot":
            product, odd = _product.decode(event.payload)
            return [
                updated_entity(
                    product.id, product.updated_at, product, event, children=[VARIANTS], odd=odd
                )
            ]
        case "product.deleted" | "product.gone":
            return [deleted_entity(event)]
        case _:
            return []
