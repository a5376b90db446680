"""How a projection describes its tables; the DDL is generated from that one description."""

from __future__ import annotations

import dataclasses
from typing import Protocol


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
    # Columns whose TEXT holds JSON: a copy elsewhere (PostgreSQL's jsonb) can type them.
    json_columns: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryTable:
    """Append-only rows, one per event, kept once per primary key."""

    name: str
    columns: tuple[tuple[str, str], ...]
    primary_key: tuple[str, ...]


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
    def registers(self) -> tuple[str, ...]:
        """Every register an entity can have, in the order its stored state lists them."""
        return (*(name for name, _ in self.columns), *(c.register for c in self.children))

    def ddl(self) -> list[str]:
        """CREATE statements for every table and index, generated from one description."""
        columns = ", ".join(f"{name} {kind}" for name, kind in self.columns)
        statements = [
            f"CREATE TABLE {self.name} ({self.key} TEXT PRIMARY KEY, {columns})",
            (
                f"CREATE TABLE {self.state_table} (key TEXT PRIMARY KEY, registers BLOB NOT NULL)"
                " STRICT, WITHOUT ROWID"
            ),
        ]
        for child in self.children:
            child_columns = ", ".join(f"{name} {kind}" for name, kind in child.columns)
            statements.append(
                f"CREATE TABLE {child.name} ({child.parent_column} TEXT NOT NULL, "
                f"position INTEGER NOT NULL, {child_columns}, "
                f"PRIMARY KEY ({child.parent_column}, position)) WITHOUT ROWID"
            )
        if self.history:
            history_columns = ", ".join(f"{n} {k}" for n, k in self.history.columns)
            statements.append(
                f"CREATE TABLE {self.history.name} ({history_columns}, "
                f"PRIMARY KEY ({', '.join(self.history.primary_key)})) WITHOUT ROWID"
            )
        statements.extend(
            f"CREATE INDEX {self.name}_by_{'_'.join(cols)} ON {self.name} ({', '.join(cols)})"
            for cols in self.indexes
        )
        return statements
