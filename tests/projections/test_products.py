"""Products and their variants: events in, `SELECT` out."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tests._helpers import T0, Harness, iso, rebuilt, sample

if TYPE_CHECKING:
    from pathlib import Path

ID = "prod_ghi789"
UPDATED_AT = 1705482000  # 2024-01-17T09:00:00Z, the sample update's `updatedAt`
DELETED_AT = UPDATED_AT + 3600

VARIANT = {
    "product_id": ID,
    "position": 0,
    "id": "var_001",
    "key": "Default",
    "price": 75000,
    "inventory_sku": "TSH-001",
}


def product(harness: Harness, key: str = ID) -> dict[str, Any]:
    row = harness.row("products", key)
    assert row is not None
    return row


def variants(harness: Harness, key: str = ID) -> list[dict[str, Any]]:
    return harness.children("product_variants", "product_id", key)


def test_created_sample_gives_every_column(harness: Harness) -> None:
    """The documented `product.created`: JSON text for lists, NULL media, one variant."""
    harness.send("product.created", sample("product.created"))

    assert product(harness) == {
        "id": ID,
        "product_id": "PROD-001",
        "name": "Premium T-Shirt",
        "description": "High-quality cotton t-shirt",
        "media": None,
        "status": None,
        "options": "[]",
        "tags": '["apparel"]',
        "types": "[]",
        "created_at": "2024-01-15T10:30:00.000Z",
        "updated_at": "2024-01-15T10:30:00.000Z",
        "deleted_at": None,
    }
    assert variants(harness) == [VARIANT]
    assert harness.errors() == []


def test_samples_in_order(harness: Harness) -> None:
    """Created, updated, deleted: the update's empty lists keep tags and variants."""
    harness.send("product.created", sample("product.created"), timestamp=T0)
    harness.send("product.updated", sample("product.updated"), timestamp=UPDATED_AT)
    harness.send("product.deleted", sample("product.deleted"), timestamp=DELETED_AT)

    assert product(harness) == {
        "id": ID,
        "product_id": "PROD-001",
        "name": "Premium T-Shirt (Updated)",
        "description": "Updated description",
        "media": None,
        "status": None,
        "options": "[]",
        "tags": '["apparel"]',
        "types": "[]",
        "created_at": "2024-01-15T10:30:00.000Z",
        "updated_at": "2024-01-17T09:00:00.000Z",
        "deleted_at": "2024-01-17T10:00:00.000Z",
    }
    assert variants(harness) == [VARIANT]


def test_media_options_and_types_are_json_text(harness: Harness) -> None:
    """Lists and media are stored as compact JSON of what was sent."""
    media = [{"url": "https://cdn/x.png", "alt": "front"}, {"url": "https://cdn/y.png"}]
    options = [{"name": "Size", "values": ["S", "M"]}]
    harness.send(
        "product.created",
        sample("product.created", media=media, options=options, types=["shirt", "cotton"]),
    )

    row = product(harness)
    assert row["media"] == json.dumps(media, separators=(",", ":"))
    assert json.loads(row["options"]) == options
    assert row["types"] == '["shirt","cotton"]'


def test_update_before_create(harness: Harness) -> None:
    """A late create fills the variants and tags; the newer name stays."""
    harness.send("product.updated", sample("product.updated"), timestamp=UPDATED_AT)
    harness.send("product.created", sample("product.created"), timestamp=T0)

    row = product(harness)
    assert row["name"] == "Premium T-Shirt (Updated)"
    assert row["tags"] == '["apparel"]'
    assert row["updated_at"] == "2024-01-17T09:00:00.000Z"
    assert variants(harness) == [VARIANT]


def test_delete_before_create(harness: Harness) -> None:
    """A create after the delete fills the row; `deleted_at` stays."""
    harness.send("product.deleted", {"id": ID}, timestamp=DELETED_AT)
    harness.send("product.created", sample("product.created"), timestamp=T0)

    row = product(harness)
    assert row["deleted_at"] == iso(DELETED_AT)
    assert row["name"] == "Premium T-Shirt"
    assert variants(harness) == [VARIANT]


def test_late_update_after_delete_keeps_deleted_at(harness: Harness) -> None:
    """An update arriving after the delete writes its fields but not `deleted_at`."""
    harness.send("product.created", sample("product.created"), timestamp=T0)
    harness.send("product.deleted", {"id": ID}, timestamp=T0 + 60)
    harness.send("product.updated", sample("product.updated"), timestamp=UPDATED_AT)

    row = product(harness)
    assert row["deleted_at"] == iso(T0 + 60)
    assert row["name"] == "Premium T-Shirt (Updated)"


