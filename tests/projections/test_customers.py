"""Customers and their addresses: events in, `SELECT` out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.eventlog.store import Outcome
from tests._helpers import T0, Harness, iso, rebuilt, replayed, sample

if TYPE_CHECKING:
    from pathlib import Path

ID = "cust_abc123"
UPDATED_AT = 1705392000  # 2024-01-16T08:00:00Z, the sample update's `updatedAt`
DELETED_AT = 1705482000  # 2024-01-17T09:00:00Z

ADDRESS = {
    "customer_id": ID,
    "position": 0,
    "id": "addr_xyz",
    "first_name": "John",
    "last_name": "Doe",
    "phone": "+6281234567890",
    "address1": "Jl. Sudirman No. 1",
    "address2": None,
    "city": "Jakarta",
    "province": "DKI Jakarta",
    "country": "ID",
    "zip": "10110",
}


def customer(harness: Harness, key: str = ID) -> dict[str, object]:
    row = harness.row("customers", key)
    assert row is not None
    return row


def addresses(harness: Harness, key: str = ID) -> list[dict[str, object]]:
    return harness.children("customer_addresses", "customer_id", key)


def test_created_sample_gives_every_column(harness: Harness) -> None:
    """The documented `customer.created` fills the row and one address at position 0."""
    harness.send("customer.created", sample("customer.created"))

    assert customer(harness) == {
        "id": ID,
        "email": "john@example.com",
        "phone_number": "+6281234567890",
        "first_name": "John",
        "last_name": "Doe",
        "image_url": None,
        "tags": '["new-customer"]',
        "created_at": "2024-01-15T10:30:00.000Z",
        "updated_at": "2024-01-15T10:30:00.000Z",
        "deleted_at": None,
    }
    assert addresses(harness) == [ADDRESS]
    assert harness.errors() == []


def test_samples_in_order(harness: Harness) -> None:
    """Created, updated, deleted: newer fields win, `addresses: []` keeps the address."""
    harness.send("customer.created", sample("customer.created"), timestamp=T0)
    harness.send("customer.updated", sample("customer.updated"), timestamp=UPDATED_AT)
    harness.send("customer.deleted", sample("customer.deleted"), timestamp=DELETED_AT)

    assert customer(harness) == {
        "id": ID,
        "email": "john.updated@example.com",
        "phone_number": "+6281234567890",
        "first_name": "John",
        "last_name": "Doe",
        "image_url": None,
        "tags": '["vip"]',
        "created_at": "2024-01-15T10:30:00.000Z",
        "updated_at": "2024-01-16T08:00:00.000Z",
        "deleted_at": "2024-01-17T09:00:00.000Z",
    }
    assert addresses(harness) == [ADDRESS]


def test_update_before_create(harness: Harness) -> None:
    """A late `customer.created` fills what the update left out but not its newer fields."""
    harness.send("customer.updated", sample("customer.updated"), timestamp=UPDATED_AT)
    harness.send("customer.created", sample("customer.created"), timestamp=T0)

    row = customer(harness)
    assert row["email"] == "john.updated@example.com"
    assert row["tags"] == '["vip"]'
    assert row["updated_at"] == "2024-01-16T08:00:00.000Z"
    assert addresses(harness) == [ADDRESS]


def test_delete_before_create(harness: Harness) -> None:
    """A create arriving after the delete fills the row; `deleted_at` stays."""
    harness.send("customer.deleted", {"id": ID}, timestamp=DELETED_AT)
    harness.send("customer.created", sample("customer.created"), timestamp=T0)

    row = customer(harness)
    assert row["deleted_at"] == iso(DELETED_AT)
    assert row["email"] == "john@example.com"
    assert row["tags"] == '["new-customer"]'
    assert addresses(harness) == [ADDRESS]


def test_late_update_after_delete_fills_fields_and_keeps_deleted_at(harness: Harness) -> None:
    """Deletion is final: a later update writes its fields, never clears `deleted_at`."""
    harness.send("customer.created", sample("customer.created"), timestamp=T0)
    harness.send("customer.deleted", {"id": ID}, timestamp=T0 + 60)
    harness.send("customer.updated", sample("customer.updated"), timestamp=UPDATED_AT)

    row = customer(harness)
    assert row["deleted_at"] == iso(T0 + 60)
    assert row["email"] == "john.updated@example.com"
    assert row["tags"] == '["vip"]'


def test_deleted_twice_keeps_the_earliest(harness: Harness) -> None:
    """Of two deletes, the earlier timestamp header is `deleted_at`, whatever their order."""
    harness.send("customer.deleted", {"id": ID}, timestamp=DELETED_AT)
    harness.send("customer.deleted", {"id": ID}, timestamp=UPDATED_AT)
    harness.send("customer.deleted", {"id": ID}, timestamp=DELETED_AT + 3600)

    assert customer(harness)["deleted_at"] == iso(UPDATED_AT)


def test_delete_of_unknown_id_creates_tombstone(harness: Harness) -> None:
    """A delete for an id never seen leaves a row with only id and `deleted_at`."""
    harness.send("customer.deleted", {"id": "cust_ghost"}, timestamp=DELETED_AT)

    assert customer(harness, "cust_ghost") == {
        "id": "cust_ghost",
        "email": None,
        "phone_number": None,
        "first_name": None,
        "last_name": None,
        "image_url": None,
        "tags": None,
        "created_at": None,
        "updated_at": None,
        "deleted_at": "2024-01-17T09:00:00.000Z",
    }
    assert addresses(harness, "cust_ghost") == []


def test_update_carrying_nothing_still_creates_the_row(harness: Harness) -> None:
    """An update that carries only the id (its lists empty) still makes the customer exist."""
    harness.send("customer.updated", {"id": "cust_bare", "tags": [], "addresses": []})

    row = customer(harness, "cust_bare")
    assert row["id"] == "cust_bare"
    assert all(value is None for column, value in row.items() if column != "id")


def test_delete_without_timestamp_header_uses_signature_time(harness: Harness) -> None:
    """Without the header, `deleted_at` falls back to the signature's `t` (`event_time`)."""
    harness.send("customer.deleted", {"id": ID}, timestamp=None, signed_at=DELETED_AT)

    assert customer(harness)["deleted_at"] == iso(DELETED_AT)


