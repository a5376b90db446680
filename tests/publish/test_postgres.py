"""The PostgreSQL consumer of the change feed, against a real server the suite starts."""

from __future__ import annotations

import collections
import datetime as dt
import io
import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import psycopg
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

import projections
from app.ops.forget import forget
from app.projection.feed import Feed
from app.projection.rebuild import rebuild
from app.publish.follow import Target, follow
from app.publish.lines import Batch, FeedLine, FeedLineError, Reset, RowChange, line_from, read_line
from app.publish.postgres import BUILDING_SUFFIX, CHANNEL, Publisher, Views
from app.publish.state import read_status
from app.publish.tables import Column, convert, published_tables
from app.publish.url import PublishURLError, describe_error, describe_target
from app.settings import Settings
from tests._helpers import (
    ROOT,
    Harness,
    append_and_project,
    delivery,
    histories,
    remake_projections,
    stray_order,
)
from tests._postgres import running_server

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from app.eventlog.rows import Delivery
    from tests._postgres import PostgresServer

PROJECTIONS = projections.discover()
TABLES = {t.name: t for t in published_tables(PROJECTIONS)}


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def drop(url: str, schema: str) -> None:
    with connect(url) as conn:
        for name in (schema, schema + BUILDING_SUFFIX):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    """A schema of its own for each test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    drop(postgres_url, name)


@pytest.fixture
def reader(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A second connection, as a BI tool has."""
    with connect(postgres_url) as conn:
        yield conn


