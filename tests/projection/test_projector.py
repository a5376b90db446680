"""The projector: module shape, table layout, checkpoints, errors and staleness."""

from __future__ import annotations

import pkgutil
import sqlite3
import types
from typing import TYPE_CHECKING, Any

import pytest

import projections
from app.projection import projector as projector_module
from projections import EntityTable, write_changes
from tests._helpers import T0, Harness, delivery, rebuilt, replayed, sample

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from app.eventlog.rows import Delivery
    from projections import Change, Event

# SPEC section 5, column for column and in order: (columns, primary key).
SPEC_TABLES: dict[str, tuple[list[str], list[str]]] = {
    "customers": (
        [
            "id",
            "email",
            "phone_number",
            "first_name",
            "last_name",
            "image_url",
            "tags",
            "created_at",
            "updated_at",
            "deleted_at",
        ],
        ["id"],
    ),
    "customer_addresses": (
        [
            "customer_id",
            "position",
            "id",
            "first_name",
            "last_name",
            "phone",
            "address1",
            "address2",
            "city",
            "province",
            "country",
            "zip",
        ],
        ["customer_id", "position"],
    ),
    "orders": (
        [
            "id",
            "order_id",
            "order_number",
            "status",
            "fulfillment_status",
            "financial_status",
            "total",
            "currency",
            "customer_id",
            "customer_first_name",
            "customer_last_name",
            "customer_email",
            "customer_phone_number",
            "shipping_first_name",
            "shipping_last_name",
            "shipping_phone",
            "shipping_address1",
            "shipping_address2",
            "shipping_city",
            "shipping_province",
            "shipping_country",
            "shipping_zip",
            "tags",
            "created_at",
            "updated_at",
            "notes",  # from the Open API (SPEC section 8: new columns welcome)
        ],
        ["id"],
    ),
    "order_line_items": (
        ["order_id", "position", "id", "title", "quantity", "price"],
        ["order_id", "position"],
    ),
    "products": (
        [
            "id",
            "product_id",
            "name",
            "description",
            "media",
            "status",
            "options",
            "tags",
            "types",
            "created_at",
            "updated_at",
            "deleted_at",
        ],
        ["id"],
    ),
    "product_variants": (
        ["product_id", "position", "id", "key", "price", "inventory_sku"],
        ["product_id", "position"],
    ),
    "messages": (
        [
            "message_id",
            "direction",
            "sender",
            "recipient",
            "body",
            "source",
            "template_name",
            "status",
            "received_at",
            "status_updated_at",
        ],
        ["message_id"],
    ),
    "message_status_history": (
        ["message_id", "status", "occurred_at", "webhook_id"],
        ["message_id", "webhook_id"],
    ),
}
NUMERIC_COLUMNS = {
    ("orders", "total"),
    ("order_line_items", "quantity"),
    ("order_line_items", "price"),
    ("product_variants", "price"),
}


class Crash(BaseException):
    """Stands for the process dying: not an `Exception`, so nothing records it."""


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "live")
    yield h
    h.close()


def story() -> list[Delivery]:
    """A mixed history over every projection, out of order, with deletes and statuses."""
    events: list[tuple[str, Any, int | None]] = [
        ("order.updated", sample("order.updated", status="cancelled"), T0 + 100),
        ("customer.created", sample("customer.created"), T0),
        ("message.status.updated", sample("message.status.updated", status="read"), T0 + 30),
        ("product.deleted", sample("product.deleted"), T0 + 500),
        ("order.created", sample("order.created"), T0),
        ("customer.updated", sample("customer.updated"), T0 + 50),
        ("message.received", sample("message.received"), T0),
        ("product.created", sample("product.created"), T0),
        ("message.status.updated", sample("message.status.updated", status="delivered"), T0 + 20),
        ("product.updated", sample("product.updated"), T0 + 200),
        ("customer.deleted", sample("customer.deleted"), T0 + 300),
        ("order.created", sample("order.created", id="order_2", lineItems=[]), T0 + 1),
        ("customer.created", sample("customer.created", id="cust_2", addresses=[]), T0 + 2),
        ("message.status.updated", sample("message.status.updated", status="sent"), T0 + 10),
        ("product.updated", sample("product.updated", id="prod_2", tags=["x"]), T0 + 3),
        ("order.updated", sample("order.updated", customer=None), T0 + 4),
        ("customer.deleted", {"id": "cust_ghost"}, None),
    ]
    return [
        delivery(event_type, payload, webhook_id=f"wh-{n:03d}", timestamp=timestamp)
        for n, (event_type, payload, timestamp) in enumerate(events, start=1)
    ]


