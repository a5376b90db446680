"""The projection tables of a SQLite file, published into PostgreSQL as the publisher types them.

SPEC section 12: `NUMERIC` amounts, `timestamptz` for the `*_at` columns, `jsonb` for the
JSON text columns; the views in the same text as in SQLite, after
`projections.POSTGRESQL_FUNCTIONS`. Each use gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from projections import POSTGRESQL_FUNCTIONS, discover

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator

    import psycopg

_JSON_COLUMNS = {"tags", "media", "options", "types"}


def _postgres_type(column: str, kind: str) -> str:
    if column.endswith("_at"):
        return "timestamptz"
    if column in _JSON_COLUMNS:
        return "jsonb"
    return {"TEXT": "text", "NUMERIC": "numeric", "INTEGER": "bigint"}[kind.split(maxsplit=1)[0]]


def _copy_tables(source: sqlite3.Connection, target: psycopg.Connection[Any]) -> None:
    for projection in discover():
        for table in projection.TABLE.table_names:
            if table == projection.TABLE.state_table:
                continue
            columns = [(r[1], r[2]) for r in source.execute(f"PRAGMA table_info({table})")]
            typed = ", ".join(f"{name} {_postgres_type(name, kind)}" for name, kind in columns)
            target.execute(f"CREATE TABLE {table} ({typed})")
            marks = ", ".join(["%s"] * len(columns))
            rows = source.execute(f"SELECT * FROM {table}").fetchall()
            with target.cursor() as cursor:
                cursor.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


@contextlib.contextmanager
def published(source: sqlite3.Connection, postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose search path is a new schema holding `source`'s tables and views.

    Its time zone is Jakarta's, not UTC: the views must not depend on the reader's.
    """
    psycopg = pytest.importorskip("psycopg")
    schema = f"published_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            conn.execute(f"SET search_path TO {schema}")
            conn.execute("SET TIME ZONE 'Asia/Jakarta'")
            _copy_tables(source, conn)
            conn.execute(POSTGRESQL_FUNCTIONS)
            for projection in discover():
                for view in projection.TABLE.views:
                    conn.execute(view.ddl())
            yield conn
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
