"""The change feed (SPEC §12): which rows of the projection tables changed, in commit order.

Every write to the projection tables notes the rows it changed in `_changes`, in the
same transaction, so the feed can never miss a change nor invent one. A note names a
row, not its values: `changes` reads each row as it is when the feed is read. Each row
has at most one note, moved to the newest sequence number whenever the row changes
again (the log of changes is compacted as it is written): the table stays as large as
the projection tables, however long the mirror runs, and a consumer that applies every
line in order (upsert by key, delete on a null row) holds the projection tables.

A note on an entity row stands for its child rows too: the feed expands it into the
entity's line and one line per child position, up to the largest number of children
the entity has had since the last reset, so a position that no longer exists comes as
a null row. A history row (append-only) has a note of its own.

A rebuild (or the first sight of an existing table) resets a projection: its notes are
dropped, a reset note takes the next number, and every row of its new tables gets a
note after it, so a consumer that meets `{"reset": P}` empties P's tables and refills
them from the lines that follow.

Cursors are the sequence number, zero-padded to 16 digits, with `.NNNNNN` for the child
lines of an entity's note: strings that compare in the feed's order, and from which a
consumer can resume in the middle of an entity.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Collection, Iterator, Sequence

    from projections import EntityTable, Projection, Touched

DDL = """
CREATE TABLE IF NOT EXISTS _changes (
    seq INTEGER PRIMARY KEY,
    projection TEXT NOT NULL,
    tbl TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS _changes_by_row ON _changes (tbl, key);
CREATE TABLE IF NOT EXISTS _changes_sequence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
) STRICT;
INSERT OR IGNORE INTO _changes_sequence VALUES (1, 0);
"""
# A reset's note: no table, the projection's name as its key.
RESET_TABLE = ""
UPSERT_NOTE = (
    "INSERT INTO _changes (seq, projection, tbl, key, size) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (tbl, key) DO UPDATE SET seq = excluded.seq, size = max(size, excluded.size)"
)
_CURSOR = re.compile(r"([0-9]{16})(?:\.([0-9]{6}))?")
_encode_key = msgspec.json.Encoder().encode


class CursorError(ValueError):
    """A cursor this feed did not write."""


def cursor(seq: int, child: int = 0) -> str:
    """The cursor of a note's line (`child` 0) or of its `child`-th child line."""
    return f"{seq:016d}" if not child else f"{seq:016d}.{child:06d}"


def parse_cursor(text: str) -> tuple[int, int]:
    """(sequence number, child line) of a cursor; `CursorError` for anything else."""
    match = _CURSOR.fullmatch(text.strip())
    if match is None:
        raise CursorError(
            f"{text!r} is not a cursor of this feed (16 digits, optionally .NNNNNN); "
            "pass one printed by `changes`"
        )
    return int(match[1]), int(match[2] or 0)


def _take_numbers(conn: sqlite3.Connection, count: int) -> int:
    """Reserve `count` sequence numbers (inside the caller's write transaction); the first."""
    (last,) = conn.execute("SELECT last FROM _changes_sequence WHERE id = 1").fetchone()
    conn.execute("UPDATE _changes_sequence SET last = ? WHERE id = 1", (last + count,))
    return int(last) + 1


def record(conn: sqlite3.Connection, projection: Projection, touched: Touched) -> None:
    """Note the rows a write changed, inside the write's own transaction."""
    table = projection.TABLE
    history = table.history
    count = len(touched.entities) + (len(touched.history) if history else 0)
    if not count:
        return
    seq = _take_numbers(conn, count)
    name = projection.NAME
    notes: list[tuple[object, ...]] = []
    for key, size in touched.entities.items():
        notes.append((seq, name, table.name, key, size))
        seq += 1
    if history is not None:
        for row_key in touched.history:
            notes.append((seq, name, history.name, _encode_key(row_key).decode(), 0))
            seq += 1
    conn.executemany(UPSERT_NOTE, notes)