def uninterrupted(directory: Path, until: int | None = None) -> dict[str, list[Any]]:
    """The tables of the story projected in one go (up to `until`)."""
    h = Harness(directory)
    try:
        h.append(story())
        h.projector.catch_up(1000, until=until)
        return h.dump()
    finally:
        h.close()


# -- module shape -----------------------------------------------------------------------


def test_discovery_finds_every_public_module() -> None:
    """Every module in `projections/` not starting with `_` is a discovered projection."""
    public = sorted(i.name for i in pkgutil.iter_modules(projections.__path__) if i.name[0] != "_")
    found = projections.discover()
    assert [p.__name__.rsplit(".", 1)[-1] for p in found] == public  # type: ignore[attr-defined]
    assert public == ["customers", "messages", "orders", "products"]


@pytest.mark.parametrize("projection", projections.discover(), ids=lambda p: p.NAME)
def test_every_projection_has_the_shape(projection: projections.Projection) -> None:
    """`NAME`, `VERSION`, `EVENT_TYPES`, `TABLE` and a callable `apply` of the right types."""
    assert isinstance(projection, types.ModuleType)
    assert isinstance(projection.NAME, str)
    assert projection.NAME
    assert type(projection.VERSION) is int
    assert isinstance(projection.EVENT_TYPES, frozenset)
    assert projection.EVENT_TYPES
    assert all(isinstance(t, str) for t in projection.EVENT_TYPES)
    assert isinstance(projection.TABLE, EntityTable)
    assert callable(projection.apply)


def test_projection_names_and_tables_are_unique() -> None:
    """No two projections share a name or a table."""
    found = projections.discover()
    names = [p.NAME for p in found]
    tables = [t for p in found for t in p.TABLE.table_names]
    assert len(set(names)) == len(names)
    assert len(set(tables)) == len(tables)


def test_event_types_are_covered() -> None:
    """Every documented event type is read by some projection."""
    read = {t for p in projections.discover() for t in p.EVENT_TYPES}
    assert read == {
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "order.created",
        "order.updated",
        "product.created",
        "product.updated",
        "product.deleted",
        "message.received",
        "message.status.updated",
        # What `sync` writes from the Open API (SPEC section 8).
        "customer.snapshot",
        "customer.gone",
        "order.snapshot",
        "product.snapshot",
        "product.gone",
    }


# -- tables -----------------------------------------------------------------------------


@pytest.mark.parametrize("table", sorted(SPEC_TABLES))
def test_table_columns_match_the_spec(harness: Harness, table: str) -> None:
    """Column names, their order and the primary key are those of SPEC section 5."""
    info = harness.conn.execute(f"PRAGMA table_info({table})").fetchall()
    columns = [row[1] for row in info]
    primary_key = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    assert (columns, primary_key) == SPEC_TABLES[table]
    for row in info:
        if (table, row[1]) in NUMERIC_COLUMNS:
            assert row[2] == "NUMERIC"


def test_user_facing_tables_are_exactly_the_spec_ones(harness: Harness) -> None:
    """Every table not prefixed `_` is one of SPEC section 5, and each of them exists."""
    rows = harness.conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\'"
    ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(SPEC_TABLES)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM orders WHERE customer_id = 'c'",
        "SELECT * FROM orders WHERE status = 'paid'",
        "SELECT * FROM orders WHERE created_at > '2024'",
        "SELECT * FROM order_line_items WHERE order_id = 'o'",
        "SELECT * FROM customer_addresses WHERE customer_id = 'c'",
        "SELECT * FROM product_variants WHERE product_id = 'p'",
        "SELECT * FROM message_status_history WHERE message_id = 'm'",
    ],
)
def test_obvious_filters_use_an_index(harness: Harness, query: str) -> None:
    """Orders by customer, status and creation, and child rows by parent, are searches."""
    plan = " ".join(str(r[-1]) for r in harness.conn.execute(f"EXPLAIN QUERY PLAN {query}"))
    assert "SEARCH" in plan
    assert "INDEX" in plan or "PRIMARY KEY" in plan


# -- checkpoints and crashes --------------------------------------------------------------


