"""The publish benchmark's baseline: the leanest copy of the projection tables, as a command.

`python bench/lean_copy.py PROJECTIONS_DB URL SCHEMA`

Creates SCHEMA and, in one transaction, for every user-facing table of projections.db
(those whose names do not start with `_`: no feed, no register state, no bookkeeping) a
table of `text` columns with the same names (no keys, no indexes, no views), filled by
one `COPY` of every row as sqlite3 reads it (no type conversion of its own). It stands for
the dumbest copy a user could write: the first `publish` of the same tables is compared
with it.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import psycopg
from psycopg import sql

TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' "
    "ORDER BY name"
)


def copy(projections: Path, url: str, schema: str) -> int:
    """Copy the user-facing tables of `projections` into a new `schema`; return the rows."""
    source = sqlite3.connect(f"file:{projections}?mode=ro", uri=True)
    rows = 0
    with psycopg.connect(url) as target, target.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for (table,) in source.execute(TABLES).fetchall():
            columns = [r[1] for r in source.execute(f'PRAGMA table_info("{table}")')]
            name = sql.Identifier(schema, table)
            cursor.execute(
                sql.SQL("CREATE TABLE {} ({})").format(
                    name,
                    sql.SQL(", ").join(
                        sql.SQL("{} text").format(sql.Identifier(c)) for c in columns
                    ),
                )
            )
            with cursor.copy(sql.SQL("COPY {} FROM STDIN").format(name)) as out:
                for row in source.execute(f'SELECT * FROM "{table}"'):
                    out.write_row(row)
                    rows += 1
    source.close()
    return rows


if __name__ == "__main__":
    print(f"{copy(Path(sys.argv[1]), sys.argv[2], sys.argv[3])} rows")
