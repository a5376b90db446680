"""The PostgreSQL copy of the projection tables, kept by consuming the change feed (SPEC §12).

The tables and their values come from `tables.py`, the lines from `lines.py`; `follow.py`
runs this in a loop that retries. Decisions:
- **One transaction per batch**: the rows, the cursor (in `_publish_state`, beside the
  tables) and `pg_notify('bitbybit_changes', cursor)` commit together, so a publisher
  killed at any moment resumes from a cursor that matches the rows, and a listener is
  told only of what is committed. A line whose cursor is not larger than the stored one
  is skipped: a feed read again after a crash applies nothing twice.
- **Upsert by key, delete on null**, collapsed per batch to the last line of each key
  (applying lines in order and applying only each key's last line give the same table),
  then written as one `DELETE` of every touched key and one `COPY` of the rows.
- **Built beside, swapped whole**: on the first run, for a projection whose tables are
  missing, and after a `reset` line, the projection's tables are built in the schema
  `<schema>__building` under their final names (so their indexes and constraints keep
  their names too) and moved into the live schema in one transaction: a reader waiting
  on the swap's lock then reads the new complete table, never a partial one. The swap
  happens in the first batch that reaches the head of the feed (`Batch.at_head`): only
  then is it certain that every row the reset announced has arrived, whichever batches
  they came in. Until then the old tables stay readable and unchanged (the first run
  shows no table until all are complete). The swap waits at most 2 s for a reader's
  lock, then rolls back to be retried, so one long BI query cannot queue every other
  reader behind it. Privileges granted on the old tables are granted again on the new
  ones (a read-only BI role keeps working); other objects that depend on them, such as
  a user's own views, are dropped with them (`CASCADE`, named in a warning), and this
  module's views (`Views`, SPEC §11) are created again in the same transaction.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Self

import psycopg
import structlog
from psycopg import sql

from app.publish.lines import FeedLine, Reset, RowChange
from app.publish.tables import (
    PublishedTable,
    UnreadableError,
    conversion_plan,
    converted_row,
    identifiers,
    published_tables,
    table_ddl,
)
from app.publish.url import conninfo

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from psycopg.rows import TupleRow

    from projections import Projection


log = structlog.get_logger("app.publish.postgres")

CHANNEL = "bitbybit_changes"
DEFAULT_SCHEMA = "bitbybit"
STATE_TABLE = "_publish_state"
BUILDING_SUFFIX = "__building"
SWAP_LOCK_TIMEOUT_SECONDS = 2.0
# PostgreSQL truncates longer identifiers silently, which could make two schemas one.
_MAX_IDENTIFIER = 63


@dataclasses.dataclass(frozen=True, slots=True)
class Applied:
    """What one batch did."""

    cursor: str | None
    lines: int
    skipped: int
    swapped: tuple[str, ...]
    # `table.column` -> values written other than sent (NULL, JSON string, U+FFFD).
    unreadable: Mapping[str, int]
    # why -> lines not applied (unknown projection or table, a key column unusable).
    ignored: Mapping[str, int]


@dataclasses.dataclass(slots=True)
class _Pending:
    """One target table's changes in this batch: the last row of each key (None: delete)."""

    rows: dict[tuple[object, ...], tuple[object, ...] | None] = dataclasses.field(
        default_factory=dict
    )