def crash_after(calls: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """`real`, except that the call after `calls` successful ones dies."""
    done = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal done
        if done >= calls:
            raise Crash
        done += 1
        return real(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("calls", [0, 1, 3])
@pytest.mark.parametrize("name", ["customers", "messages", "orders", "products"])
def test_crash_in_apply_resumes_from_checkpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, calls: int, batch_size: int
) -> None:
    """A projection dying mid-batch rolls the batch back; a restart ends as if it never died."""
    live = Harness(tmp_path / "live")
    live.append(story())
    module = next(p for p in live.mods if name == p.NAME)
    monkeypatch.setattr(module, "apply", crash_after(calls, module.apply))

    with pytest.raises(Crash):
        live.project(batch_size)

    checkpoints = live.checkpoints()
    # Every projection moves in the same transaction, so they stopped together, on a batch end.
    assert len(set(checkpoints.values())) == 1
    [stopped] = set(checkpoints.values())
    assert stopped % batch_size == 0
    assert stopped < live.store.head()
    crashed = live.dump()
    live.conn.close()  # the process is gone; a new one opens the same files

    monkeypatch.undo()
    assert crashed == uninterrupted(tmp_path / "until", until=stopped)
    restarted = Harness(tmp_path / "live", store=live.store)
    try:
        restarted.project(batch_size)
        assert restarted.errors() == []
        assert restarted.dump() == uninterrupted(tmp_path / "whole")
        assert set(restarted.checkpoints().values()) == {restarted.store.head()}
    finally:
        restarted.close()
        live.store.close()


@pytest.mark.parametrize("calls", [0, 1, 3])
def test_crash_while_writing_resumes_from_checkpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, calls: int
) -> None:
    """Dying inside the table writes loses nothing and applies nothing twice."""
    live = Harness(tmp_path / "live")
    live.append(story())
    monkeypatch.setattr(projector_module, "write_changes", crash_after(calls, write_changes))

    with pytest.raises(Crash):
        live.project(3)
    [stopped] = set(live.checkpoints().values())
    crashed = live.dump()

    monkeypatch.undo()
    assert crashed == uninterrupted(tmp_path / "until", until=stopped)
    live.project(3)
    assert live.dump() == uninterrupted(tmp_path / "whole")
    live.close()


@pytest.mark.parametrize(
    ("whole_transaction", "failure"),
    [
        (True, sqlite3.OperationalError("database or disk is full")),
        (False, sqlite3.OperationalError("database or disk is full")),
        (False, sqlite3.DatabaseError("database disk image is malformed")),
    ],
)
def test_a_full_disk_fails_the_step_and_records_no_event_error(
    monkeypatch: pytest.MonkeyPatch,
    harness: Harness,
    whole_transaction: bool,
    failure: sqlite3.DatabaseError,
) -> None:
    """SQLITE_FULL is the database's fault: the step fails with it and is retried later.

    Recording it against the events would skip them for good; and when SQLite abandoned
    the whole transaction by itself, a second ROLLBACK must not hide the real cause.
    """
    harness.append(story())

    def disk_full(conn: sqlite3.Connection, *_args: object, **_kwargs: object) -> int:
        if whole_transaction:
            conn.execute("ROLLBACK")  # what SQLite may do by itself on a full disk
        raise failure

    monkeypatch.setattr(projector_module, "write_changes", disk_full)
    with pytest.raises(type(failure), match=str(failure)):
        harness.project(5)
    assert not harness.conn.in_transaction
    assert set(harness.checkpoints().values()) == {0}
    monkeypatch.undo()
    harness.project(5)
    assert set(harness.checkpoints().values()) == {len(story())}
    assert harness.conn.execute("SELECT COUNT(*) FROM _projection_errors").fetchone() == (0,)


def test_reapplying_the_log_changes_nothing(harness: Harness, tmp_path: Path) -> None:
    """Every event applied a second time (checkpoints reset) leaves every table as it was."""
    harness.append(story())
    harness.project(5)
    before = harness.dump()

    assert replayed(harness) == before
    assert rebuilt(tmp_path / "rebuild", harness.store) == before


# -- errors ---------------------------------------------------------------------------------


def test_unusable_events_are_recorded_and_skipped(harness: Harness) -> None:
    """Bad events are one error row each; the checkpoint passes them; others are unaffected."""
    harness.log("customer.created", sample("customer.created"), webhook_id="wh-1")
    harness.log("customer.created", {"email": "no-id@example.com"}, webhook_id="wh-2")
    harness.log("customer.updated", b"[1]", webhook_id="wh-3")
    harness.log("order.created", sample("order.created"), webhook_id="wh-4")
    harness.log("customer.updated", sample("customer.updated"), webhook_id="wh-5")
    harness.log("message.received", b"{not json", webhook_id="wh-6")
    harness.project()

    errors = harness.errors()
    assert [(e["projection"], e["position"], e["webhook_id"], e["event_type"]) for e in errors] == [
        ("customers", 2, "wh-2", "customer.created"),
        ("customers", 3, "wh-3", "customer.updated"),
        ("messages", 6, "wh-6", "message.received"),
    ]
    assert all(e["error"] for e in errors)
    assert set(harness.checkpoints().values()) == {6}
    customer = harness.row("customers", "cust_abc123")
    assert customer is not None
    assert customer["email"] == "john.updated@example.com"
    assert harness.row("orders", "order_def456") is not None
    counts = {s.name: s.errors for s in harness.projector.statuses()}
    assert counts == {"customers": 2, "messages": 1, "orders": 0, "products": 0}