def test_explicit_null_sets_null_absent_field_keeps_value(harness: Harness) -> None:
    """`imageUrl: null` in a newer event clears it; fields the event lacks stay."""
    harness.send(
        "customer.created", sample("customer.created", imageUrl="https://img/x.png"), timestamp=T0
    )
    harness.send(
        "customer.updated",
        {"id": ID, "imageUrl": None, "updatedAt": "2024-01-16T08:00:00.000Z"},
        timestamp=UPDATED_AT,
    )

    row = customer(harness)
    assert row["image_url"] is None
    assert row["email"] == "john@example.com"
    assert row["first_name"] == "John"
    assert row["tags"] == '["new-customer"]'
    assert row["updated_at"] == "2024-01-16T08:00:00.000Z"
    assert addresses(harness) == [ADDRESS]


def test_older_explicit_null_does_not_clear_newer_value(harness: Harness) -> None:
    """An older event's null loses to a newer event's value."""
    harness.send(
        "customer.updated",
        {"id": ID, "email": "new@example.com", "updatedAt": "2024-01-16T08:00:00.000Z"},
    )
    harness.send(
        "customer.updated",
        {"id": ID, "email": None, "updatedAt": "2024-01-15T08:00:00.000Z"},
    )

    assert customer(harness)["email"] == "new@example.com"


def test_empty_lists_in_update_are_not_carried(harness: Harness) -> None:
    """`tags: []` and `addresses: []` in `customer.updated` leave the previous lists."""
    harness.send("customer.created", sample("customer.created"), timestamp=T0)
    harness.send(
        "customer.updated",
        sample("customer.updated", tags=[], addresses=[]),
        timestamp=UPDATED_AT,
    )

    assert customer(harness)["tags"] == '["new-customer"]'
    assert addresses(harness) == [ADDRESS]


def test_empty_lists_in_create_are_carried(harness: Harness) -> None:
    """`tags: []` and `addresses: []` in `customer.created` mean empty, not absent."""
    harness.send("customer.created", sample("customer.created", tags=[], addresses=[]))

    assert customer(harness)["tags"] == "[]"
    assert addresses(harness) == []


def test_newer_create_with_empty_list_replaces_older_list(harness: Harness) -> None:
    """A `customer.created` newer than an update replaces its lists with `[]`."""
    harness.send(
        "customer.updated",
        {
            "id": ID,
            "tags": ["old"],
            "addresses": [{"id": "a1"}],
            "updatedAt": "2024-01-01T00:00:00Z",
        },
    )
    harness.send("customer.created", sample("customer.created", tags=[], addresses=[]))

    assert customer(harness)["tags"] == "[]"
    assert addresses(harness) == []


