"""The change feed (SPEC §12): which rows of the projection tables changed, in commit order.

Every write to the projection tables notes the entities it changed in `_changes`, in the
same transaction, so the feed can never miss a change nor invent one. A note names an
entity, not its values: `changes` reads each row as it is when the feed is read, so a
consumer that applies every line in order (upsert by key, delete on a null row) holds
the projection tables. Notes are appended (the cheapest write SQLite has: the newest
page of one B-tree), and compacted now and then (`compact_if_due`): an entity's older
notes go, its newest stays, carrying the largest child count of them all. Rewriting one
note per entity in place instead cost the live projector twice as much.

A note on an entity row stands for its child rows and its history too: the feed expands
it into the entity's line, one line per child position, up to the largest number of
children the entity has had since the last reset (so a position that no longer exists
comes as a null row), and one line per history row (append-only: a message's statuses).
One note per entity, not per row, is what keeps the feed's cost to the live projector
small.

A rebuild (or the first sight of an existing table) resets a projection: its notes are
dropped, a reset note takes the next number, and every row of its new tables gets a
note after it, so a consumer that meets `{"reset": P}` empties P's tables and refills
them from the lines that follow.

Cursors are the sequence number, zero-padded to 16 digits, with `.NNNNNN` for the child
lines of an entity's note: strings that compare in the feed's order, and from which a
consumer can resume in the middle of an entity. A new projections.db (the first, or one
made after the last was deleted or moved aside as damaged) numbers from the clock's
microseconds, not from 1: every cursor of an earlier file is below every cursor of the
new one, so a consumer resuming from its last cursor reads the new feed from its start,
its resets first, instead of skipping lines whose numbers it has seen before. (Notes are
taken far slower than one a microsecond; 16 digits of microseconds last until 2286.)
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import TYPE_CHECKING, Any

import msgspec

from app.sqlite import write_transaction

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
CREATE TABLE IF NOT EXISTS _changes_sequence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL,
    notes INTEGER NOT NULL,
    compacted INTEGER NOT NULL
) STRICT;
"""


def create(conn: sqlite3.Connection) -> None:
    """The feed's tables, if missing; a new feed's numbers start at the clock's µs."""
    conn.executescript(DDL)
    start = time.time_ns() // 1000
    conn.execute("INSERT OR IGNORE INTO _changes_sequence VALUES (1, ?, 0, 0)", (start,))


# A reset's note: no table, the projection's name as its key.
RESET_TABLE = ""
INSERT_NOTE = "INSERT INTO _changes (seq, projection, tbl, key, size) VALUES (?, ?, ?, ?, ?)"
# Compaction is due when the notes are this many times what the last one left, plus a
# floor, so its cost (a sort of the notes) is spread over at least as many new notes.
COMPACT_GROWTH = 2
COMPACT_FLOOR = 100_000
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


def _take_numbers(conn: sqlite3.Connection, count: int, schema: str = "main") -> int:
    """Reserve `count` sequence numbers (inside the caller's write transaction); the first."""
    (last,) = conn.execute(f"SELECT last FROM {schema}._changes_sequence").fetchone()
    conn.execute(
        f"UPDATE {schema}._changes_sequence SET last = ?, notes = notes + ?", (last + count, count)
    )
    return int(last) + 1


def record(conn: sqlite3.Connection, projection: Projection, touched: Touched) -> None:
    """Note the entities a write changed, inside the write's own transaction."""
    entities = touched.entities
    if not entities:
        return
    seq = _take_numbers(conn, len(entities))
    name, table = projection.NAME, projection.TABLE.name
    conn.executemany(
        INSERT_NOTE,
        [(seq + n, name, table, key, size) for n, (key, size) in enumerate(entities.items())],
    )


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
    seq = _take_numbers(conn, 1, schema)
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
    first = _take_numbers(conn, rows, schema)
    conn.execute(
        f"INSERT INTO {schema}._changes (seq, projection, tbl, key, size) "
        f"SELECT ? + ROW_NUMBER() OVER (ORDER BY t.{table.key}) - 1, ?, ?, t.{table.key}, "
        f"{size} FROM {schema}.{table.name} AS t {sizes}",
        (first, name, table.name),
    )


