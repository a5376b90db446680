"""The change feed: a consumer applying its lines in order holds the projection tables."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import projections
from app.ops.forget import forget
from app.projection.feed import CursorError, Feed, compact, cursor, parse_cursor
from app.projection.rebuild import rebuild
from app.settings import Settings
from tests._helpers import Harness, histories, remake_projections, sample, stray_order

if TYPE_CHECKING:
    import sqlite3

    from app.eventlog.rows import Delivery

Tables = dict[str, dict[tuple[Any, ...], dict[str, Any]]]


class Consumer:
    """What a consumer of the feed keeps: upsert by key, delete on null, empty on reset."""

    def __init__(self) -> None:
        self.tables: Tables = {}
        self.cursor: str | None = None
        self.owned = {
            p.NAME: [
                p.TABLE.name,
                *(c.name for c in p.TABLE.children),
                *([p.TABLE.history.name] if p.TABLE.history else []),
            ]
            for p in projections.discover()
        }

    def apply(self, lines: list[dict[str, Any]]) -> None:
        """Apply lines in order, checking that their cursors increase."""
        for line in lines:
            assert self.cursor is None or line["cursor"] > self.cursor, "cursors increase"
            self.cursor = line["cursor"]
            if "reset" in line:
                for table in self.owned[line["reset"]]:
                    self.tables.pop(table, None)
                continue
            rows = self.tables.setdefault(line["table"], {})
            key = tuple(line["key"].values())
            if line["row"] is None:
                rows.pop(key, None)
            else:
                rows[key] = line["row"]

    def held(self) -> Tables:
        """The tables that hold rows (a table whose rows all went is no table at all)."""
        return {name: rows for name, rows in self.tables.items() if rows}

    def read(self, conn: sqlite3.Connection, limit: int = 1_000_000) -> int:
        """Apply up to `limit` lines after the last cursor; how many there were."""
        lines = Feed(conn, projections.discover()).lines(self.cursor, limit)
        self.apply(lines)
        return len(lines)


def projected(conn: sqlite3.Connection) -> Tables:
    """The user-facing projection tables, keyed as the feed keys them."""
    found: Tables = {}
    for projection in projections.discover():
        table = projection.TABLE
        shapes: list[tuple[str, tuple[str, ...]]] = [(table.name, (table.key,))]
        shapes += [(c.name, (c.parent_column, "position")) for c in table.children]
        if table.history:
            shapes.append((table.history.name, table.history.primary_key))
        for name, key in shapes:
            cursor_ = conn.execute(f"SELECT * FROM {name}")
            columns = [d[0] for d in cursor_.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor_]
            if rows:
                found[name] = {tuple(row[k] for k in key): row for row in rows}
    return found


@settings(max_examples=25, deadline=None)
@given(history=histories(max_size=24), data=st.data())
def test_a_consumer_of_the_feed_holds_the_tables(
    history: list[Delivery], data: st.DataObject
) -> None:
    """Deliveries in any order and batches, rebuilds, forgets, compactions, reads: equal."""
    shuffled = data.draw(st.permutations(history), label="arrival order")
    redelivered = data.draw(st.lists(st.sampled_from(history), max_size=3), label="again")
    steps = data.draw(
        st.lists(st.sampled_from(["read", "rebuild", "forget", "compact", "nothing"]), min_size=4),
        label="between batches",
    )
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "data"
        harness = Harness(directory, synchronous="OFF")
        consumer = Consumer()
        config = Settings(data_dir=directory)
        try:
            arriving = [*shuffled, *redelivered]
            size = max(1, len(arriving) // len(steps))
            for n, step in enumerate(steps):
                harness.append(arriving[n * size : (n + 1) * size])
                harness.project()
                if step == "read":
                    consumer.read(harness.conn, data.draw(st.integers(1, 30), label="limit"))
                elif step == "rebuild":
                    # A row an earlier version of the code wrote, which the rebuild drops.
                    stray_order(harness.conn)
                    consumer.read(harness.conn)
                    rebuild(config, projections.discover(), stream=io.StringIO())
                elif step == "compact":
                    compact(harness.conn)
                elif step == "forget":
                    forget(config, projections.discover(), "c1", reason="test")
            harness.append(arriving[len(steps) * size :])
            harness.project()
            feed = Feed(harness.conn, projections.discover())
            ahead = feed.lines(consumer.cursor, 1_000_000)
            assert feed.count_after(consumer.cursor) == len(ahead)
            consumer.read(harness.conn)
            assert consumer.held() == projected(harness.conn)
            every = feed.lines(None, 1_000_000)
            assert feed.count_after(None) == len(every)
            for n in data.draw(st.lists(st.integers(0, len(every) - 1), max_size=6), "cursors"):
                assert feed.count_after(every[n]["cursor"]) == len(every) - n - 1
        finally:
            harness.close()


def test_reading_again_from_a_cursor_gives_the_same_lines(tmp_path: Path) -> None:
    """`--after` a cursor resumes exactly, also in the middle of an entity's child lines."""
    harness = Harness(tmp_path / "data")
    try:
        order = sample("order.created")
        harness.send("order.created", order)
        feed = Feed(harness.conn, projections.discover())
        every = feed.lines(None, 1000)
        children = [line for line in every if line.get("table") == "order_line_items"]
        assert children, "the sample order has line items"
        for n in range(len(every)):
            assert feed.lines(every[n]["cursor"], 1000) == every[n + 1 :]
    finally:
        harness.close()