def has_reset(conn: sqlite3.Connection, projection: Projection) -> bool:
    """Whether the projection's tables are in the feed (a reset note exists)."""
    row = conn.execute(
        "SELECT 1 FROM _changes WHERE tbl = ? AND key = ?", (RESET_TABLE, projection.NAME)
    ).fetchone()
    return row is not None


def reset(conn: sqlite3.Connection, projection: Projection, schema: str = "main") -> None:
    """Put the projection's tables into the feed anew (inside the caller's transaction).

    Its notes are dropped; a reset note, then a note for every row of its tables (in
    `schema`), take the next numbers.
    """
    table = projection.TABLE
    name = projection.NAME
    conn.execute(f"DELETE FROM {schema}._changes WHERE projection = ?", (name,))
    seq = _take_numbers(conn, 1)
    conn.execute(
        f"INSERT INTO {schema}._changes VALUES (?, ?, ?, ?, 0)", (seq, name, RESET_TABLE, name)
    )
    sizes = " ".join(
        f"LEFT JOIN (SELECT {c.parent_column} AS parent, COUNT(*) AS n FROM {schema}.{c.name} "
        f"GROUP BY {c.parent_column}) AS c{i} ON c{i}.parent = t.{table.key}"
        for i, c in enumerate(table.children)
    )
    size = "max(0, " + ", ".join(f"COALESCE(c{i}.n, 0)" for i in range(len(table.children)))
    size = size + ")" if table.children else "0"
    rows = conn.execute(f"SELECT COUNT(*) FROM {schema}.{table.name}").fetchone()[0]
    first = _take_numbers(conn, rows)
    conn.execute(
        f"INSERT INTO {schema}._changes (seq, projection, tbl, key, size) "
        f"SELECT ? + ROW_NUMBER() OVER (ORDER BY t.{table.key}) - 1, ?, ?, t.{table.key}, "
        f"{size} FROM {schema}.{table.name} AS t {sizes}",
        (first, name, table.name),
    )
    if table.history is not None:
        history = table.history
        rows = conn.execute(f"SELECT COUNT(*) FROM {schema}.{history.name}").fetchone()[0]
        first = _take_numbers(conn, rows)
        keys = ", ".join(history.primary_key)
        conn.execute(
            f"INSERT INTO {schema}._changes (seq, projection, tbl, key, size) "
            f"SELECT ? + ROW_NUMBER() OVER (ORDER BY {keys}) - 1, ?, ?, json_array({keys}), 0 "
            f"FROM {schema}.{history.name}",
            (first, name, history.name),
        )


def head(conn: sqlite3.Connection) -> str | None:
    """The cursor of the newest note, None while the feed is empty."""
    row = conn.execute("SELECT MAX(seq) FROM _changes").fetchone()
    return None if row[0] is None else cursor(int(row[0]))


def lines_after(conn: sqlite3.Connection, after: str | None, projection: str | None) -> int:
    """How many notes lie after `after` (a lower bound of the lines to come)."""
    seq = 0 if after is None else parse_cursor(after)[0]
    row = conn.execute(
        "SELECT COUNT(*) FROM _changes WHERE seq > ? AND (?2 IS NULL OR projection = ?2)",
        (seq, projection),
    ).fetchone()
    return int(row[0])


@dataclasses.dataclass(frozen=True, slots=True)
class _Shape:
    """What the feed reads of one table: its name, key columns and column names."""

    name: str
    projection: str
    key: tuple[str, ...]
    columns: tuple[str, ...]


