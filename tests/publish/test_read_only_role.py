"""The read-only role of docs/publishing.md, run as written, reads everything and writes nothing.

Before and after a rebuild's reset swaps the tables and views in: the BI tools pointed at
the published schema keep working.
"""

from __future__ import annotations

import io
import re
import threading
import uuid
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import projections
from app.projection.rebuild import rebuild
from app.publish import runner
from app.publish.postgres import BUILDING_SUFFIX
from app.settings import Settings
from tests._helpers import ROOT, populate_people

if TYPE_CHECKING:
    from pathlib import Path

PAGE = ROOT / "docs" / "publishing.md"


def _role_sql() -> str:
    """The page's SQL block under its read-only role heading."""
    section = PAGE.read_text(encoding="utf-8").split("## A read-only role for BI tools", 1)[1]
    found = re.search(r"```sql\n(.*?)```", section, re.DOTALL)
    assert found, "docs/publishing.md lost its read-only role SQL"
    return found.group(1)


def _published(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> list[str]:
    """Every table and view the publisher keeps in `schema`, its own state aside."""
    return [
        str(name)
        for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s AND table_name NOT LIKE '\\_%%' ORDER BY 1",
            [schema],
        )
    ]


def _oid(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> object:
    found = conn.execute("SELECT to_regclass(%s)::oid", [f"{schema}.customers"]).fetchone()
    assert found
    return found[0]


def _reads_all(url: str, schema: str, names: list[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, "customers")))


def test_the_documented_role_reads_every_table_and_view_across_a_rebuild(
    tmp_path: Path, postgres_url: str
) -> None:
    """The SQL as written (names replaced), then a rebuild's swap: it still reads all."""
    data_dir = tmp_path / "data"
    populate_people(data_dir)
    settings = Settings(data_dir=data_dir)
    schema = f"doc_{uuid.uuid4().hex[:8]}"
    role = f"bi_{uuid.uuid4().hex[:8]}"
    owner = conninfo_to_dict(postgres_url)
    replaced = {
        "bi_reader": role,
        "mirror": str(owner["user"]),
        "shop": str(owner["dbname"]),
        "bitbybit": schema,
    }
    statements = re.sub(
        r"\b(" + "|".join(replaced) + r")\b", lambda m: replaced[m.group(1)], _role_sql()
    )
    password = re.search(r"PASSWORD '([^']*)'", statements)
    assert password
    as_reader = make_conninfo(postgres_url, user=role, password=password.group(1))
    try:
        runner.run(settings, postgres_url, schema, once=True, stop=threading.Event())
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(statements.encode())
            names = _published(conn, schema)
            before = _oid(conn, schema)
        assert {"customers", "orders", "sales_by_day", "message_funnel"} <= set(names)
        _reads_all(as_reader, schema, names)

        rebuild(settings, projections.discover(), stream=io.StringIO())
        runner.run(settings, postgres_url, schema, once=True, stop=threading.Event())
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            assert _published(conn, schema) == names
            assert _oid(conn, schema) != before, "the rebuild's reset swapped no table in"
        _reads_all(as_reader, schema, names)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            for name in (schema, schema + BUILDING_SUFFIX):
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