class Publisher:
    """Keeps one PostgreSQL schema equal to the projection tables, one batch at a time.

    Holds one connection in autocommit mode: every batch is an explicit transaction, and
    `vacuum` (which no transaction may contain) runs between them.
    """

    def __init__(
        self,
        conn: psycopg.Connection[TupleRow],
        projections: Sequence[Projection],
        *,
        schema: str = DEFAULT_SCHEMA,
        views: Views | None = None,
    ) -> None:
        if not schema or len((schema + BUILDING_SUFFIX).encode()) > _MAX_IDENTIFIER:
            limit = _MAX_IDENTIFIER - len(BUILDING_SUFFIX)
            raise ValueError(f"the schema name must be 1 to {limit} bytes long")
        self.conn = conn
        self.schema = schema
        self.building_schema = schema + BUILDING_SUFFIX
        self.views = views or Views()
        self.swap_lock_timeout = SWAP_LOCK_TIMEOUT_SECONDS
        self._views_digest = self.views.digest()
        self._stored_views: str | None = None
        self.tables = {t.name: t for t in published_tables(projections)}
        self._plans = {name: conversion_plan(table) for name, table in self.tables.items()}
        self.projections = tuple(p.NAME for p in projections)
        self.cursor: str | None = None
        # How many completed forgets the published tables were last rewritten for.
        self.forgets = 0
        self.building: set[str] = set()
        self._live_columns: dict[str, tuple[str, ...]] = {}
        self._fresh: set[tuple[str, str]] = set()
        self._lock_key = f"bitbybit-publish:{schema}"
        self._bootstrap()

    @classmethod
    def connect(
        cls,
        url: str,
        projections: Sequence[Projection],
        *,
        schema: str = DEFAULT_SCHEMA,
        views: Views | None = None,
        connect_timeout: int = 10,
    ) -> Self:
        """A publisher on a new connection to `url` (which is never logged)."""
        conninfo(url)
        conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=connect_timeout,
            application_name="bitbybit-publish",
        )
        try:
            return cls(conn, projections, schema=schema, views=views)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- set-up --

    def _lock(self) -> None:
        # One publisher per schema at a time: a second one waits instead of interleaving.
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [self._lock_key])

    def _bootstrap(self) -> None:
        with self.conn.transaction():
            self._lock()
            for name in (self.schema, self.building_schema):
                self.conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(name))
                )
            self.conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
                    " cursor text,"
                    " building text[] NOT NULL DEFAULT '{{}}',"
                    " views text,"
                    " committed_at timestamptz NOT NULL DEFAULT now())"
                ).format(sql.Identifier(self.schema, STATE_TABLE))
            )
            self.conn.execute(  # a schema an earlier version published lacks it
                sql.SQL(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS forgets bigint NOT NULL DEFAULT 0"
                ).format(sql.Identifier(self.schema, STATE_TABLE))
            )
            self.conn.execute(
                sql.SQL("INSERT INTO {} DEFAULT VALUES ON CONFLICT DO NOTHING").format(
                    sql.Identifier(self.schema, STATE_TABLE)
                )
            )
            self._read_state()
            self._read_live_columns()
            # First run, or a projection new since the last: its tables are built beside.
            # A projection missing only some tables (one added by a new version) is not:
            # its other tables would be rebuilt from the lines after now alone. Its
            # rebuild, which that new version requires, resets it whole.
            missing = {
                projection
                for projection in self.projections
                if projection not in self.building
                and not any(t.name in self._live_columns for t in self._tables_of(projection))
            }
            for projection in sorted(missing):
                self._start_building(projection)
            if missing:
                self._write_state()
            if (
                not self.building
                and self.views.selects
                and self._views_digest != self._stored_views
            ):
                # New or changed views reach the published schema without waiting for a
                # swap; unchanged ones are left alone (dropping them would drop a user's
                # views built on them).
                self._create_views()

    def _read_state(self) -> None:
        row = self.conn.execute(
            sql.SQL("SELECT cursor, building, views, forgets FROM {}").format(
                sql.Identifier(self.schema, STATE_TABLE)
            )
        ).fetchone()
        if row is None:  # pragma: no cover - inserted by _bootstrap
            raise RuntimeError("publish state row missing")
        self.cursor, building, self._stored_views, self.forgets = row
        self.building = set(building)

    def _create_views(self, grants: Mapping[str, Sequence[Grant]] | None = None) -> None:
        create_views(self.conn, self.schema, self.views, grants)
        self._stored_views = self._views_digest
        self.conn.execute(
            sql.SQL("UPDATE {} SET views = %s").format(sql.Identifier(self.schema, STATE_TABLE)),
            [self._views_digest],
        )

    def _write_state(self) -> None:
        self.conn.execute(
            sql.SQL("UPDATE {} SET cursor = %s, building = %s, committed_at = now()").format(
                sql.Identifier(self.schema, STATE_TABLE)
            ),
            [self.cursor, sorted(self.building)],
        )

    def _read_live_columns(self) -> None:
        rows = self.conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = %s ORDER BY table_name, ordinal_position",
            [self.schema],
        ).fetchall()
        columns: dict[str, list[str]] = collections.defaultdict(list)
        for table, column in rows:
            columns[table].append(column)
        self._live_columns = {t: tuple(c) for t, c in columns.items()}

    def _start_building(self, projection: str) -> None:
        for table in self._tables_of(projection):
            self.conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(
                    sql.Identifier(self.building_schema, table.name)
                )
            )
            for statement in table_ddl(table, self.building_schema):
                self.conn.execute(statement)
            self._fresh.add((self.building_schema, table.name))
        self.building.add(projection)

    def _tables_of(self, projection: str) -> list[PublishedTable]:
        return [t for t in self.tables.values() if t.projection == projection]

    # -- batches --

    def apply(self, lines: Iterable[FeedLine], *, at_head: bool) -> Applied:
        """Apply feed lines in one transaction with their cursor, then notify listeners.

        `at_head` says no line follows these yet: tables being built beside the live
        ones are complete, and are swapped in by this same transaction. It has no
        default because a wrong True would show a half-built table. The batch's rows
        are held in memory until its COPY: the caller bounds its size (a few thousand
        lines keeps a rebuild's bulk load fast and small).
        """
        unreadable: collections.Counter[str] = collections.Counter()
        ignored: collections.Counter[str] = collections.Counter()
        count = skipped = 0
        swapped: tuple[str, ...] = ()
        before = self.cursor
        try:
            with self.conn.transaction():
                self._lock()
                self._read_state()
                before = self.cursor
                self._fresh = set()
                pending: dict[tuple[str, str], _Pending] = {}
                count, skipped = self._gather(lines, pending, unreadable, ignored)
                self._flush(pending)
                if at_head and self.building:
                    swapped = self._swap()
                if self.cursor != before or swapped:
                    self._write_state()
                if (self.cursor != before or swapped) and self.cursor is not None:
                    self.conn.execute("SELECT pg_notify(%s, %s)", [CHANNEL, self.cursor])
        except BaseException:
            # The transaction rolled back: so does what this object believes.
            with contextlib.suppress(psycopg.Error):
                self._resync()
            raise
        if unreadable:
            log.warning(
                "publish_values_unreadable",
                columns=dict(sorted(unreadable.items())),
                note="written as NULL, as a JSON string, or with U+FFFD; SQLite keeps them",
            )
        if ignored:
            # A newer feed than this code knows (a projection or table added since).
            log.warning("publish_lines_ignored", reasons=dict(sorted(ignored.items())))
        if swapped:
            log.info("publish_tables_swapped", projections=list(swapped), schema=self.schema)
        return Applied(self.cursor, count, skipped, swapped, dict(unreadable), dict(ignored))

    def _gather(
        self,
        lines: Iterable[FeedLine],
        pending: dict[tuple[str, str], _Pending],
        unreadable: collections.Counter[str],
        ignored: collections.Counter[str],
    ) -> tuple[int, int]:
        count = skipped = 0
        for line in lines:
            count += 1
            if self.cursor is not None and line.cursor <= self.cursor:
                skipped += 1
                continue
            if isinstance(line, Reset):
                self._reset(line.projection, pending, ignored)
            else:
                self._collect(line, pending, unreadable, ignored)
            self.cursor = line.cursor
        return count, skipped

    def _resync(self) -> None:
        if self.conn.closed:
            return
        with self.conn.transaction():
            self._read_state()
            self._read_live_columns()

    def _reset(
        self,
        projection: str,
        pending: dict[tuple[str, str], _Pending],
        ignored: collections.Counter[str],
    ) -> None:
        if projection not in self.projections:
            ignored[f"reset of unknown projection {projection}"] += 1
            return
        names = {t.name for t in self._tables_of(projection)}
        # Changes before the reset still reach the live tables, which stay readable until
        # the swap; what was gathered for tables being built is superseded by the reset.
        self._flush({k: v for k, v in pending.items() if k[1] in names and k[0] == self.schema})
        for key in [k for k in pending if k[1] in names]:
            del pending[key]
        self._start_building(projection)

    def _collect(
        self,
        line: RowChange,
        pending: dict[tuple[str, str], _Pending],
        unreadable: collections.Counter[str],
        ignored: collections.Counter[str],
    ) -> None:
        table = self.tables.get(line.table)
        if table is None or table.projection != line.projection:
            ignored[f"unknown table {line.projection}.{line.table}"] += 1
            return
        # The hot loop of a bulk load: converters looked up once per table, not per value.
        key_plan, row_plan = self._plans[table.name]
        key: list[object] = []
        for name, converter in key_plan:
            raw = line.key.get(name, line.row.get(name) if line.row else None)
            try:
                value = None if raw is None else converter(raw)
            except UnreadableError:
                value = None
            if value is None:
                ignored[f"unusable key {table.name}.{name}"] += 1
                return
            key.append(value)
        row = (
            None
            if line.row is None
            else converted_row(table.name, row_plan, line.row, key, unreadable)
        )
        schema = self.building_schema if table.projection in self.building else self.schema
        if schema == self.schema and table.name not in self._live_columns:
            ignored[f"{table.name} not published until {table.projection} is reset"] += 1
            return
        pending.setdefault((schema, table.name), _Pending()).rows[tuple(key)] = row

    def _flush(self, pending: Mapping[tuple[str, str], _Pending]) -> None:
        for (schema, name), changes in pending.items():
            if changes.rows:
                self._write(schema, self.tables[name], changes)

    def _write(self, schema: str, table: PublishedTable, changes: _Pending) -> None:
        target = sql.Identifier(schema, table.name)
        if (schema, table.name) not in self._fresh:
            keys = list(zip(*changes.rows, strict=True))
            self.conn.execute(
                sql.SQL("DELETE FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))").format(
                    target,
                    identifiers(table.primary_key),
                    sql.SQL(", ").join(
                        sql.SQL("{}::{}[]").format(
                            sql.Placeholder(), sql.SQL(table.column(n).pg_type)
                        )
                        for n in table.primary_key
                    ),
                ),
                [list(k) for k in keys],
            )
        names = [c.name for c in table.columns]
        if schema == self.schema:
            # Live tables keep the shape they were built with until a reset rebuilds
            # them; a column they lack waits for that rebuild.
            live = set(self._live_columns.get(table.name, names))
            indexes = [i for i, n in enumerate(names) if n in live]
        else:
            indexes = list(range(len(names)))
        self._fresh.discard((schema, table.name))
        rows = [r for r in changes.rows.values() if r is not None]
        if not rows:
            return
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            target, identifiers(names[i] for i in indexes)
        )
        with self.conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([row[i] for i in indexes])

    def _swap(self) -> tuple[str, ...]:
        projections = tuple(sorted(self.building))
        # DROP waits for every reader of the old table, and every reader that comes after
        # waits behind it: a BI tool's long query would stall them all. Give up soon
        # instead (LockNotAvailable, an OperationalError: the batch rolls back and is
        # retried with backoff), so readers wait at most this long.
        self.conn.execute(
            "SELECT set_config('lock_timeout', %s, true)",
            [f"{int(self.swap_lock_timeout * 1000)}ms"],
        )
        # Dropping the old tables drops the views on them: their grants are kept too.
        view_grants = {
            name: grants_on(self.conn, sql.Identifier(self.schema, name))
            for name in self.views.selects
        }
        for projection in projections:
            for table in self._tables_of(projection):
                live = sql.Identifier(self.schema, table.name)
                grants = grants_on(self.conn, live)
                self._warn_of_dependents(live)
                self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(live))
                self.conn.execute(
                    sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                        sql.Identifier(self.building_schema, table.name),
                        sql.Identifier(self.schema),
                    )
                )
                grant(self.conn, live, grants)
        self.building.clear()
        self._read_live_columns()
        if self.views.selects:
            self._create_views(view_grants)
        return projections

    def _warn_of_dependents(self, table: sql.Identifier) -> None:
        # Views someone else built on a published table go with it; say which, since
        # nothing else will (this module's own views are created again).
        found = self.conn.execute(
            "SELECT DISTINCT v.oid::regclass::text FROM pg_depend d"
            " JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class"
            " WHERE d.refobjid = to_regclass(%s) AND v.oid <> d.refobjid",
            [table.as_string(self.conn)],
        ).fetchall()
        ours = {
            sql.Identifier(self.schema, name).as_string(self.conn) for name in self.views.selects
        }
        ours |= {f"{self.schema}.{name}" for name in self.views.selects}
        theirs = sorted(name for (name,) in found if name not in ours)
        if theirs:
            log.warning(
                "publish_dropped_dependent_views",
                table=table.as_string(self.conn),
                views=theirs,
                note="a rebuild replaced the table; create them again, or build them on ours",
            )

    def vacuum(self, tables: Iterable[str], *, full: bool = False) -> None:
        """VACUUM (ANALYZE) the named live tables, e.g. after a `forget` reached them.

        Plain VACUUM makes the space of the old row versions reusable, but their bytes
        may stay in the table's files until overwritten; `full` rewrites the tables
        (VACUUM FULL), which leaves none of them, at the price of locking each table
        against readers while it runs. Neither reaches PostgreSQL's WAL archive or
        backups. Runs outside any transaction, as VACUUM must.
        """
        option = sql.SQL("FULL, ANALYZE" if full else "ANALYZE")
        for name in tables:
            if name in self.tables:
                self.conn.execute(
                    sql.SQL("VACUUM ({}) {}").format(option, sql.Identifier(self.schema, name))
                )

    def rewrite_after_forgets(self, tables: Iterable[str], forgets: int) -> bool:
        """Rewrite `tables` (VACUUM FULL) unless done already for this many forgets.

        The count is kept in PostgreSQL and recorded only once the rewrite is done, so
        a publisher that restarts, runs `--once` from cron, or failed halfway, rewrites
        the tables after a forget all the same, and only once. Whether a rewrite ran.
        """
        if forgets == self.forgets:
            return False
        self.vacuum(tables, full=True)
        self.conn.execute(
            sql.SQL("UPDATE {} SET forgets = %s").format(sql.Identifier(self.schema, STATE_TABLE)),
            [forgets],
        )
        self.forgets = forgets
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class Views:
    """The views of SPEC §11 as the published schema holds them.

    The hook for the dashboard's views, written once in SQL that SQLite and PostgreSQL
    both read: `selects` maps each view's name to its query (the text after `AS`, naming
    tables unqualified); `functions` are statements run first in the same schema, for
    what the dialects do not share (the dashboard's `POSTGRESQL_FUNCTIONS`, a
    `strftime` for PostgreSQL). The wiring passes, from the projections,
    `Views({v.name: v.sql for p in projections for v in p.TABLE.views},
    (projections.POSTGRESQL_FUNCTIONS,))`.
    """

    selects: Mapping[str, str] = dataclasses.field(default_factory=dict)
    functions: Sequence[str] = ()

    def digest(self) -> str:
        """Changes when any view or function changes, so a new text is created at start."""
        text = json.dumps([sorted(self.selects.items()), list(self.functions)])
        return hashlib.sha256(text.encode()).hexdigest()