class Feed:
    """Reads the feed's lines from a projections database, in order, from a cursor."""

    def __init__(self, conn: sqlite3.Connection, projections: Sequence[Projection]) -> None:
        self._conn = conn
        self._entities: dict[str, tuple[_Shape, list[tuple[_Shape, str]]]] = {}
        self._histories: dict[str, _Shape] = {}
        for projection in projections:
            self._describe(projection.NAME, projection.TABLE)

    def _describe(self, name: str, table: EntityTable) -> None:
        entity = _Shape(table.name, name, (table.key,), (table.key, *(c for c, _ in table.columns)))
        children = [
            (
                _Shape(
                    child.name,
                    name,
                    (child.parent_column, "position"),
                    (child.parent_column, "position", *(c for c, _ in child.columns)),
                ),
                child.parent_column,
            )
            for child in table.children
        ]
        self._entities[table.name] = (entity, children)
        if table.history is not None:
            history = table.history
            self._histories[history.name] = _Shape(
                history.name, name, history.primary_key, tuple(c for c, _ in history.columns)
            )

    def lines(
        self, after: str | None, limit: int, projections: Collection[str] = ()
    ) -> list[dict[str, Any]]:
        """Up to `limit` lines after `after`, in order, read in one snapshot."""
        seq, done = (0, -1) if after is None else parse_cursor(after)
        if after is not None and not done:
            done = 0
        conn = self._conn
        found: list[dict[str, Any]] = []
        begun = not conn.in_transaction
        if begun:
            conn.execute("BEGIN")
        try:
            for note in self._notes(seq, projections):
                note_seq = note[0]
                skip = done if note_seq == seq else -1
                for line in self._expand(*note):
                    if line.pop("_child") <= skip:
                        continue
                    found.append(line)
                    if len(found) >= limit:
                        return found
            return found
        finally:
            if begun:
                conn.execute("COMMIT")

    def _notes(self, seq: int, projections: Collection[str]) -> Iterator[tuple[Any, ...]]:
        """The notes from `seq` on (itself included: it may be resumed mid-entity)."""
        names = msgspec.json.encode(sorted(projections)).decode()
        rows = self._conn.execute(
            "SELECT seq, projection, tbl, key, size FROM _changes WHERE seq >= ? "
            "AND (json_array_length(?2) = 0 OR projection IN (SELECT value FROM json_each(?2))) "
            "ORDER BY seq",
            (seq, names),
        )
        yield from rows

    def _expand(
        self, seq: int, _projection: str, table: str, key: str, size: int
    ) -> Iterator[dict[str, Any]]:
        if table == RESET_TABLE:
            yield {"reset": key, "cursor": cursor(seq), "_child": 0}
            return
        if table in self._histories:
            shape = self._histories[table]
            values = msgspec.json.decode(key)
            yield self._line(seq, 0, shape, values)
            return
        if table not in self._entities:
            return  # a table no projection of this code has (a projection removed)
        entity, children = self._entities[table]
        yield self._line(seq, 0, entity, [key])
        child_line = 1
        for shape, parent in children:
            rows = self._conn.execute(
                f"SELECT * FROM {shape.name} WHERE {parent} = ? ORDER BY position", (key,)
            ).fetchall()
            for position in range(max(size, len(rows))):
                row = rows[position] if position < len(rows) else None
                yield self._child_line(seq, child_line, shape, [key, position], row)
                child_line += 1

    def _line(self, seq: int, child: int, shape: _Shape, key: list[Any]) -> dict[str, Any]:
        where = " AND ".join(f"{column} = ?" for column in shape.key)
        row = self._conn.execute(f"SELECT * FROM {shape.name} WHERE {where}", key).fetchone()
        return self._child_line(seq, child, shape, key, row)

    @staticmethod
    def _child_line(
        seq: int, child: int, shape: _Shape, key: list[Any], row: tuple[Any, ...] | None
    ) -> dict[str, Any]:
        return {
            "cursor": cursor(seq, child),
            "projection": shape.projection,
            "table": shape.name,
            "key": dict(zip(shape.key, key, strict=True)),
            "row": None if row is None else dict(zip(shape.columns, row, strict=True)),
            "_child": child,
        }
