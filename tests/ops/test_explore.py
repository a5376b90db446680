"""`explore`: Datasette on both files answers every named query, and describes every column."""

from __future__ import annotations

import http.client
import json
import re
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from app.eventlog.rows import Delivery
from app.ops.explore_metadata import metadata
from tests._helpers import (
    ROOT,
    app_env,
    append_and_project,
    free_port,
    populate_examples,
    wait_until,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# What each named query needs asked, and the rows the populated log gives it.
PARAMETERS = {
    "line_items_of_a_customer": "customer_id=cust_abc123",
    "every_delivery_of_an_entity": "entity_id=cust_abc123",
}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    populate_examples(tmp_path)
    # One event no projection can apply, so the errors query has a row.
    bad = Delivery(
        "evt_bad",
        "order.updated",
        1,
        1,
        "2024-01-15T10:30:00.000Z",
        f"t=1,v1={'f' * 64}",
        msgspec.json.encode(["not", "an", "order"]),
        ("f" * 64,),
    )
    append_and_project(tmp_path, [bad])
    return tmp_path


def _get(port: int, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def _answers(port: int) -> bool:
    try:
        return _get(port, "/-/versions.json")[0] == 200
    except OSError:
        return False


@pytest.fixture
def explore(data_dir: Path) -> Iterator[int]:
    port = free_port()
    with (data_dir / "explore.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "explore",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
            ],
            cwd=ROOT,
            env=app_env(),
            stdout=log,
            stderr=log,
        )
        try:
            wait_until(lambda: proc.poll() is not None or _answers(port), "Datasette")
            assert proc.poll() is None, (data_dir / "explore.log").read_text()
            yield port
        finally:
            proc.terminate()
            proc.wait(20)


def _named_queries() -> list[tuple[str, str]]:
    databases: dict[str, Any] = metadata()["databases"]  # type: ignore[assignment]
    return [(db, name) for db, spec in databases.items() for name in spec["queries"]]


def test_every_named_query_answers_with_rows(explore: int) -> None:
    """Datasette lists the seven named queries, and each one's JSON is 200 with rows."""
    assert len(_named_queries()) == 7
    status, answer = _get(explore, "/projections.json")
    assert status == 200
    assert {q["name"] for q in answer["queries"]} >= {"orders_per_status", "projection_errors"}
    for database, name in _named_queries():
        query = "&".join(["_shape=array", *filter(None, [PARAMETERS.get(name)])])
        status, rows = _get(explore, f"/{database}/{name}.json?{query}")
        assert status == 200, (name, rows)
        assert rows, name


def test_every_table_and_column_is_described(data_dir: Path) -> None:
    """The metadata has a description for every table and column of both files."""
    databases: dict[str, Any] = metadata()["databases"]  # type: ignore[assignment]
    for database in ("events", "projections"):
        conn = sqlite3.connect(data_dir / f"{database}.db")
        try:
            tables = [
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
            ]
            described = databases[database]["tables"]
            assert set(described) == set(tables)
            for table in tables:
                columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                assert described[table]["description"]
                assert set(described[table]["columns"]) == columns, table
                assert all(described[table]["columns"].values()), table
        finally:
            conn.close()


def test_the_readme_queries_are_the_named_ones() -> None:
    """The README's examples are the named queries, word for word but the customer id."""
    blocks = re.findall(
        r"```sql\n-- (.*?)\n(.*?)\n```", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL
    )
    databases: dict[str, Any] = metadata()["databases"]  # type: ignore[assignment]
    named = {(q["title"], q["sql"]) for q in databases["projections"]["queries"].values()}
    for title, sql in blocks:
        assert (title, sql.replace("'cust_abc123'", ":customer_id")) in named
    assert len(blocks) == 5
