"""The shape rule of every projection: one field of an unexpected shape never drops an entity.

A value whose type its column does not expect is stored as its JSON text; a list of child
rows that is not a list leaves the child rows as they were; every other field is written
as usual, and the event is counted as a projection warning (SPEC §3, issue: a product
whose `media` is one URL string vanished from the mirror).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._helpers import Harness, sample

if TYPE_CHECKING:
    from tests._helpers import Row

# Event type -> (projection, entity table, key column, the payload's key field).
ENTITIES = {
    "customer.created": ("customers", "customers", "id", "id"),
    "customer.updated": ("customers", "customers", "id", "id"),
    "order.created": ("orders", "orders", "id", "id"),
    "order.updated": ("orders", "orders", "id", "id"),
    "product.created": ("products", "products", "id", "id"),
    "product.updated": ("products", "products", "id", "id"),
    "message.received": ("messages", "messages", "message_id", "messageId"),
    "message.status.updated": ("messages", "messages", "message_id", "messageId"),
}
# Fields whose columns are not named by the snake_case rule (or are several).
COLUMNS = {
    "from": ("sender",),
    "to": ("recipient",),
    "status": ("status", "status_updated_at"),
    "customer": tuple(
        f"customer_{c}" for c in ("id", "first_name", "last_name", "email", "phone_number")
    ),
    "shippingAddress": tuple(
        f"shipping_{c}"
        for c in (
            "first_name",
            "last_name",
            "phone",
            "address1",
            "address2",
            "city",
            "province",
            "country",
            "zip",
        )
    ),
}
CHILDREN = {
    "addresses": "customer_addresses",
    "lineItems": "order_line_items",
    "variants": "product_variants",
}
NESTED_PREFIX = {"customer": "customer_", "shippingAddress": "shipping_"}

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _paths(event_type: str) -> list[tuple[str, ...]]:
    """Every field of the sample but its key: top-level, nested leaves, first child's leaves."""
    key_field = ENTITIES[event_type][3]
    found: list[tuple[str, ...]] = []
    for field, value in sample(event_type).items():
        if field == key_field:
            continue
        found.append((field,))
        if isinstance(value, dict):
            found.extend((field, leaf) for leaf in value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            found.extend((field, "0", leaf) for leaf in value[0])
    return found


CASES = [(event_type, path) for event_type in ENTITIES for path in _paths(event_type)]


def _replaced(event_type: str, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    payload = sample(event_type)
    target: Any = payload
    for step in path[:-1]:
        target = target[int(step)] if isinstance(target, list) else target[step]
    target[path[-1]] = value
    return payload


def _affected(path: tuple[str, ...]) -> tuple[set[str], set[str]]:
    """The entity columns and the child tables that the field at `path` may change."""
    field = path[0]
    if field in CHILDREN:
        return set(), {CHILDREN[field]}
    if len(path) > 1:
        return {NESTED_PREFIX[field] + _snake(path[1])}, set()
    return set(COLUMNS.get(field, (_snake(field),))), set()


def _project(directory: Path, event_type: str, payload: dict[str, Any]) -> Harness:
    # Nothing here needs to survive a crash: no fsync, so hundreds of examples run quickly.
    harness = Harness(directory, synchronous="OFF")
    harness.send(event_type, payload, webhook_id="wh-shape")
    return harness


def _tables(harness: Harness, event_type: str) -> dict[str, list[Row]]:
    """The projection's user-facing tables (not its state), rows in a stable order."""
    name = ENTITIES[event_type][0]
    projection = next(p for p in harness.mods if name == p.NAME)
    return {
        table: sorted(harness.select(f"SELECT * FROM {table}"), key=repr)
        for table in projection.TABLE.table_names
        if table != projection.TABLE.state_table
    }


_baselines: dict[str, dict[str, list[Row]]] = {}


def _baseline(event_type: str) -> dict[str, list[Row]]:
    """The tables the untouched sample gives, worked out once per event type."""
    if event_type not in _baselines:
        with tempfile.TemporaryDirectory() as directory:
            harness = _project(Path(directory) / "data", event_type, sample(event_type))
            try:
                _baselines[event_type] = _tables(harness, event_type)
            finally:
                harness.close()
    return _baselines[event_type]


def _without(rows: list[Row], columns: set[str]) -> list[Row]:
    return [{k: v for k, v in row.items() if k not in columns} for row in rows]


@settings(max_examples=200)
@given(case=st.sampled_from(CASES), value=JSON_VALUES)
def test_any_value_in_any_field_keeps_the_entity_and_its_other_fields(
    case: tuple[str, tuple[str, ...]], value: Any
) -> None:
    """Replacing one field by any JSON value: the row stays, every other field as before."""
    event_type, path = case
    columns, children = _affected(path)
    expected = _baseline(event_type)
    with tempfile.TemporaryDirectory() as directory:
        harness = _project(Path(directory) / "data", event_type, _replaced(event_type, path, value))
        try:
            got = _tables(harness, event_type)
            errors = harness.errors()
            warnings = harness.select("SELECT * FROM _projection_warnings")
        finally:
            harness.close()
    assert errors == []
    assert len(warnings) <= 1
    for table, rows in expected.items():
        if table in children:
            continue
        # The history row's status is the status field's own.
        skip = columns | ({"status"} if table == "message_status_history" else set())
        assert _without(got[table], skip) == _without(rows, skip), table
    if len(path) == 1 and not children and len(columns) == 1:
        [column] = columns
        [row] = got[ENTITIES[event_type][1]]
        # As sent when its type fits, else its JSON text (lists are JSON text anyway).
        text = msgspec.json.encode(value).decode()
        assert row[column] in (value, text) or (value == [] and event_type.endswith(".updated"))


def test_a_products_media_url_string_is_kept_as_json_text(harness: Harness) -> None:
    """The Open API's `media` string: the product and its variants are there, one warning."""
    url = "https://cdn.example.com/p2.jpg"
    harness.send("product.snapshot", sample("product.created", media=url))

    product = harness.row("products", "prod_ghi789")
    assert product is not None
    assert json.loads(product["media"]) == url
    assert product["name"] == "Premium T-Shirt"
    assert [v["id"] for v in harness.children("product_variants", "product_id", "prod_ghi789")] == [
        "var_001"
    ]
    assert harness.errors() == []
    [warning] = harness.select("SELECT * FROM _projection_warnings")
    assert (warning["projection"], warning["event_type"]) == ("products", "product.snapshot")
    assert "media" in warning["warning"]
    statuses = {s.name: (s.errors, s.warnings) for s in harness.projector.statuses()}
    assert statuses["products"] == (0, 1)


def test_child_rows_that_are_not_a_list_are_left_as_they_were(harness: Harness) -> None:
    """A later `variants` that is no list writes no rows: the earlier ones stay."""
    harness.send("product.created", sample("product.created"))
    later = sample("product.updated", variants={"id": "var_002"}, name="Renamed")
    harness.send("product.updated", later)

    product = harness.row("products", "prod_ghi789")
    assert product is not None
    assert product["name"] == "Renamed"
    variants = harness.children("product_variants", "product_id", "prod_ghi789")
    assert [v["id"] for v in variants] == ["var_001"]
    assert len(harness.select("SELECT * FROM _projection_warnings")) == 1


def test_an_event_without_its_key_is_still_an_error(harness: Harness) -> None:
    """The key names the entity: an odd one cannot be JSON text, the event is an error."""
    harness.send("product.created", sample("product.created", id=["not", "an", "id"]))

    assert [e["projection"] for e in harness.errors()] == ["products"]
    assert harness.select("SELECT * FROM products") == []
