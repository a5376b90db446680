"""How a projection describes its tables and views; the DDL is generated from that one description.

The description is also what people read: each table and column says what it holds,
for Datasette (`explore`) and for anyone reading the schema, so a column is added and
explained in one place.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping

Descriptions = dict[str, tuple[str, dict[str, str]]]

# Phrases the projections' column descriptions share.
SENT_AS_IS = "as BitByBit sent it (ISO 8601 text, offset included)"
JSON_LIST = "JSON array text, replaced whole by the newest event that carried it"
POSITION_IN_LIST = "0-based place in the payload's list"
DELETED = (
    "when it was deleted (the earliest delete's event timestamp); NULL while it exists. "
    "Deletion is final: the row stays with its data"
)


def address_descriptions(prefix: str) -> dict[str, str]:
    """The columns of a flattened postal address, `prefix` before each name."""
    return {
        f"{prefix}first_name": "first name on the address (personal data)",
        f"{prefix}last_name": "last name on the address (personal data)",
        f"{prefix}address1": "street address, first line (personal data)",
        f"{prefix}address2": "street address, second line (personal data)",
        f"{prefix}city": "city",
        f"{prefix}province": "province or state",
        f"{prefix}country": "country",
        f"{prefix}zip": "postal code",
    }


# The one place where the SQL of the views is not plain SQL that both dialects know.
# SQLite keeps instants as the ISO 8601 text the sender sent, offsets included, and its
# built-in `strftime(format, text)` reads that text as an instant and writes it in UTC;
# PostgreSQL keeps them as timestamptz and has no `strftime`. So the views call
# `strftime` with exactly the formats below, and a PostgreSQL schema that publishes the
# views defines this function first, in the same schema (a view binds the function
# its creator's search_path finds). Any other format gives NULL there: a view that needs
# one adds it here, and the test over both dialects checks it.
POSTGRESQL_FUNCTIONS = """\
CREATE OR REPLACE FUNCTION strftime(format text, instant timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(instant AT TIME ZONE 'UTC', CASE format
        WHEN '%Y-%m-%d' THEN 'YYYY-MM-DD'
        WHEN '%Y-%m-%dT%H:%M:%fZ' THEN 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'
    END)
$$"""
UTC_DAY = "'%Y-%m-%d'"
UTC_INSTANT = "'%Y-%m-%dT%H:%M:%fZ'"


class Event(Protocol):
    """What a projection reads of one logged delivery."""

    @property
    def position(self) -> int: ...
    @property
    def webhook_id(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def event_timestamp(self) -> int | None: ...
    @property
    def signed_at(self) -> int: ...
    @property
    def payload(self) -> bytes: ...


@dataclasses.dataclass(frozen=True, slots=True)
class ChildTable:
    """Rows derived from one list register, replaced whole when the list is."""

    name: str
    parent_column: str
    register: str
    columns: tuple[tuple[str, str], ...]
    description: str = ""
    column_descriptions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Columns whose TEXT holds JSON: a copy elsewhere (PostgreSQL's jsonb) can type them.
    json_columns: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryTable:
    """Append-only rows, one per event, kept once per primary key."""

    name: str
    columns: tuple[tuple[str, str], ...]
    primary_key: tuple[str, ...]
    description: str = ""
    column_descriptions: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class View:
    """A view over projection tables: the answer to a question merchants ask often.

    Part of its projection's schema, created and replaced with its tables, so a change
    to one is a `VERSION` change. `sql` is a SELECT that SQLite and PostgreSQL both
    accept (the publisher creates the same view in PostgreSQL; see
    `POSTGRESQL_FUNCTIONS` for the one function the two do not share).
    """

    name: str
    sql: str
    description: str
    column_descriptions: Mapping[str, str]
    # The column Datasette sorts by (descending) when it shows the view.
    sort_desc: str | None = None

    def ddl(self) -> str:
        """The CREATE VIEW statement, the same text in both dialects."""
        return f"CREATE VIEW {self.name} AS\n{self.sql}"


@dataclasses.dataclass(frozen=True, slots=True)
class ForeignKey:
    """A column that names a row of another table: declared, never enforced.

    Declared for Datasette's links and BI tools' joins; SQLite enforces nothing unless a
    connection turns `PRAGMA foreign_keys` on, which none of the product's does: rows
    arrive in any order, and an order may name a customer the mirror has not seen yet.
    """

    column: str
    table: str
    key: str

    def clause(self) -> str:
        """The table constraint that declares it."""
        return f"FOREIGN KEY ({self.column}) REFERENCES {self.table} ({self.key})"


@dataclasses.dataclass(frozen=True, slots=True)
class EntityTable:
    """A user-facing table of entities, its children and its hidden register state."""

    name: str
    key: str
    columns: tuple[tuple[str, str], ...]
    payload_key: str = "$.id"
    children: tuple[ChildTable, ...] = ()
    history: HistoryTable | None = None
    indexes: tuple[tuple[str, ...], ...] = ()
    description: str = ""
    column_descriptions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    references: tuple[ForeignKey, ...] = ()
    views: tuple[View, ...] = ()
    # The column Datasette shows for a row where another table links to it.
    label_column: str | None = None
    # Columns whose TEXT holds JSON: a copy elsewhere (PostgreSQL's jsonb) can type them.
    json_columns: frozenset[str] = frozenset()

    @property
    def state_table(self) -> str:
        """Where the per-column versions live, out of the users' way."""
        return f"_state_{self.name}"

    @property
    def table_names(self) -> tuple[str, ...]:
        """Every table this projection owns."""
        names = [self.name, *(c.name for c in self.children), self.state_table]
        if self.history:
            names.append(self.history.name)
        return tuple(names)

    @property
    def view_names(self) -> tuple[str, ...]:
        """Every view this projection owns."""
        return tuple(view.name for view in self.views)

    @property
    def registers(self) -> tuple[str, ...]:
        """Every register an entity can have, in the order its stored state lists them."""
        return (*(name for name, _ in self.columns), *(c.register for c in self.children))

    def ddl(self) -> list[str]:
        """CREATE statements for every table, index and view, from one description.

        Child rows and history rows declare their parent as a foreign key, and the
        table its `references`; none is enforced (see `ForeignKey`).
        """
        columns = ", ".join(f"{name} {kind}" for name, kind in self.columns)
        constraints = "".join(f", {ref.clause()}" for ref in self.references)
        statements = [
            f"CREATE TABLE {self.name} ({self.key} TEXT PRIMARY KEY, {columns}{constraints})",
            (
                f"CREATE TABLE {self.state_table} (key TEXT PRIMARY KEY, registers BLOB NOT NULL)"
                " STRICT, WITHOUT ROWID"
            ),
        ]
        for child in self.children:
            child_columns = ", ".join(f"{name} {kind}" for name, kind in child.columns)
            parent = ForeignKey(child.parent_column, self.name, self.key)
            statements.append(
                f"CREATE TABLE {child.name} ({child.parent_column} TEXT NOT NULL, "
                f"position INTEGER NOT NULL, {child_columns}, "
                f"PRIMARY KEY ({child.parent_column}, position), {parent.clause()}) WITHOUT ROWID"
            )
        if self.history:
            history_columns = ", ".join(f"{n} {k}" for n, k in self.history.columns)
            parent = ForeignKey(self.history.columns[0][0], self.name, self.key)
            statements.append(
                f"CREATE TABLE {self.history.name} ({history_columns}, "
                f"PRIMARY KEY ({', '.join(self.history.primary_key)}), {parent.clause()})"
                " WITHOUT ROWID"
            )
        statements.extend(
            f"CREATE INDEX {self.name}_by_{'_'.join(cols)} ON {self.name} ({', '.join(cols)})"
            for cols in self.indexes
        )
        statements.extend(view.ddl() for view in self.views)
        return statements

    def described(self) -> Descriptions:
        """Every table and view of this projection: its description and its columns'.

        The hidden state table is described here once for every projection.
        """
        described: Descriptions = {
            self.name: (self.description, dict(self.column_descriptions)),
        }
        for child in self.children:
            described[child.name] = (child.description, dict(child.column_descriptions))
        if self.history:
            described[self.history.name] = (
                self.history.description,
                dict(self.history.column_descriptions),
            )
        described[self.state_table] = (
            (
                f"Bookkeeping of {self.name}: the version of each stored field, so that a late "
                "event cannot overwrite a newer value."
            ),
            {"key": f"the {self.name} row's key", "registers": "the encoded versions"},
        )
        for view in self.views:
            described[view.name] = (view.description, dict(view.column_descriptions))
        return described