def test_errors_stay_recorded_once(harness: Harness) -> None:
    """Catching up again, or re-applying, does not record the same error twice."""
    harness.log("customer.created", {"email": "no-id@example.com"})
    harness.project()
    harness.project()
    replayed(harness)

    assert len(harness.errors()) == 1


def test_a_value_sqlite_cannot_store_is_an_error_not_a_stall(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change SQLite cannot bind (an integer too large) fails only its own event."""
    orders = next(p for p in harness.mods if p.NAME == "orders")
    real = orders.apply

    def unbindable(event: Event) -> list[Change]:
        changes = real(event)
        if b'"o2"' in event.payload:
            changes[0].registers["total"] = (2**63, changes[0].registers["total"][1])
        return changes

    monkeypatch.setattr(orders, "apply", unbindable)
    harness.log("order.created", sample("order.created", id="o1"))
    harness.log("order.created", sample("order.created", id="o2"))
    harness.log("order.created", sample("order.created", id="o3"))
    harness.log("customer.created", sample("customer.created"))
    harness.project()

    assert [(e["projection"], e["position"]) for e in harness.errors()] == [("orders", 2)]
    assert [r["id"] for r in harness.select("SELECT id FROM orders ORDER BY id")] == ["o1", "o3"]
    assert set(harness.checkpoints().values()) == {4}


def test_a_bug_in_one_projection_leaves_the_others_alone(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception raised by `apply` is recorded against that projection only."""
    orders = next(p for p in harness.mods if p.NAME == "orders")
    real = orders.apply

    def buggy(event: Event) -> list[Change]:
        if event.webhook_id == "wh-2":
            raise RuntimeError("boom")
        return real(event)

    monkeypatch.setattr(orders, "apply", buggy)
    harness.log("order.created", sample("order.created"), webhook_id="wh-1")
    harness.log("order.updated", sample("order.updated"), webhook_id="wh-2")
    harness.log("customer.created", sample("customer.created"), webhook_id="wh-3")
    harness.project()

    [error] = harness.errors()
    assert (error["projection"], error["webhook_id"]) == ("orders", "wh-2")
    assert "RuntimeError: boom" in error["error"]
    assert harness.row("customers", "cust_abc123") is not None
    order = harness.row("orders", "order_def456")
    assert order is not None
    assert order["fulfillment_status"] == "unfulfilled"


# -- staleness --------------------------------------------------------------------------------


def test_stale_projection_is_left_alone(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version change makes a projection stale: reported, and its tables stop changing."""
    harness.log("customer.created", sample("customer.created"))
    harness.log("order.created", sample("order.created"))
    harness.project()
    customers = next(p for p in harness.mods if p.NAME == "customers")
    before = {t: harness.dump()[t] for t in customers.TABLE.table_names}

    monkeypatch.setattr(customers, "VERSION", customers.VERSION + 1)
    harness.projector.install_all()
    harness.log("customer.updated", sample("customer.updated"), timestamp=T0 + 60)
    harness.log("customer.created", sample("customer.created", id="cust_new"))
    harness.log("order.updated", sample("order.updated"), timestamp=T0 + 60)
    harness.project()

    statuses = {s.name: s for s in harness.projector.statuses()}
    assert statuses["customers"].stale
    assert not any(s.stale for n, s in statuses.items() if n != "customers")
    assert statuses["customers"].position == 2
    assert statuses["customers"].lag == 3
    assert statuses["orders"].position == 5
    assert statuses["orders"].lag == 0
    after = harness.dump()
    assert {t: after[t] for t in customers.TABLE.table_names} == before
    order = harness.row("orders", "order_def456")
    assert order is not None
    assert order["financial_status"] == "paid"


def test_all_stale_means_nothing_to_do(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """With every projection stale, catching up reads nothing and changes nothing."""
    harness.log("customer.created", sample("customer.created"))
    for module in harness.mods:
        monkeypatch.setattr(module, "VERSION", module.VERSION + 1)

    assert harness.project() == 0
    assert all(s.stale for s in harness.projector.statuses())
    assert harness.row("customers", "cust_abc123") is None