def test_deleted_twice_keeps_the_earliest(harness: Harness) -> None:
    """The earliest of two deletes is `deleted_at`, in either arrival order."""
    harness.send("product.deleted", {"id": ID}, timestamp=DELETED_AT)
    harness.send("product.deleted", {"id": ID}, timestamp=T0)

    assert product(harness)["deleted_at"] == iso(T0)


def test_delete_of_unknown_id_creates_tombstone(harness: Harness) -> None:
    """A delete for an id never seen leaves only id and `deleted_at`."""
    harness.send("product.deleted", {"id": "prod_ghost"}, timestamp=DELETED_AT)

    row = product(harness, "prod_ghost")
    assert {k: v for k, v in row.items() if v is not None} == {
        "id": "prod_ghost",
        "deleted_at": iso(DELETED_AT),
    }
    assert variants(harness, "prod_ghost") == []


def test_explicit_null_sets_null_absent_field_keeps_value(harness: Harness) -> None:
    """`description: null` clears it; `media`, absent from the update, stays."""
    media = [{"url": "https://cdn/x.png"}]
    harness.send("product.created", sample("product.created", media=media), timestamp=T0)
    harness.send(
        "product.updated", sample("product.updated", description=None), timestamp=UPDATED_AT
    )

    row = product(harness)
    assert row["description"] is None
    assert row["media"] == '[{"url":"https://cdn/x.png"}]'


def test_media_null_stores_null(harness: Harness) -> None:
    """`media: null` in a newer event stores NULL, not the text `null`."""
    harness.send("product.created", sample("product.created", media=[{"url": "u"}]), timestamp=T0)
    harness.send("product.updated", sample("product.updated", media=None), timestamp=UPDATED_AT)

    assert product(harness)["media"] is None


def test_empty_lists_in_update_are_not_carried(harness: Harness) -> None:
    """`variants`, `options`, `tags`, `types` empty in an update keep what was there."""
    harness.send(
        "product.created",
        sample("product.created", options=["Size"], types=["shirt"]),
        timestamp=T0,
    )
    harness.send("product.updated", sample("product.updated"), timestamp=UPDATED_AT)

    row = product(harness)
    assert (row["options"], row["tags"], row["types"]) == ('["Size"]', '["apparel"]', '["shirt"]')
    assert variants(harness) == [VARIANT]


def test_empty_lists_in_create_are_carried(harness: Harness) -> None:
    """A `product.created` newer than an update replaces its lists with `[]`."""
    harness.send(
        "product.updated",
        {"id": ID, "tags": ["old"], "variants": [{"id": "v"}], "updatedAt": "2024-01-01T00:00Z"},
    )
    harness.send("product.created", sample("product.created", tags=[], variants=[]))

    assert product(harness)["tags"] == "[]"
    assert variants(harness) == []


def test_variants_replaced_whole_in_order(harness: Harness) -> None:
    """A newer non-empty `variants` replaces every row, positions from 0."""
    harness.send("product.created", sample("product.created"), timestamp=T0)
    new = [
        {"id": "var_L", "key": "L", "price": 80000.5, "inventorySku": "TSH-L"},
        {"id": "var_S", "key": "S", "price": 70000},
    ]
    harness.send("product.updated", sample("product.updated", variants=new), timestamp=UPDATED_AT)

    assert variants(harness) == [
        {
            "product_id": ID,
            "position": 0,
            "id": "var_L",
            "key": "L",
            "price": 80000.5,
            "inventory_sku": "TSH-L",
        },
        {
            "product_id": ID,
            "position": 1,
            "id": "var_S",
            "key": "S",
            "price": 70000,
            "inventory_sku": None,
        },
    ]


def test_same_updated_at_tie_goes_to_timestamp_then_webhook_id(harness: Harness) -> None:
    """Equal `updatedAt`: the larger header wins; equal headers: the larger webhook id."""
    same = "2024-01-17T09:00:00.000Z"
    harness.send("product.updated", {"id": ID, "name": "late", "updatedAt": same}, timestamp=T0 + 1)
    harness.send("product.updated", {"id": ID, "name": "early", "updatedAt": same}, timestamp=T0)
    assert product(harness)["name"] == "late"

    harness.send("product.updated", {"id": ID, "status": "z", "updatedAt": same}, webhook_id="wh-z")
    harness.send("product.updated", {"id": ID, "status": "a", "updatedAt": same}, webhook_id="wh-a")
    assert product(harness)["status"] == "z"


def test_rebuild_equals_live(harness: Harness, tmp_path: Path) -> None:
    """Projecting event by event equals one catch-up over the same log."""
    harness.send("product.deleted", {"id": ID}, timestamp=DELETED_AT)
    harness.send("product.updated", sample("product.updated"), timestamp=UPDATED_AT)
    harness.send("product.created", sample("product.created"), timestamp=T0)

    assert rebuilt(tmp_path / "rebuild", harness.store) == harness.dump()
