"""The views of SPEC section 11 give the rows worked out by hand, in SQLite and PostgreSQL.

The account (`tests/_account.py`) goes through the real log and projector; the same
view text is then created in a real PostgreSQL over the same rows, typed as the
publisher types them (timestamptz, NUMERIC, jsonb).
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from app.projection import projector
from app.projection.rebuild import rebuild
from app.settings import Settings
from projections import discover
from tests import _account, _postgres
from tests._helpers import SECRET, Harness

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    import psycopg

# The rows of each view, sorted with NULLs first, as `_account` lists them.
QUERIES: dict[str, tuple[str, Sequence[Sequence[Any]]]] = {
    "sales_by_day": (
        (
            "SELECT day, currency, orders, paid_orders, paid_revenue FROM sales_by_day "
            "ORDER BY day IS NOT NULL, day, currency IS NOT NULL, currency"
        ),
        _account.SALES_BY_DAY,
    ),
    "customer_revenue": (
        "SELECT * FROM customer_revenue ORDER BY customer_id, currency IS NOT NULL, currency",
        _account.CUSTOMER_REVENUE,
    ),
    "message_funnel": (
        "SELECT * FROM message_funnel ORDER BY template_name IS NOT NULL, template_name",
        _account.MESSAGE_FUNNEL,
    ),
    "customer_messages": (
        (
            "SELECT message_id, direction, customer_id FROM customer_messages "
            "ORDER BY message_id, customer_id IS NOT NULL, customer_id"
        ),
        _account.CUSTOMER_MESSAGES,
    ),
}
VIEWS = sorted(QUERIES)


def _plain(value: Any) -> Any:
    """A number as a Decimal of its printed digits, so 19.99 and NUMERIC 19.99 compare equal.

    The read rate stays a float: both dialects compute it in double precision.
    """
    if isinstance(value, float) and not value.is_integer():
        return value if value < 1 else Decimal(str(value))
    if isinstance(value, float | int | Decimal) and not isinstance(value, bool):
        return Decimal(value)
    return value


def _rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(_plain(v) for v in row) for row in rows]


@pytest.fixture
def account(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    harness.append(_account.deliveries())
    harness.project()
    yield harness
    harness.close()


@pytest.mark.parametrize("view", VIEWS)
def test_each_view_gives_the_rows_worked_out_by_hand(account: Harness, view: str) -> None:
    """Every row of the view, NULL groups, offsets and skipped stages included, is as expected."""
    sql, expected = QUERIES[view]
    assert _rows(account.conn.execute(sql).fetchall()) == _rows(expected)


def test_no_projection_error_on_the_account(account: Harness) -> None:
    """The account is well-formed: every event applied, so the views see all of it."""
    assert account.errors() == []


def test_the_views_are_part_of_their_projections_schema(account: Harness) -> None:
    """Each view is created with its projection and recorded among what it owns."""
    owned = {name: set(projector.owned_names(p)) for p in discover() for name in p.TABLE.view_names}
    rows = account.conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'").fetchall()
    assert {name for (name,) in rows} == set(VIEWS) == set(owned)
    recorded = dict(account.conn.execute("SELECT name, tables FROM _projections").fetchall())
    assert '"sales_by_day"' in recorded["orders"]
    assert '"customer_messages"' in recorded["messages"]


def _rebuild(directory: Path, *names: str) -> None:
    settings = Settings(secrets=(SECRET,), data_dir=directory)
    rebuild(settings, [p for p in discover() if p.NAME in names], stream=io.StringIO())


def test_views_that_read_a_rebuilt_projection_survive_its_switch(account: Harness) -> None:
    """Rebuilding customers (read by orders' and messages' views) leaves those views whole."""
    account.close()
    _rebuild(account.directory, "customers")
    conn = sqlite3.connect(account.directory / "projections.db")
    try:
        for view in VIEWS:
            sql, expected = QUERIES[view]
            assert _rows(conn.execute(sql).fetchall()) == _rows(expected), view
    finally:
        conn.close()


def test_a_rebuild_replaces_a_projections_views_with_the_codes(account: Harness) -> None:
    """A view the code no longer has goes, and a changed one is replaced, with the tables."""
    account.conn.execute("DROP VIEW sales_by_day")
    account.conn.execute("CREATE VIEW sales_by_day AS SELECT 1 AS old")
    account.conn.execute("CREATE VIEW orders_gone AS SELECT 1 AS old")
    account.conn.execute(
        "UPDATE _projections SET tables = json_insert(tables, '$[#]', 'orders_gone') "
        "WHERE name = 'orders'"
    )
    account.conn.commit()
    account.close()
    _rebuild(account.directory, "orders")
    conn = sqlite3.connect(account.directory / "projections.db")
    try:
        views = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")}
        assert views == set(VIEWS)
        sql, expected = QUERIES["sales_by_day"]
        assert _rows(conn.execute(sql).fetchall()) == _rows(expected)
    finally:
        conn.close()


def test_foreign_keys_are_declared_but_not_enforced(account: Harness) -> None:
    """Links for Datasette and BI tools; an order may still name a customer never seen."""
    declared = {
        (table, row[3], row[2], row[4])
        for table in (
            "orders",
            "order_line_items",
            "customer_addresses",
            "product_variants",
            "message_status_history",
        )
        for row in account.conn.execute(f"PRAGMA foreign_key_list({table})")
    }
    assert declared == {
        ("orders", "customer_id", "customers", "id"),
        ("order_line_items", "order_id", "orders", "id"),
        ("customer_addresses", "customer_id", "customers", "id"),
        ("product_variants", "product_id", "products", "id"),
        ("message_status_history", "message_id", "messages", "message_id"),
    }
    assert account.conn.execute("PRAGMA foreign_keys").fetchone() == (0,)
    assert account.row("orders", "order_11") is not None  # its customer never arrived
    assert account.row("customers", "cust_ghost") is None


@pytest.fixture
def published(account: Harness, postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    with _postgres.published(account.conn, postgres_url) as conn:
        yield conn


@pytest.mark.parametrize("view", VIEWS)
def test_postgresql_takes_the_same_view_text_and_gives_the_same_rows(
    published: psycopg.Connection[Any], view: str
) -> None:
    """The publisher's copy of each view, over timestamptz, NUMERIC and jsonb, agrees."""
    sql, expected = QUERIES[view]
    assert _rows(published.execute(sql).fetchall()) == _rows(expected)


# The schema each projection's VERSION stands for: its DDL, views included, hashed.
SCHEMAS = {
    ("customers", 5): "e79e6a249da36b4a",
    ("messages", 5): "1f24f119deaeb31d",
    ("orders", 6): "1b53872bbb1e6ebc",
    ("products", 5): "881f7bc2af4d404b",
}


@pytest.mark.parametrize("projection", discover(), ids=lambda p: p.NAME)
def test_a_schema_change_is_a_version_change(projection: Any) -> None:
    """A table, index or view changed without a VERSION bump would never reach a rebuild.

    Existing files keep the old schema until their projection is stale; when this fails,
    bump the projection's VERSION and record the new hash here.
    """
    ddl = "\n".join(projection.TABLE.ddl()).encode()
    key = (projection.NAME, projection.VERSION)
    assert key in SCHEMAS, f"{projection.NAME}: no schema recorded for version {key[1]}"
    assert hashlib.sha256(ddl).hexdigest()[:16] == SCHEMAS[key], (
        f"{projection.NAME}'s schema changed: bump its VERSION"
    )