def create_views(
    conn: psycopg.Connection[TupleRow],
    schema: str,
    views: Views,
    grants: Mapping[str, Sequence[Grant]] | None = None,
) -> None:
    """Create (again) the functions and views in `schema`, inside the caller's transaction.

    The publisher calls it in every swap's transaction (dropping the old tables dropped
    the views on them: `grants` are what was granted on them then), and at start when the
    views differ from those it last created. Either way a read-only role keeps what it was
    granted on each view. A view binds the functions its creator's search_path finds, so
    both are created with the schema alone on the path.
    """
    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
    for statement in views.functions:
        conn.execute(sql.SQL(statement))
    for name, select in views.selects.items():
        view = sql.Identifier(schema, name)
        kept = [*(grants or {}).get(name, ()), *grants_on(conn, view)]
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {} CASCADE").format(view))
        conn.execute(sql.SQL("CREATE VIEW {} AS {}").format(view, sql.SQL(select)))
        grant(conn, view, kept)


Grant = tuple[int, str, bool]
"""A privilege on a relation: (grantee's oid, 0 for PUBLIC; privilege; with grant option)."""


def grants_on(conn: psycopg.Connection[TupleRow], relation: sql.Identifier) -> list[Grant]:
    """What was granted on `relation` to others than its owner; none when it is missing."""
    return [
        (grantee, privilege, grantable)
        for grantee, privilege, grantable in conn.execute(
            "SELECT a.grantee, a.privilege_type, a.is_grantable"
            " FROM pg_class c, aclexplode(c.relacl) a"
            " WHERE c.oid = to_regclass(%s) AND a.grantee <> c.relowner",
            [relation.as_string(conn)],
        )
    ]


def grant(
    conn: psycopg.Connection[TupleRow], relation: sql.Identifier, grants: Iterable[Grant]
) -> None:
    """Grant `grants` on `relation` again (a role dropped meanwhile is skipped)."""
    for grantee, privilege, grantable in grants:
        role: sql.Composable = sql.SQL("PUBLIC")
        if grantee:
            row = conn.execute("SELECT pg_get_userbyid(%s)", [grantee]).fetchone()
            if row is None:  # pragma: no cover - the role was dropped in between
                continue
            role = sql.Identifier(row[0])
        conn.execute(
            sql.SQL("GRANT {} ON {} TO {}{}").format(
                sql.SQL(privilege),
                relation,
                role,
                sql.SQL(" WITH GRANT OPTION" if grantable else ""),
            )
        )