def test_a_consumer_of_a_deleted_projections_db_reads_the_new_one_from_its_start(
    tmp_path: Path,
) -> None:
    """Cursors of a new projections.db follow the old one's: its resets are not skipped."""
    harness = Harness(tmp_path / "data")
    consumer = Consumer()
    try:
        harness.send("order.created", sample("order.created"))
        stray_order(harness.conn)  # a row the new file will not have
        consumer.read(harness.conn)
    finally:
        harness.close()
    harness = remake_projections(tmp_path / "data")
    try:
        every = Feed(harness.conn, projections.discover()).lines(None, 1000)
        assert consumer.read(harness.conn) == len(every)
        assert {line.get("reset") for line in every[:4]} == {p.NAME for p in projections.discover()}
        assert consumer.held() == projected(harness.conn)
        assert ("stray",) not in consumer.held()["orders"]
    finally:
        harness.close()


def test_a_shorter_list_reaches_the_feed_as_removed_child_rows(tmp_path: Path) -> None:
    """Removed line items come as null rows, even to a consumer that missed a change."""
    harness = Harness(tmp_path / "data")
    consumer = Consumer()
    try:
        items = [{"id": f"li{n}", "title": "t", "quantity": 1, "price": 1} for n in range(3)]
        base = {"id": "o1", "updatedAt": "2024-01-01T00:00:00Z", "lineItems": items}
        harness.send("order.created", base)
        consumer.read(harness.conn)
        assert len(consumer.tables["order_line_items"]) == 3
        two = {**base, "updatedAt": "2024-01-02T00:00:00Z", "lineItems": items[:1]}
        harness.send("order.updated", two)
        three = {**base, "updatedAt": "2024-01-03T00:00:00Z", "lineItems": items[:2]}
        harness.send("order.updated", three)
        consumer.read(harness.conn)
        assert consumer.held() == projected(harness.conn)
        assert len(consumer.tables["order_line_items"]) == 2
    finally:
        harness.close()


def test_cursors_compare_in_feed_order() -> None:
    """A child line's cursor sorts after its entity's and before the next note's."""
    assert cursor(41, 999_999) < cursor(42) < cursor(42, 1) < cursor(42, 2) < cursor(43)
    assert parse_cursor(cursor(42, 7)) == (42, 7)
    with pytest.raises(CursorError, match="not a cursor"):
        parse_cursor("42")


def _changes(data_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "changes", "--data-dir", str(data_dir), *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_changes_command_prints_json_lines_and_resumes(tmp_path: Path) -> None:
    """`changes` prints the feed, pages with --after and --limit, filters by projection.

    A bad cursor or a missing projections.db is one sentence, not a traceback.
    """
    data_dir = tmp_path / "data"
    harness = Harness(data_dir)
    try:
        harness.send("order.created", sample("order.created"))
        harness.send("customer.created", sample("customer.created"))
        expected = Feed(harness.conn, projections.discover()).lines(None, 1000)
    finally:
        harness.close()
    whole = _changes(data_dir)
    assert whole.returncode == 0, whole.stderr
    assert [json.loads(line) for line in whole.stdout.splitlines()] == expected
    first = _changes(data_dir, "--limit", "3")
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    assert lines == expected[:3]
    rest = _changes(data_dir, "--after", lines[-1]["cursor"])
    assert [json.loads(line) for line in rest.stdout.splitlines()] == expected[3:]
    orders = _changes(data_dir, "--projection", "orders")
    tables = {json.loads(line).get("table") for line in orders.stdout.splitlines()}
    assert tables == {None, "orders", "order_line_items"}  # None: the reset line
    bad = _changes(data_dir, "--after", "yesterday")
    assert bad.returncode == 2
    assert "not a cursor" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = _changes(tmp_path / "elsewhere")
    assert missing.returncode == 1
    assert "no projection tables" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_changes_follow_prints_new_lines_as_they_come(tmp_path: Path) -> None:
    """`changes --follow` goes on printing lines for rows written after it started."""
    data_dir = tmp_path / "data"
    harness = Harness(data_dir)
    follower = subprocess.Popen(
        [sys.executable, "-m", "app", "changes", "--follow", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        resets = [json.loads(follower.stdout.readline()) for _ in range(4)]
        assert {line["reset"] for line in resets} == {p.NAME for p in projections.discover()}
        harness.send("customer.created", sample("customer.created"))
        line = json.loads(follower.stdout.readline())  # blocks until the line comes
        assert (line["table"], line["row"]["id"]) == ("customers", line["key"]["id"])
    finally:
        follower.kill()
        follower.communicate()
        harness.close()