def test_non_empty_address_list_replaces_whole_in_order(harness: Harness) -> None:
    """A newer non-empty `addresses` replaces every child row, positions from 0."""
    harness.send("customer.created", sample("customer.created"), timestamp=T0)
    harness.send(
        "customer.updated",
        sample(
            "customer.updated",
            addresses=[
                {"id": "addr_2", "city": "Bandung", "address2": "Blok B"},
                {"id": "addr_3", "city": "Surabaya"},
            ],
        ),
        timestamp=UPDATED_AT,
    )

    rows = addresses(harness)
    assert [(r["position"], r["id"], r["city"], r["address2"]) for r in rows] == [
        (0, "addr_2", "Bandung", "Blok B"),
        (1, "addr_3", "Surabaya", None),
    ]
    assert rows[0]["country"] is None


def test_addresses_null_clears_child_rows(harness: Harness) -> None:
    """`addresses: null` in a newer event is an explicit null: no address rows remain."""
    harness.send("customer.created", sample("customer.created"), timestamp=T0)
    harness.send("customer.updated", sample("customer.updated", addresses=None))

    assert addresses(harness) == []


def test_same_updated_at_tie_goes_to_timestamp_header(harness: Harness) -> None:
    """Two updates with the same `updatedAt`: the larger timestamp header wins."""
    same = "2024-01-16T08:00:00.000Z"
    harness.send(
        "customer.updated", {"id": ID, "email": "late@x", "updatedAt": same}, timestamp=T0 + 9
    )
    harness.send(
        "customer.updated", {"id": ID, "email": "early@x", "updatedAt": same}, timestamp=T0
    )

    assert customer(harness)["email"] == "late@x"


def test_same_updated_at_and_timestamp_tie_goes_to_webhook_id(harness: Harness) -> None:
    """With `updatedAt` and timestamp equal, the larger webhook id wins."""
    same = "2024-01-16T08:00:00.000Z"
    harness.send(
        "customer.updated", {"id": ID, "email": "b@x", "updatedAt": same}, webhook_id="wh-b"
    )
    harness.send(
        "customer.updated", {"id": ID, "email": "a@x", "updatedAt": same}, webhook_id="wh-a"
    )

    assert customer(harness)["email"] == "b@x"


def test_updated_at_compared_as_instants(harness: Harness) -> None:
    """`updatedAt` in another offset or precision is compared as the instant it names."""
    harness.send(
        "customer.updated",
        {"id": ID, "email": "later@x", "updatedAt": "2024-01-16T09:00:00+07:00"},  # 02:00Z
        timestamp=T0,
    )
    harness.send(
        "customer.updated",
        {"id": ID, "email": "earlier@x", "updatedAt": "2024-01-16T01:00:00.000Z"},
        timestamp=T0 + 3600,
    )

    assert customer(harness)["email"] == "later@x"


def test_event_without_updated_at_ranks_below_one_with_it(harness: Harness) -> None:
    """A missing or unparsable `updatedAt` loses to any parsable one, whatever the header."""
    harness.send(
        "customer.updated", {"id": ID, "email": "dated@x", "updatedAt": "2020-01-01T00:00:00Z"}
    )
    harness.send("customer.updated", {"id": ID, "email": "undated@x"}, timestamp=T0 + 10**6)
    harness.send(
        "customer.updated",
        {"id": ID, "email": "garbled@x", "updatedAt": "yesterday"},
        timestamp=T0 + 10**6,
    )

    assert customer(harness)["email"] == "dated@x"


def test_event_without_timestamp_header_ranks_below_one_with_it(harness: Harness) -> None:
    """With equal `updatedAt`, an event lacking the header loses even with a larger id."""
    same = "2024-01-16T08:00:00.000Z"
    harness.send(
        "customer.updated", {"id": ID, "email": "headed@x", "updatedAt": same}, webhook_id="wh-a"
    )
    harness.send(
        "customer.updated",
        {"id": ID, "email": "headless@x", "updatedAt": same},
        webhook_id="wh-z",
        timestamp=None,
    )

    assert customer(harness)["email"] == "headed@x"


def test_unknown_fields_are_ignored(harness: Harness) -> None:
    """A field the projection does not know is kept in the log, not an error."""
    harness.send("customer.created", sample("customer.created", loyaltyTier="gold"))

    assert customer(harness)["email"] == "john@example.com"
    assert harness.errors() == []


def test_duplicate_delivery_changes_nothing(harness: Harness, tmp_path: Path) -> None:
    """The same delivery twice is one log row; re-applying the log changes no table."""
    created = harness.send("customer.created", sample("customer.created"))
    harness.send("customer.updated", sample("customer.updated"), timestamp=UPDATED_AT)
    before = harness.dump()

    [again] = harness.append([created])
    harness.project()

    assert again.outcome is Outcome.DUPLICATE
    assert harness.store.count() == 2
    assert harness.dump() == before
    assert rebuilt(tmp_path / "rebuild", harness.store) == before
    assert replayed(harness) == before