@pytest.fixture(scope="module")
def module_reader(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection kept across a property test's examples (they only read)."""
    with connect(postgres_url) as conn:
        yield conn


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of its own, for a test that stops it: the suite's stays up for the others."""
    with running_server() as server:
        yield server


@pytest.fixture
def publisher(postgres_url: str, schema: str) -> Iterator[Publisher]:
    with Publisher.connect(postgres_url, PROJECTIONS, schema=schema) as publisher:
        yield publisher


def cursor(n: int) -> str:
    return f"c{n:08d}"


def order(n: int, key: str, **row: Any) -> RowChange:
    return RowChange(cursor(n), "orders", "orders", {"id": key}, {"id": key, **row})


def item(n: int, order_id: str, position: int, **row: Any) -> RowChange:
    return RowChange(
        cursor(n),
        "orders",
        "order_line_items",
        {"order_id": order_id, "position": position},
        {"order_id": order_id, "position": position, **row} if row else None,
    )


def gone(n: int, key: str) -> RowChange:
    return RowChange(cursor(n), "orders", "orders", {"id": key}, None)


def rows(conn: psycopg.Connection[Any], schema: str, query: str) -> list[tuple[Any, ...]]:
    return conn.execute(sql.SQL(query).format(s=sql.Identifier(schema))).fetchall()


class TestSchema:
    """The published tables mirror the projections' descriptions, in PostgreSQL types."""

    def test_every_json_column_is_a_column(self) -> None:
        """`json_columns` names only columns its table has (a typo would publish text)."""
        for projection in PROJECTIONS:
            entity = projection.TABLE
            assert entity.json_columns <= {name for name, _ in entity.columns}
            for child in entity.children:
                assert child.json_columns <= {name for name, _ in child.columns}

    def test_tables_columns_and_types(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """Same tables and columns as SQLite; numeric, timestamptz, jsonb, bigint where due."""
        publisher.apply([], at_head=True)
        found: dict[str, dict[str, str]] = collections.defaultdict(dict)
        for table, column, kind in reader.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s ORDER BY table_name, ordinal_position",
            [schema],
        ):
            found[table][column] = kind
        found.pop("_publish_state")
        expected_tables = {
            "customers",
            "customer_addresses",
            "orders",
            "order_line_items",
            "products",
            "product_variants",
            "messages",
            "message_status_history",
        }
        assert set(found) == expected_tables
        for projection in PROJECTIONS:
            entity = projection.TABLE
            assert list(found[entity.name]) == [entity.key, *(n for n, _ in entity.columns)]
        assert found["orders"]["total"] == "numeric"
        assert found["orders"]["created_at"] == "timestamp with time zone"
        assert found["orders"]["tags"] == "jsonb"
        assert found["products"]["media"] == "jsonb"
        assert found["products"]["options"] == "jsonb"
        assert found["product_variants"]["price"] == "numeric"
        assert found["order_line_items"]["position"] == "bigint"
        assert found["messages"]["status_updated_at"] == "timestamp with time zone"
        assert found["message_status_history"]["occurred_at"] == "timestamp with time zone"
        assert found["customers"]["email"] == "text"
        assert all(
            kind == "timestamp with time zone"
            for columns in found.values()
            for name, kind in columns.items()
            if name.endswith("_at")
        )

    def test_primary_keys_and_indexes(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """Primary keys as in SQLite, and the projections' indexes under the same names."""
        publisher.apply([], at_head=True)
        keys = collections.defaultdict(list)
        for table, column in reader.execute(
            "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc"
            " JOIN information_schema.key_column_usage kcu USING (constraint_schema,"
            " constraint_name) WHERE tc.constraint_type = 'PRIMARY KEY'"
            " AND tc.table_schema = %s ORDER BY tc.table_name, kcu.ordinal_position",
            [schema],
        ):
            keys[table].append(column)
        assert keys["orders"] == ["id"]
        assert keys["order_line_items"] == ["order_id", "position"]
        assert keys["message_status_history"] == ["message_id", "webhook_id"]
        assert keys["messages"] == ["message_id"]
        indexes = {
            name
            for (name,) in reader.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s", [schema]
            )
        }
        for projection in PROJECTIONS:
            entity = projection.TABLE
            for cols in entity.indexes:
                assert f"{entity.name}_by_{'_'.join(cols)}" in indexes

    def test_nothing_is_visible_before_the_first_batch_at_the_head(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """The first run builds beside: no table exists until all of it is there."""
        publisher.apply([order(1, "o1", status="paid")], at_head=False)
        assert reader.execute("SELECT to_regclass(%s)", [f"{schema}.orders"]).fetchone() == (None,)
        publisher.apply([order(2, "o2")], at_head=True)
        assert rows(reader, schema, "SELECT id, status FROM {s}.orders ORDER BY id") == [
            ("o1", "paid"),
            ("o2", None),
        ]


ZONES = [None, dt.UTC, dt.timezone(dt.timedelta(hours=7)), dt.timezone(-dt.timedelta(hours=14))]


def values() -> st.SearchStrategy[object]:
    """Values of every kind a row may carry, with the edges PostgreSQL refuses."""
    number = st.from_regex(r"\A-?[0-9]{1,6}(\.[0-9]{0,4})?([eE][-+]?[0-9]{1,6})?\Z")
    json_text = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=6,
    ).map(lambda v: json.dumps(v, allow_nan=True))
    # What st.text() rarely or never draws: NUL, lone surrogates, escapes.
    awkward = st.text(st.sampled_from(["a", "\x00", "\ud800", "\udc00", "é", "\\", '"']))
    return st.one_of(
        awkward,
        awkward.map(json.dumps),
        awkward.map(lambda t: json.dumps([t])),
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(),
        number,
        number.map(lambda n: f"[{n}]"),
        json_text,
        json_text.map(lambda t: t[:-1]),
        st.datetimes(timezones=st.sampled_from(ZONES)).map(lambda d: d.isoformat()),
    )


class TestApply:
    """Upsert by key, delete on null, cursor and rows in one transaction."""

    def test_upsert_replaces_the_whole_row_and_null_deletes(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """A row line is the whole row: a column it lacks becomes NULL."""
        publisher.apply(
            [
                order(1, "o1", status="pending", total=10, currency="IDR"),
                order(2, "o2", status="paid"),
                item(3, "o1", 0, title="Tea", quantity=2, price=5),
                item(4, "o1", 1, title="Cup", quantity=1, price=3.25),
            ],
            at_head=True,
        )
        publisher.apply(
            [order(5, "o1", status="paid", total=10), gone(6, "o2"), item(7, "o1", 1)], at_head=True
        )
        assert rows(reader, schema, "SELECT id, status, total, currency FROM {s}.orders") == [
            ("o1", "paid", Decimal(10), None)
        ]
        assert rows(
            reader, schema, "SELECT order_id, position, title, price FROM {s}.order_line_items"
        ) == [("o1", 0, "Tea", Decimal(5))]
        assert publisher.cursor == cursor(7)

    def test_values_are_typed(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """ISO text becomes an instant (no offset: UTC), JSON text becomes jsonb."""
        publisher.apply(
            [
                order(
                    1,
                    "o1",
                    total=12.5,
                    tags='["vip", "repeat"]',
                    created_at="2024-03-02T06:59:00+07:00",
                    updated_at="2024-03-02T00:00:00",
                )
            ],
            at_head=True,
        )
        ((total, tags, created, updated),) = rows(
            reader, schema, "SELECT total, tags, created_at, updated_at FROM {s}.orders"
        )
        assert total == Decimal("12.5")
        assert tags == ["vip", "repeat"]
        assert created == dt.datetime(2024, 3, 1, 23, 59, tzinfo=dt.UTC)
        assert updated == dt.datetime(2024, 3, 2, tzinfo=dt.UTC)

    def test_unreadable_values_never_drop_the_row(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """Bad timestamp, amount or JSON: that value only is NULL (or kept as a JSON string)."""
        with structlog.testing.capture_logs() as logs:
            applied = publisher.apply(
                [
                    order(
                        1,
                        "o1",
                        status="ok\x00",
                        total="twelve",
                        tags="[not json",
                        created_at="yesterday",
                        updated_at="2024-02-30T00:00:00Z",
                        customer_email="a@example.com",
                    ),
                    item(2, "o1", 0, title="\ud800", price="1e999999", quantity=float("inf")),
                ],
                at_head=True,
            )
        assert rows(
            reader,
            schema,
            "SELECT status, total, tags, created_at, updated_at, customer_email FROM {s}.orders",
        ) == [("ok\ufffd", None, "[not json", None, None, "a@example.com")]
        assert rows(reader, schema, "SELECT title, price, quantity FROM {s}.order_line_items") == [
            ("\ufffd", None, None)
        ]
        assert applied.unreadable == {
            "orders.status": 1,
            "orders.total": 1,
            "orders.tags": 1,
            "orders.created_at": 1,
            "orders.updated_at": 1,
            "order_line_items.title": 1,
            "order_line_items.price": 1,
            "order_line_items.quantity": 1,
        }
        (warning,) = [e for e in logs if e["event"] == "publish_values_unreadable"]
        assert "yesterday" not in str(warning)

    @pytest.mark.parametrize("kind", ["text", "numeric", "bigint", "timestamptz", "jsonb"])
    @given(value=values())
    def test_postgresql_takes_every_converted_value(
        self, module_reader: psycopg.Connection[Any], kind: str, value: object
    ) -> None:
        """Whatever SQLite or the feed may hold, the converted value never fails the batch."""
        converted, exact = convert(Column("c", kind), value)
        module_reader.execute(sql.SQL("SELECT %s::{}").format(sql.SQL(kind)), [converted])
        if exact and value is not None and kind == "timestamptz":
            assert converted is not None

    @pytest.mark.parametrize(
        ("kind", "value", "stored"),
        [
            ("jsonb", '{"a": "\\u0000"}', json.dumps('{"a": "\\u0000"}')),
            ("jsonb", '{"a": "\\ud800"}', json.dumps('{"a": "\\ud800"}')),
            ("jsonb", "[NaN]", json.dumps("[NaN]")),
            ("jsonb", "[1e999999]", json.dumps("[1e999999]")),
            ("jsonb", "[1e300, 0.1]", "[1e300, 0.1]"),
            ("jsonb", "[" * 5000 + "]" * 5000, json.dumps("[" * 5000 + "]" * 5000)),
            ("jsonb", "[1, 2]", "[1, 2]"),
            ("numeric", "1e131072", None),
            ("numeric", " 7.50 ", Decimal("7.50")),
            ("numeric", True, 1),
            ("bigint", 2**63, None),
            ("bigint", "12", 12),
            ("text", 12, "12"),
            ("timestamptz", 1700000000, None),
        ],
    )
    def test_conversions(
        self, reader: psycopg.Connection[Any], kind: str, value: object, stored: object
    ) -> None:
        """Each value PostgreSQL's type could refuse is caught before it reaches it."""
        converted, _ = convert(Column("c", kind), value)
        assert converted == stored
        # And PostgreSQL takes what is left.
        reader.execute(sql.SQL("SELECT %s::{}").format(sql.SQL(kind)), [converted])

    def test_lines_of_unknown_tables_are_ignored_and_counted(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """A newer feed's table or projection, or a line without its key, moves the cursor on."""
        applied = publisher.apply(
            [
                RowChange(cursor(1), "refunds", "refunds", {"id": "r1"}, {"id": "r1"}),
                Reset("refunds", cursor(2)),
                RowChange(cursor(3), "orders", "orders", {}, {"status": "x"}),
                order(4, "o1"),
            ],
            at_head=True,
        )
        assert applied.ignored == {
            "unknown table refunds.refunds": 1,
            "reset of unknown projection refunds": 1,
            "unusable key orders.id": 1,
        }
        assert applied.cursor == cursor(4)
        assert rows(reader, schema, "SELECT id FROM {s}.orders") == [("o1",)]

    def test_a_table_added_by_a_new_version_waits_for_the_reset(
        self, postgres_url: str, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """Its projection's other tables stay live; the reset after the rebuild adds it."""
        publisher.apply([order(1, "o1"), item(2, "o1", 0, title="Tea")], at_head=True)
        publisher.close()
        reader.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, "order_line_items")))
        with Publisher.connect(postgres_url, PROJECTIONS, schema=schema) as again:
            assert again.building == set()
            applied = again.apply([order(3, "o2"), item(4, "o2", 0, title="Cup")], at_head=True)
            assert applied.ignored == {"order_line_items not published until orders is reset": 1}
            assert rows(reader, schema, "SELECT id FROM {s}.orders ORDER BY id") == [
                ("o1",),
                ("o2",),
            ]
            again.apply(
                [Reset("orders", cursor(5)), order(6, "o2"), item(7, "o2", 0, title="Cup")],
                at_head=True,
            )
        assert rows(reader, schema, "SELECT order_id, title FROM {s}.order_line_items") == [
            ("o2", "Cup")
        ]

    def test_lines_already_applied_are_skipped(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """A feed read again from an older cursor changes nothing twice."""
        publisher.apply([order(1, "o1", status="a"), order(2, "o1", status="b")], at_head=True)
        applied = publisher.apply([order(1, "o1", status="a"), order(3, "o2")], at_head=True)
        assert applied.skipped == 1
        assert rows(reader, schema, "SELECT id, status FROM {s}.orders ORDER BY id") == [
            ("o1", "b"),
            ("o2", None),
        ]

    def test_a_failed_batch_leaves_rows_and_cursor_as_they_were(
        self, postgres_url: str, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """Killed mid-batch: nothing of it is committed; resumed, nothing missing or twice."""
        lines = [order(n, f"o{n % 3}", status=str(n)) for n in range(1, 10)]
        publisher.apply(lines[:3], at_head=True)

        def dies_midway() -> Iterator[FeedLine]:
            yield from lines[3:6]
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            publisher.apply(dies_midway(), at_head=True)
        publisher.close()
        assert rows(reader, schema, "SELECT cursor FROM {s}._publish_state") == [(cursor(3),)]
        with Publisher.connect(postgres_url, PROJECTIONS, schema=schema) as again:
            assert again.cursor == cursor(3)
            again.apply(
                [line for line in lines if line.cursor > (again.cursor or "")], at_head=True
            )
        assert rows(reader, schema, "SELECT id, status FROM {s}.orders ORDER BY id") == [
            ("o0", "9"),
            ("o1", "7"),
            ("o2", "8"),
        ]

    def test_listeners_hear_the_committed_cursor(
        self, publisher: Publisher, reader: psycopg.Connection[Any]
    ) -> None:
        """NOTIFY bitbybit_changes carries the cursor, delivered at commit."""
        reader.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        publisher.apply([order(1, "o1"), order(2, "o2")], at_head=True)
        (notice,) = list(reader.notifies(timeout=5, stop_after=1))
        assert (notice.channel, notice.payload) == (CHANNEL, cursor(2))

    def test_a_commit_that_only_swaps_is_heard_too(
        self, publisher: Publisher, reader: psycopg.Connection[Any]
    ) -> None:
        """The rows of a reset arrive short of the head; the empty batch at it swaps them in."""
        publisher.apply([order(1, "o1")], at_head=True)
        publisher.apply([Reset("orders", cursor(2)), order(3, "o2")], at_head=False)
        reader.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        assert publisher.apply([], at_head=True).swapped == ("orders",)
        (notice,) = list(reader.notifies(timeout=5, stop_after=1))
        assert notice.payload == cursor(3)

    def test_vacuum(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """After a forget's changes, the tables can be vacuumed (plain or full)."""
        publisher.apply([order(1, "o1", customer_email="x@example.com")], at_head=True)
        publisher.apply([order(2, "o1")], at_head=True)
        publisher.vacuum(["orders", "order_line_items"])
        publisher.vacuum(["orders"], full=True)
        assert rows(reader, schema, "SELECT customer_email FROM {s}.orders") == [(None,)]

    def test_a_rewrite_after_forgets_is_done_once_per_count_across_connections(
        self, postgres_url: str, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """The count is kept in PostgreSQL: a new publisher does not rewrite again."""
        publisher.apply([order(1, "o1")], at_head=True)
        filenode = f"SELECT pg_relation_filenode('{schema}.orders')"
        before = reader.execute(filenode).fetchone()
        assert publisher.rewrite_after_forgets(["orders"], 1)
        rewritten = reader.execute(filenode).fetchone()
        assert rewritten != before
        with Publisher.connect(postgres_url, PROJECTIONS, schema=schema) as again:
            assert again.forgets == 1
            assert not again.rewrite_after_forgets(["orders"], 1)
            assert reader.execute(filenode).fetchone() == rewritten
            assert again.rewrite_after_forgets(["orders"], 2)


class TestReset:
    """A rebuild's reset builds beside and swaps; readers never see a partial table."""

    def test_reset_replaces_the_projection_tables(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """Rows absent after the reset are gone; other projections are untouched."""
        publisher.apply(
            [
                order(1, "old"),
                RowChange(cursor(2), "customers", "customers", {"id": "c1"}, {"id": "c1"}),
            ],
            at_head=True,
        )
        applied = publisher.apply([Reset("orders", cursor(3)), order(4, "new")], at_head=True)
        assert applied.swapped == ("orders",)
        assert rows(reader, schema, "SELECT id FROM {s}.orders") == [("new",)]
        assert rows(reader, schema, "SELECT id FROM {s}.customers") == [("c1",)]

    def test_reader_never_sees_fewer_rows(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """A reader counting in a loop during a reset and its batches never sees a dip."""
        publisher.apply([order(n, f"o{n}") for n in range(1, 301)], at_head=True)
        counts: list[int] = []
        errors: list[BaseException] = []
        done = threading.Event()
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "orders"))

        def count() -> None:
            try:
                while not done.is_set():
                    counts.append(reader.execute(query).fetchone()[0])  # type: ignore[index]
            except BaseException as error:  # noqa: BLE001 - reported by the test
                errors.append(error)

        thread = threading.Thread(target=count)
        thread.start()
        try:
            publisher.apply([Reset("orders", cursor(1000))], at_head=False)
            for start in range(1001, 1401, 100):
                publisher.apply(
                    [order(n, f"n{n}") for n in range(start, start + 100)],
                    at_head=start == 1301,
                )
        finally:
            done.set()
            thread.join()
        assert errors == []
        assert counts
        assert min(counts) >= 300
        assert counts[-1] == 400

    def test_a_long_reader_delays_the_swap_not_the_other_readers(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """The swap waits a bounded time for a long query, then rolls back and is retried."""
        publisher.apply([order(1, "o1")], at_head=True)
        publisher.swap_lock_timeout = 0.1
        with reader.transaction():
            rows(reader, schema, "SELECT count(*) FROM {s}.orders")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                publisher.apply([Reset("orders", cursor(2)), order(3, "o2")], at_head=True)
            assert publisher.cursor == cursor(1)
        applied = publisher.apply([Reset("orders", cursor(2)), order(3, "o2")], at_head=True)
        assert applied.swapped == ("orders",)
        assert rows(reader, schema, "SELECT id FROM {s}.orders") == [("o2",)]

    def test_grants_and_views_survive_the_swap(
        self, postgres_url: str, schema: str, reader: psycopg.Connection[Any]
    ) -> None:
        """A read-only role keeps its SELECT; our views are there again, a user's is named."""
        role = f"bi_{uuid.uuid4().hex[:8]}"
        views = Views(
            {
                "order_count": "SELECT count(*) AS n FROM orders",
                "orders_by_day": (
                    "SELECT strftime('%Y-%m-%d', created_at) AS day, count(*) AS n"
                    " FROM orders GROUP BY 1"
                ),
            },
            (STRFTIME,),
        )
        reader.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        try:
            with Publisher.connect(postgres_url, PROJECTIONS, schema=schema, views=views) as pub:
                pub.apply([order(1, "o1", created_at="2024-03-02T06:59:00+07:00")], at_head=True)
                assert rows(reader, schema, "SELECT day, n FROM {s}.orders_by_day") == [
                    ("2024-03-01", 1)
                ]
                for granted in ("orders", "order_count"):
                    reader.execute(
                        sql.SQL("GRANT SELECT ON {} TO {}").format(
                            sql.Identifier(schema, granted), sql.Identifier(role)
                        )
                    )
                reader.execute(
                    sql.SQL("CREATE VIEW {} AS SELECT id FROM {}").format(
                        sql.Identifier(schema, "mine"), sql.Identifier(schema, "orders")
                    )
                )
                with structlog.testing.capture_logs() as logs:
                    pub.apply(
                        [Reset("orders", cursor(2)), order(3, "o2"), order(4, "o3")], at_head=True
                    )
            (dropped,) = [e for e in logs if e["event"] == "publish_dropped_dependent_views"]
            assert dropped["views"] == [f"{schema}.mine"]
            assert rows(reader, schema, "SELECT n FROM {s}.order_count") == [(2,)]
            assert can_select(reader, role, f"{schema}.orders")
            assert can_select(reader, role, f"{schema}.order_count")
            assert not can_select(reader, role, f"{schema}.orders_by_day")
            # A changed view reaches PostgreSQL at the next start, without a rebuild.
            views = Views({"order_count": "SELECT count(*) + 1 AS n FROM orders"})
            with Publisher.connect(postgres_url, PROJECTIONS, schema=schema, views=views):
                pass
            assert rows(reader, schema, "SELECT n FROM {s}.order_count") == [(3,)]
            assert can_select(reader, role, f"{schema}.order_count")
        finally:
            drop(postgres_url, schema)
            reader.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def can_select(conn: psycopg.Connection[Any], role: str, relation: str) -> bool:
    """Whether `role` may read `relation` (a table or a view)."""
    found = conn.execute("SELECT has_table_privilege(%s, %s, 'SELECT')", [role, relation])
    return cast("tuple[bool]", found.fetchone())[0]


# The dashboard's function for the views' instants (projections.POSTGRESQL_FUNCTIONS on
# its branch): views of both dialects call `strftime`, which PostgreSQL lacks.
STRFTIME = """\
CREATE OR REPLACE FUNCTION strftime(format text, instant timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(instant AT TIME ZONE 'UTC', CASE format
        WHEN '%Y-%m-%d' THEN 'YYYY-MM-DD'
        WHEN '%Y-%m-%dT%H:%M:%fZ' THEN 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'
    END)
$$"""


# --- Any split of the feed into batches gives the same tables ---------------------------

KEYS = ["a", "b", "c"]


@st.composite
def feeds(draw: st.DrawFn) -> list[FeedLine]:
    """Lines over a few keys: upserts, deletes, child rows, and resets."""
    lines: list[FeedLine] = []
    for n in range(1, draw(st.integers(1, 25)) + 1):
        kind = draw(st.sampled_from(["order", "order", "gone", "item", "reset", "customer"]))
        key = draw(st.sampled_from(KEYS))
        if kind == "order":
            status = draw(st.sampled_from(["pending", "paid", None]))
            lines.append(order(n, key, status=status, total=n))
        elif kind == "gone":
            lines.append(gone(n, key))
        elif kind == "item":
            position = draw(st.integers(0, 1))
            title = draw(st.sampled_from([f"t{n}", None]))
            lines.append(item(n, key, position, title=title) if title else item(n, key, position))
        elif kind == "customer":
            lines.append(
                RowChange(
                    cursor(n), "customers", "customers", {"id": key}, {"id": key, "email": str(n)}
                )
            )
        else:
            lines.append(Reset("orders", cursor(n)))
    return lines


def expected(lines: Sequence[FeedLine]) -> dict[str, dict[tuple[Any, ...], Any]]:
    """The tables a consumer holds after applying `lines` in order, by the SPEC's rule."""
    tables: dict[str, dict[tuple[Any, ...], Any]] = collections.defaultdict(dict)
    for line in lines:
        if isinstance(line, Reset):
            for table in TABLES.values():
                if table.projection == line.projection:
                    tables[table.name] = {}
            continue
        key = tuple(line.key[c] for c in TABLES[line.table].primary_key)
        if line.row is None:
            tables[line.table].pop(key, None)
        else:
            tables[line.table][key] = line.row
    return tables


def published(conn: psycopg.Connection[Any], schema: str) -> dict[str, dict[tuple[Any, ...], Any]]:
    """The same shape, read back from PostgreSQL (only the columns the feeds above set)."""
    tables: dict[str, dict[tuple[Any, ...], Any]] = collections.defaultdict(dict)
    for key, status, total in rows(conn, schema, "SELECT id, status, total FROM {s}.orders"):
        tables["orders"][(key,)] = {"id": key, "status": status, "total": int(total)}
    for key, position, title in rows(
        conn, schema, "SELECT order_id, position, title FROM {s}.order_line_items"
    ):
        tables["order_line_items"][(key, position)] = {
            "order_id": key,
            "position": position,
            "title": title,
        }
    for key, email in rows(conn, schema, "SELECT id, email FROM {s}.customers"):
        tables["customers"][(key,)] = {"id": key, "email": email}
    return tables


def batches(lines: Sequence[FeedLine], cuts: Iterable[int], replays: Sequence[int]) -> list[Batch]:
    """`lines` cut into batches; a batch may start a few lines early, as a re-read feed does."""
    bounds = sorted({0, *(c % (len(lines) + 1) for c in cuts), len(lines)})
    result = []
    for i, (start, end) in enumerate(itertools.pairwise(bounds)):
        replay = replays[i % len(replays)] if replays else 0
        result.append(Batch(lines[max(0, start - replay) : end], at_head=end == len(lines)))
    return result


@settings(max_examples=40)
@given(
    lines=feeds(),
    cuts=st.lists(st.integers(0, 30), max_size=6),
    replays=st.lists(st.integers(0, 30), max_size=4),
    heads=st.lists(st.booleans(), max_size=6),
)
def test_any_split_into_batches_gives_the_tables_of_the_lines_in_order(
    postgres_url: str,
    lines: list[FeedLine],
    cuts: list[int],
    replays: list[int],
    heads: list[bool],
) -> None:
    """Batches of any size, re-read overlaps and early "at head" marks change nothing."""
    schema = f"p_{uuid.uuid4().hex[:12]}"
    try:
        with Publisher.connect(postgres_url, PROJECTIONS, schema=schema) as publisher:
            for i, batch in enumerate(batches(lines, cuts, replays)):
                early = heads[i % len(heads)] if heads else False
                publisher.apply(batch.lines, at_head=batch.at_head or early)
        with connect(postgres_url) as conn:
            got = published(conn, schema)
        want = expected(lines)
        for table in ("orders", "order_line_items", "customers"):
            want_rows = {
                k: {c: v.get(c) for c in got_columns(table)} for k, v in want[table].items()
            }
            assert got[table] == want_rows, table
    finally:
        drop(postgres_url, schema)


def got_columns(table: str) -> tuple[str, ...]:
    return {
        "orders": ("id", "status", "total"),
        "order_line_items": ("order_id", "position", "title"),
        "customers": ("id", "email"),
    }[table]


def committed(url: str, schema: str) -> str | None:
    """The cursor the publisher committed in `schema`, None before its first commit."""
    with connect(url) as conn:
        if conn.execute("SELECT to_regclass(%s)", [f"{schema}._publish_state"]).fetchone() == (
            None,
        ):
            return None
        return cast("str | None", rows(conn, schema, "SELECT cursor FROM {s}._publish_state")[0][0])


def line_json(line: FeedLine) -> str:
    """A line as `changes` prints it."""
    if isinstance(line, Reset):
        return json.dumps({"reset": line.projection, "cursor": line.cursor})
    return json.dumps(
        {
            "cursor": line.cursor,
            "projection": line.projection,
            "table": line.table,
            "key": dict(line.key),
            "row": None if line.row is None else dict(line.row),
        }
    )


def test_killed_at_random_moments_it_resumes_with_nothing_missing_or_twice(
    postgres_url: str, schema: str, tmp_path: Path
) -> None:
    """SIGKILL mid-run, again and again; the last run ends equal to the lines in order."""
    chooser = random.Random(23)  # noqa: S311 - test data, not security
    lines: list[FeedLine] = []
    for n in range(1, 801):
        key = f"k{chooser.randrange(40)}"
        if n == 100:  # so that later kills land while the reset builds beside
            lines.append(Reset("orders", cursor(n)))
        elif chooser.random() < 0.15:
            lines.append(gone(n, key))
        elif chooser.random() < 0.3:
            lines.append(item(n, key, chooser.randrange(2), title=f"t{n}"))
        else:
            lines.append(order(n, key, status=str(n), total=n))
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(line_json(line) + "\n" for line in lines), encoding="utf-8")
    command = [sys.executable, "-m", "tests.publish._consumer", schema, str(feed), "7"]
    env = {**os.environ, "BITBYBIT_PUBLISH_URL": postgres_url, "PYTHONPATH": str(ROOT)}
    kills: list[str | None] = []
    for _ in range(4):
        before = committed(postgres_url, schema)
        process = subprocess.Popen(command, env=env, cwd=ROOT)
        # Killed once it has committed something more, at a moment after that.
        deadline = time.monotonic() + 60
        while committed(postgres_url, schema) == before and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(chooser.uniform(0, 0.03))
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills.append(committed(postgres_url, schema))
    assert subprocess.run(command, env=env, cwd=ROOT, check=False, timeout=60).returncode == 0
    assert len(set(kills)) == 4, kills
    assert cursor(800) not in kills, "the kills came after the end: a longer feed is needed"
    with connect(postgres_url) as conn:
        got = published(conn, schema)
        assert rows(conn, schema, "SELECT cursor FROM {s}._publish_state") == [(cursor(800),)]
    want = expected(lines)
    for table in ("orders", "order_line_items"):
        want_rows = {k: {c: v.get(c) for c in got_columns(table)} for k, v in want[table].items()}
        assert got[table] == want_rows, table


def test_the_publish_command_killed_at_random_moments_resumes(
    postgres_url: str, schema: str, tmp_path: Path
) -> None:
    """`python -m app publish` SIGKILLed mid-load, again and again, ends as projections.db."""
    data_dir = tmp_path / "data"
    items = [{"id": "a", "title": "Kopi"}, {"id": "b", "title": "Teh"}]
    # Three lines an order: 36,000, eight of the publisher's batches, eight commits.
    append_and_project(
        data_dir,
        [
            delivery(
                "order.created",
                {"id": f"o{n}", "status": "paid", "total": n, "lineItems": items},
                webhook_id=f"wh{n}",
            )
            for n in range(12000)
        ],
    )
    lite = sqlite3.connect(data_dir / "projections.db")
    last = Feed(lite, PROJECTIONS).lines(None, 1_000_000)[-1]["cursor"]
    command = [sys.executable, "-m", "app", "publish", "--schema", schema]
    command += ["--data-dir", str(data_dir)]
    env = {**os.environ, "BITBYBIT_PUBLISH_URL": postgres_url, "PYTHONPATH": str(ROOT)}
    chooser = random.Random(12)  # noqa: S311 - test data, not security
    kills: list[str | None] = []
    for _ in range(3):
        before = committed(postgres_url, schema)
        process = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while committed(postgres_url, schema) == before and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(chooser.uniform(0, 0.1))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        kills.append(committed(postgres_url, schema))
    assert len(set(kills)) == 3, kills
    assert kills[0] != last, "the first kill came after the end: a longer feed is needed"
    once = subprocess.run([*command, "--once"], env=env, cwd=ROOT, check=False, timeout=120)
    assert once.returncode == 0
    with connect(postgres_url) as conn:
        assert rows(conn, schema, "SELECT cursor FROM {s}._publish_state") == [(last,)]
        held = assert_same_rows(lite, conn, schema)
    assert held["order_line_items"] == 24_000


# --- Following, failing, and the secret ------------------------------------------------


class TestFollow:
    """The loop: resumes from PostgreSQL's cursor, retries, records, never leaks the URL."""

    def test_follow_resumes_after_the_server_restarts(
        self, own_server: PostgresServer, tmp_path: Path
    ) -> None:
        """Stopped mid-feed: the error is recorded (no password), then it catches up."""
        schema = "restart"
        target = Target(own_server.url, PROJECTIONS, schema=schema)
        lines = [order(n, f"o{n}") for n in range(1, 31)]
        stopped = threading.Event()

        def feed(after: str | None) -> Iterator[Batch]:
            rest = [line for line in lines if after is None or line.cursor > after]
            for start in range(0, len(rest), 10):
                yield Batch(rest[start : start + 10], at_head=start + 10 >= len(rest))
                if not stopped.is_set():
                    # The first batch is committed; the server goes down before the next.
                    stopped.set()
                    own_server.stop()

        def delays() -> Iterator[float]:
            # The first retry finds the server down; the server is back for the second.
            yield 0.01
            own_server.resume()
            while True:
                yield 0.01

        with structlog.testing.capture_logs() as logs:
            last = follow(target, feed, tmp_path, delays=delays)
        assert last == cursor(30)
        assert stopped.is_set()
        failures = [e for e in logs if e["event"] == "publish_failed"]
        assert failures
        assert [e["event"] for e in logs].count("publish_resumed") == 1
        assert own_server.password not in repr(logs)
        status = read_status(tmp_path)
        assert (status.cursor, status.error, status.errors) == (cursor(30), None, len(failures))
        assert own_server.password not in (tmp_path / "publish.json").read_text()
        assert status.target == f"127.0.0.1:{own_server.port}/postgres schema {schema}"
        with connect(own_server.url) as conn:
            assert rows(conn, schema, "SELECT count(*) FROM {s}.orders") == [(30,)]

    def test_unreachable_server_records_an_error_without_the_password(
        self, postgres_server: PostgresServer, tmp_path: Path
    ) -> None:
        """Nothing listens: the error names host and port, never the password."""
        url = postgres_server.url.replace(f":{postgres_server.port}/", ":1/")
        stop = threading.Event()

        def delays() -> Iterator[float]:
            stop.set()
            yield 0.0

        with structlog.testing.capture_logs() as logs:
            follow(Target(url, PROJECTIONS), lambda _after: [], tmp_path, stop=stop, delays=delays)
        (failure,) = [e for e in logs if e["event"] == "publish_failed"]
        assert "127.0.0.1" in failure["error"]
        assert postgres_server.password not in repr(logs)
        status = read_status(tmp_path)
        assert status.error == failure["error"]
        assert postgres_server.password not in (tmp_path / "publish.json").read_text()

    def test_a_malformed_url_is_never_quoted(self) -> None:
        """A connection string libpq cannot read is quoted by libpq, never by this module."""
        url = "postgres:/user:Pa55word@host/db"
        with pytest.raises(PublishURLError) as raised:
            describe_target(url)
        assert "Pa55word" not in str(raised.value)
        with pytest.raises(psycopg.Error) as libpq:
            psycopg.connect(url)
        assert "Pa55word" in str(libpq.value)  # libpq's own message does quote it
        assert "Pa55word" not in describe_error(libpq.value, url)
        assert "Pa55word" not in repr(Target(url, PROJECTIONS))

    def test_describe_target(self) -> None:
        """Host, port and database; no user, no password."""
        assert (
            describe_target("postgresql://me:secret@db.example.com:6543/shop?sslmode=require")
            == "db.example.com:6543/shop"
        )
        assert describe_target("postgresql://me:secret@db.example.com/shop") == (
            "db.example.com:5432/shop"
        )


class TestReadLine:
    """The feed's JSON lines, as `changes` prints them."""

    def test_change_and_reset(self) -> None:
        """Both shapes of SPEC §12."""
        assert read_line(
            '{"cursor": "c1", "projection": "orders", "table": "orders",'
            ' "key": {"id": "o1"}, "row": null}'
        ) == RowChange("c1", "orders", "orders", {"id": "o1"}, None)
        assert read_line(b'{"reset": "orders", "cursor": "c2"}') == Reset("orders", "c2")

    @pytest.mark.parametrize(
        "text", ["", "[]", '{"cursor": "c1"}', '{"cursor": "c", "projection": "p", "table": "t"}']
    )
    def test_other_text_is_refused(self, text: str) -> None:
        """Anything else is an error, not a silent skip."""
        with pytest.raises(FeedLineError):
            read_line(text)


# --- The same tables as projections.db ---------------------------------------------------


def sqlite_schema() -> sqlite3.Connection:
    """An empty projections.db, from the projections' own DDL."""
    conn = sqlite3.connect(":memory:")
    for projection in PROJECTIONS:
        for statement in projection.TABLE.ddl():
            conn.execute(statement)
    return conn


class TestSameAsSQLite:
    """The published schema and rows equal projections.db's, types normalised."""

    def test_schema(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str
    ) -> None:
        """Every user table of projections.db: same columns in order, keys, index names."""
        publisher.apply([], at_head=True)
        lite = sqlite_schema()
        user_tables = [
            name
            for (name,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not name.startswith("_")
        ]
        assert sorted(user_tables) == sorted(TABLES)
        for name in user_tables:
            info = lite.execute(f"PRAGMA table_info({name})").fetchall()
            columns = [row[1] for row in info]
            key = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5]]
            assert columns == [
                c
                for (c,) in reader.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                    [schema, name],
                )
            ]
            assert key == list(TABLES[name].primary_key)
            lite_indexes = {
                row[1]
                for row in lite.execute(f"PRAGMA index_list({name})")
                if not row[1].startswith("sqlite_autoindex")
            }
            pg_indexes = {
                i
                for (i,) in reader.execute(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                    [schema, name],
                )
                if not i.endswith("_pkey")
            }
            assert lite_indexes == pg_indexes

    def test_rows_of_a_real_projection(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str, tmp_path: Path
    ) -> None:
        """Rows the projections wrote, published one line each, read back equal."""
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "customer.created",
                {
                    "id": "cu1",
                    "email": "a@x.id",
                    "tags": ["vip"],
                    "addresses": [{"id": "ad1", "city": "Bandung", "zip": "40111"}],
                    "createdAt": "2024-03-02T06:59:00+07:00",
                },
            ),
            (
                "order.created",
                {
                    "id": "o1",
                    "status": "paid",
                    "total": 150000.75,
                    "currency": "IDR",
                    "customer": {"id": "cu1", "email": "a@x.id"},
                    "lineItems": [{"id": "li1", "title": "Kopi", "quantity": 2, "price": 75000}],
                    "tags": [],
                    "createdAt": "2024-01-15T10:30:00.000Z",
                    "updatedAt": "not a date",
                },
            ),
            (
                "product.created",
                {
                    "id": "p1",
                    "name": "Kopi",
                    "media": [{"url": "https://x.id/k.jpg"}],
                    "options": [{"name": "Size", "values": ["S", "L"]}],
                    "tags": ["drink"],
                    "types": ["food"],
                    "variants": [{"id": "v1", "key": "S", "price": 15000.5, "inventorySku": "K"}],
                    "createdAt": "2024-01-15T10:30:00",
                },
            ),
            ("product.deleted", {"id": "p2"}),
            ("message.status.updated", {"messageId": "m1", "status": "read", "to": "+62"}),
            ("message.received", {"messageId": "m2", "from": "+62", "body": "halo"}),
        ]
        append_and_project(
            tmp_path,
            [
                delivery(kind, body, webhook_id=f"evt_{n}", timestamp=1_705_000_000 + n)
                for n, (kind, body) in enumerate(events)
            ],
        )
        lite = sqlite3.connect(tmp_path / "projections.db")
        lines: list[FeedLine] = []
        for table in TABLES.values():
            names = [c.name for c in table.columns]
            for values in lite.execute(f"SELECT {', '.join(names)} FROM {table.name}"):
                row = dict(zip(names, values, strict=True))
                key = {k: row[k] for k in table.primary_key}
                lines.append(
                    RowChange(cursor(len(lines) + 1), table.projection, table.name, key, row)
                )
        publisher.apply(lines, at_head=True)
        held = assert_same_rows(lite, reader, schema)
        assert not [name for name, count in held.items() if not count], "sample leaves empty"

    @settings(max_examples=20, deadline=None)
    @given(history=histories(max_size=20), data=st.data())
    def test_a_published_copy_holds_the_tables(
        self,
        postgres_url: str,
        module_reader: psycopg.Connection[Any],
        history: list[Delivery],
        data: st.DataObject,
    ) -> None:
        """Deliveries in any order, again, rebuilds, forgets, publishes between: equal rows."""
        arriving = [
            *data.draw(st.permutations(history), label="arrival order"),
            *data.draw(st.lists(st.sampled_from(history), max_size=3), label="again"),
        ]
        steps = data.draw(
            st.lists(st.sampled_from(["publish", "rebuild", "forget", "nothing"]), min_size=3),
            label="between batches",
        )
        schema = f"h_{uuid.uuid4().hex[:12]}"
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp) / "data"
            harness = Harness(directory, synchronous="OFF")
            config = Settings(data_dir=directory)
            try:
                with Publisher.connect(postgres_url, PROJECTIONS, schema=schema) as publisher:
                    size = max(1, len(arriving) // len(steps))
                    for n, step in enumerate(steps):
                        harness.append(arriving[n * size : (n + 1) * size])
                        harness.project()
                        if step == "publish":
                            limit = data.draw(st.integers(1, 30), label="limit")
                            publish_feed(harness.conn, publisher, limit)
                        elif step == "rebuild":
                            stray_order(harness.conn)
                            publish_feed(harness.conn, publisher)
                            rebuild(config, PROJECTIONS, stream=io.StringIO())
                        elif step == "forget":
                            forget(config, PROJECTIONS, "c1", reason="test")
                    harness.append(arriving[len(steps) * size :])
                    harness.project()
                    publish_feed(harness.conn, publisher)
                assert_same_rows(harness.conn, module_reader, schema)
            finally:
                harness.close()
                drop(postgres_url, schema)

    def test_a_deleted_projections_db_is_published_anew(
        self, publisher: Publisher, reader: psycopg.Connection[Any], schema: str, tmp_path: Path
    ) -> None:
        """The publisher's cursor is below the new file's: it applies its resets and rows."""
        harness = Harness(tmp_path / "data")
        try:
            harness.send("order.created", {"id": "o1", "status": "paid"})
            stray_order(harness.conn)
            publish_feed(harness.conn, publisher)
        finally:
            harness.close()
        assert rows(reader, schema, "SELECT id FROM {s}.orders ORDER BY id") == [
            ("o1",),
            ("stray",),
        ]
        harness = remake_projections(tmp_path / "data")
        try:
            publish_feed(harness.conn, publisher)
            assert assert_same_rows(harness.conn, reader, schema)["orders"] == 1
        finally:
            harness.close()


def publish_feed(conn: sqlite3.Connection, publisher: Publisher, limit: int | None = None) -> None:
    """Apply the feed after the publisher's cursor: `limit` lines, or all of them."""
    lines = Feed(conn, PROJECTIONS).lines(publisher.cursor, limit or 1_000_000)
    publisher.apply([line_from(line) for line in lines], at_head=limit is None)


def assert_same_rows(
    lite: sqlite3.Connection, reader: psycopg.Connection[Any], schema: str
) -> dict[str, int]:
    """Every published table's rows equal projections.db's, normalised; the row counts."""
    counts = {}
    for table in TABLES.values():
        names = [c.name for c in table.columns]
        order_by = ", ".join(table.primary_key)
        query = f"SELECT {', '.join(names)} FROM {{}}.{table.name} ORDER BY {order_by}"
        want = [
            tuple(normalised(c, v) for c, v in zip(table.columns, r, strict=True))
            for r in lite.execute(query.format("main"))
        ]
        got = reader.execute(query.format(sql.Identifier(schema).as_string(reader))).fetchall()
        assert got == want, table.name
        counts[table.name] = len(want)
    return counts


def normalised(column: Column, value: Any) -> Any:
    """What a SQLite value of `column` reads as from PostgreSQL, computed independently."""
    if value is None:
        return None
    match column.pg_type:
        case "timestamptz":
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
        case "numeric":
            return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        case "jsonb":
            return json.loads(value)
    return value