def compact_if_due(conn: sqlite3.Connection) -> bool:
    """Compact the notes if enough have gathered since the last time; whether it did."""
    notes, compacted = conn.execute("SELECT notes, compacted FROM _changes_sequence").fetchone()
    if notes < COMPACT_GROWTH * compacted + COMPACT_FLOOR:
        return False
    compact(conn)
    return True


def compact(conn: sqlite3.Connection) -> None:
    """Drop every note but each entity's newest, in a write transaction of its own.

    The newest note takes the largest child count of the entity's notes, so a consumer
    that had read none of them still learns of every position a shorter list removed.
    """
    with write_transaction(conn):
        conn.execute(
            "CREATE TEMP TABLE _newest AS SELECT MAX(seq) AS seq, MAX(size) AS size "
            "FROM _changes GROUP BY tbl, key"
        )
        conn.execute("DELETE FROM _changes WHERE seq NOT IN (SELECT seq FROM temp._newest)")
        conn.execute(
            "UPDATE _changes SET size = n.size FROM temp._newest AS n "
            "WHERE n.seq = _changes.seq AND n.size != _changes.size"
        )
        conn.execute("DROP TABLE temp._newest")
        (left,) = conn.execute("SELECT COUNT(*) FROM _changes").fetchone()
        conn.execute("UPDATE _changes_sequence SET notes = ?, compacted = ?", (left, left))


def head(conn: sqlite3.Connection) -> str | None:
    """The cursor of the newest note, None while the feed is empty."""
    row = conn.execute("SELECT MAX(seq) FROM _changes").fetchone()
    return None if row[0] is None else cursor(int(row[0]))


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
        if table.history is not None:
            history = table.history
            shape = _Shape(
                history.name, name, history.primary_key, tuple(c for c, _ in history.columns)
            )
            children.append((shape, history.columns[0][0]))
        self._entities[table.name] = (entity, children)

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

    def count_after(self, after: str | None) -> int:
        """How many lines `lines` would give after `after`, counted in SQL, none read.

        Each note is its entity's line, one per child position (the larger of its
        recorded size and the rows there now) and one per history row, as `_expand`
        makes them; a cursor inside a note leaves that note's later lines to count.
        """
        seq, done = (0, 0) if after is None else parse_cursor(after)
        count = "SELECT COUNT(*) FROM _changes WHERE seq > ? AND tbl = ?"
        total = int(self._conn.execute(count, (seq, RESET_TABLE)).fetchone()[0])
        for table, (_entity, children) in self._entities.items():
            lines = self._lines_sql(children)
            query = f"SELECT COALESCE(SUM({lines}), 0) FROM _changes AS n WHERE n.tbl = ? AND "
            total += int(self._conn.execute(query + "n.seq > ?", (table, seq)).fetchone()[0])
            if after is not None:
                (inside,) = self._conn.execute(query + "n.seq = ?", (table, seq)).fetchone()
                total += max(0, int(inside or 0) - 1 - done)
        return total

    @staticmethod
    def _lines_sql(children: list[tuple[_Shape, str]]) -> str:
        """The number of lines of a note `n` of an entity with these children, in SQL."""
        terms = ["1"]
        for shape, parent in children:
            rows = f"(SELECT COUNT(*) FROM {shape.name} AS c WHERE c.{parent} = n.key)"
            terms.append(rows if shape.key[1:] != ("position",) else f"max(n.size, {rows})")
        return " + ".join(terms)

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
        if table not in self._entities:
            return  # a table no projection of this code has (a projection removed)
        entity, children = self._entities[table]
        yield self._line(seq, 0, entity, [key])
        child_line = 1
        for shape, parent in children:
            order = ", ".join(shape.key[1:])
            rows = self._conn.execute(
                f"SELECT * FROM {shape.name} WHERE {parent} = ? ORDER BY {order}", (key,)
            ).fetchall()
            if shape.key[1:] != ("position",):
                # History rows: append-only, each keyed by its own columns.
                for row in rows:
                    values = [row[shape.columns.index(k)] for k in shape.key]
                    yield self._child_line(seq, child_line, shape, values, row)
                    child_line += 1
                continue
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
