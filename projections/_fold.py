"""The fold shared by every entity projection: field registers, last writer wins.

Each entity's state is a map of column -> [value, version]: the values are the entity's
row, the versions are kept in a hidden `_state_<table>` table beside it (see
`encode_state`). Merging keeps, per column, the value with the larger version, which is
commutative and idempotent: the tables depend on the set of events, not on their order,
their duplication or the batch sizes they came in.
A batch is folded in memory (one load and one write per entity, not per event), which
is what makes a full rebuild fast.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import operator
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from projections._payloads import Deleted
from projections._rules import carries_list, event_time, event_version, json_text

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Iterator, Sequence

Registers = dict[str, tuple[object, str]]

_state_decoder = msgspec.json.Decoder(tuple[list[str], list[int]])
_state_encoder = msgspec.json.Encoder()
# Where a register is absent from a stored state.
_ABSENT = -1
_LOOKUP_CHUNK = 500


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


@dataclasses.dataclass(slots=True)
class Fresh:
    """What a rebuild knows of a fresh scratch: whose state it need not look up.

    `entities` are the entities of the batch being written, read from the log grouped by
    entity, so none of them was written by an earlier batch, unless a change of an
    earlier batch named it under another entity's events: `elsewhere` keeps those keys
    (only ever ones whose payload's key and the change's key disagree, so it stays
    small). Every other key is looked up as usual.
    """

    entities: set[object]
    elsewhere: set[str] = dataclasses.field(default_factory=set)

    def note(self, changes: Iterable[Change]) -> None:
        """Remember the keys of `changes` that are not this batch's entities."""
        entities = self.entities
        self.elsewhere.update(c.key for c in changes if c.key not in entities)

    def unwritten(self, key: str) -> bool:
        """Whether `key` certainly has no stored state yet."""
        return key in self.entities and key not in self.elsewhere


@dataclasses.dataclass(slots=True)
class Change:
    """What one event says about one entity."""

    key: str
    registers: Registers = dataclasses.field(default_factory=dict)
    deleted_at: str | None = None
    history: tuple[object, ...] | None = None
    # Set when every register carries this one version (an event's own fields): a change
    # newer than all of an entity's state then folds in as one dict update.
    version: str | None = None


_KEY_FIELD = frozenset({"id"})  # the entity's key, not a column
_deleted = msgspec.json.Decoder(Deleted)


def updated_entity(  # noqa: PLR0913 - the key, the payload and how it flattens
    key: str,
    updated_at: object,
    payload: msgspec.Struct,
    event: Event,
    *,
    nested: dict[str, str] | None = None,
    children: Sequence[ChildTable] = (),
) -> Change:
    """What a `*.created` or `*.updated` event says of its entity: every field it carries.

    Every register carries the event's one version, (`updatedAt`, timestamp header,
    webhook id), and the change says so: the fold takes a change newer than the whole
    state in one update.
    """
    version = event_version(updated_at, event.event_timestamp, event.webhook_id)
    registers = carried(
        payload, version, event.event_type, skip=_KEY_FIELD, nested=nested, children=children
    )
    return Change(key, registers, version=version)


def deleted_entity(event: Event) -> Change:
    """What a `*.deleted` event says: its entity is deleted as of the event's time."""
    return Change(_deleted.decode(event.payload).id, deleted_at=event_time(event))


def carried(  # noqa: PLR0913 - keyword-only options of one flattening rule
    payload: msgspec.Struct,
    version: str,
    event_type: str,
    *,
    skip: frozenset[str] = frozenset(),
    nested: dict[str, str] | None = None,
    children: Sequence[ChildTable] = (),
) -> Registers:
    """The registers an event writes: every field it carries, flattened to columns.

    An absent field writes nothing; explicit null writes NULL; a nested object (named in
    `nested` with its column prefix) writes each of its leaves, and null writes all of
    them NULL; a list of objects becomes a child register; other lists become JSON text.
    """
    unset = msgspec.UNSET
    registers: Registers = {
        field: (value, version)
        for field, value in msgspec.structs.asdict(payload).items()
        if value is not unset and field not in skip
    }
    composite = _composite_fields(type(payload)) & registers.keys()
    if not composite:
        return registers
    child_registers = {child.register: child for child in children}
    nested = nested or {}
    for field in composite:
        value = registers.pop(field)[0]
        if field in nested:
            prefix = nested[field]
            leaves = _nested_fields(type(payload), field)
            for leaf in leaves:
                leaf_value = None if value is None else getattr(value, leaf)
                if leaf_value is not msgspec.UNSET:
                    registers[prefix + leaf] = (leaf_value, version)
        elif isinstance(value, list):
            if not carries_list(event_type, value):
                continue
            child = child_registers.get(field)
            if child is None:
                registers[field] = (json_text(value), version)
            else:
                registers[field] = (_child_rows(child, value), version)
        else:
            registers[field] = (value, version)
    return registers


@functools.cache
def _composite_fields(payload_type: type[msgspec.Struct]) -> frozenset[str]:
    """Fields that may hold a list or an object: the only ones needing more than a copy."""
    hint = msgspec.inspect.type_info(payload_type)
    assert isinstance(hint, msgspec.inspect.StructType)  # noqa: S101 - payload is a Struct
    return frozenset(
        info.name
        for info in hint.fields
        if any(
            isinstance(option, msgspec.inspect.ListType | msgspec.inspect.StructType)
            for option in _options(info.type)
        )
    )


@functools.cache
def _nested_fields(payload_type: type[msgspec.Struct], field: str) -> tuple[str, ...]:
    hint = msgspec.inspect.type_info(payload_type)
    assert isinstance(hint, msgspec.inspect.StructType)  # noqa: S101 - payload is a Struct
    for info in hint.fields:
        if info.name == field:
            for option in _options(info.type):
                if isinstance(option, msgspec.inspect.StructType):
                    return tuple(f.name for f in option.fields)
    return ()


def _options(info: msgspec.inspect.Type) -> Iterator[msgspec.inspect.Type]:
    if isinstance(info, msgspec.inspect.UnionType):
        yield from info.types
    else:
        yield info


def _child_rows(child: ChildTable, items: list[Any]) -> list[list[object]]:
    names = [name for name, _ in child.columns]
    unset = msgspec.UNSET
    return [
        [None if (v := getattr(item, name, None)) is unset else v for name in names]
        for item in items
    ]


def merge(state: dict[str, list[Any]], change: Change) -> set[str]:
    """Fold one change into an entity's state; return the columns it overwrote."""
    changed = set()
    get = state.get
    # A register is stored as the (value, version) pair the change carries: no copy.
    for column, register in change.registers.items():
        current = get(column)
        if current is None or register[1] > current[1]:
            changed.add(column)
            state[column] = register  # type: ignore[assignment]
    if change.deleted_at is not None:
        # Deletion is final: the earliest delete wins and nothing ever clears it.
        current = state.get("deleted_at")
        if current is None or current[0] is None or change.deleted_at < current[0]:
            state["deleted_at"] = [change.deleted_at, ""]
            changed.add("deleted_at")
    return changed


def write_changes(
    conn: sqlite3.Connection,
    table: EntityTable,
    changes: Iterable[Change],
    fresh: Fresh | None = None,
) -> int:
    """Fold `changes` into the stored entities; return how many rows were written.

    With `fresh`, the entities it knows to be unwritten are not looked up.
    """
    by_key: dict[str, list[Change]] = {}
    history_rows: list[tuple[object, ...]] = []
    for change in changes:
        by_key.setdefault(change.key, []).append(change)
        if change.history is not None:
            history_rows.append(change.history)
    lookup = list(by_key) if fresh is None else [k for k in by_key if not fresh.unwritten(k)]
    states = _load_states(conn, table, lookup)
    dirty: dict[str, set[str]] = {}
    for key, key_changes in by_key.items():
        known = key in states
        state = states.setdefault(key, {})
        changed = _fold_entity(state, key_changes)
        # Any event naming an id makes its row exist, even one that carries no field.
        if changed or not known:
            dirty[key] = changed
    written = _write_states(conn, table, states, dirty)
    if history_rows and table.history:
        marks = ", ".join("?" * len(table.history.columns))
        conn.executemany(
            f"INSERT OR IGNORE INTO {table.history.name} VALUES ({marks})", history_rows
        )
        written += len(history_rows)
    return written


def _fold_entity(state: dict[str, list[Any]], changes: list[Change]) -> set[str]:
    """Fold one entity's changes into its state; return the columns they overwrote."""
    changed: set[str] = set()
    # The newest version in the state, worked out when a change could use it: a log
    # read in position order mostly brings each entity's changes oldest first, and a
    # change newer than the whole state folds in as one dict update.
    newest: str | None = None
    for change in changes:
        version = change.version
        if change.deleted_at is not None:
            whole = False
        elif not state:
            # Nothing stored yet: every register wins, whatever its version (the first
            # event of each message, whose registers have versions of their own).
            whole = True
        elif version is not None:
            if newest is None:
                newest = max(register[1] for register in state.values())
            whole = version > newest
        else:
            whole = False
        if whole:
            state.update(change.registers)  # type: ignore[arg-type]
            changed.update(change.registers)
            newest = version
            continue
        changed |= merge(state, change)
        newest = None
    return changed


def _load_states(
    conn: sqlite3.Connection, table: EntityTable, keys: list[str]
) -> dict[str, dict[str, list[Any]]]:
    states: dict[str, dict[str, list[Any]]] = {}
    registers = table.registers
    columns = ", ".join(f"t.{name}" for name, _ in table.columns)
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[start : start + _LOOKUP_CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT s.key, s.registers, {columns} FROM {table.state_table} AS s "
            f"JOIN {table.name} AS t ON t.{table.key} = s.key WHERE s.key IN ({marks})",
            chunk,
        )
        for key, stored, *values in rows:
            states[key] = decode_state(registers, stored, values)
    return states


def encode_state(registers: Sequence[str], state: dict[str, list[Any]]) -> bytes:
    """An entity's register versions as stored: each distinct version once.

    The values are not kept here: they are the entity's row (and its child rows), which
    is where a later change reads them back from. What is stored is the sorted distinct
    versions, then for each of the table's registers, in order, the index of its version
    (`_ABSENT` for a register no event has written). Most registers share the version of
    the event that last wrote them, so an order's state takes about 150 bytes, against
    about 1 kB when it kept the values and named the columns, which is less to write on
    every change and to copy when a rebuild switches. Equal states are equal bytes.
    """
    absent = (None, None)
    stored = [state.get(name, absent)[1] for name in registers]
    versions = sorted({version for version in stored if version is not None})
    index = {version: number for number, version in enumerate(versions)}
    return _state_encoder.encode((versions, [index.get(v, _ABSENT) for v in stored]))


def decode_state(
    registers: Sequence[str], stored: bytes, values: Sequence[object]
) -> dict[str, list[Any]]:
    """The state `encode_state` stored, with the row's `values` for the table's columns.

    A child register (beyond the columns) gets no value: its rows are only ever written
    from a change that carries the list anew.
    """
    versions, numbers = _state_decoder.decode(stored)
    if len(numbers) != len(registers):
        raise ValueError(
            f"a stored state lists {len(numbers)} registers where the table has "
            f"{len(registers)}: the projection's VERSION must go up when its columns change"
        )
    return {
        name: [value, versions[number]]
        for name, number, value in itertools.zip_longest(registers, numbers, values)
        if number != _ABSENT
    }


def _write_states(
    conn: sqlite3.Connection,
    table: EntityTable,
    states: dict[str, dict[str, list[Any]]],
    dirty: dict[str, set[str]],
) -> int:
    if not dirty:
        return 0
    columns = [name for name, _ in table.columns]
    absent = [(None,)] * len(columns)
    first = operator.itemgetter(0)
    registers = table.registers
    rows = []
    state_rows = []
    for key in dirty:
        state = states[key]
        rows.append((key, *map(first, map(state.get, columns, absent))))
        state_rows.append((key, encode_state(registers, state)))
    marks = ", ".join("?" * (len(columns) + 1))
    conn.executemany(f"INSERT OR REPLACE INTO {table.name} VALUES ({marks})", rows)
    conn.executemany(f"INSERT OR REPLACE INTO {table.state_table} VALUES (?, ?)", state_rows)
    written = len(rows)
    for child in table.children:
        replaced = [key for key, cols in dirty.items() if child.register in cols]
        if not replaced:
            continue
        conn.executemany(
            f"DELETE FROM {child.name} WHERE {child.parent_column} = ?", [(k,) for k in replaced]
        )
        child_rows = [
            (key, position, *row)
            for key in replaced
            for position, row in enumerate(states[key][child.register][0] or ())
        ]
        marks = ", ".join("?" * (len(child.columns) + 2))
        conn.executemany(f"INSERT INTO {child.name} VALUES ({marks})", child_rows)
        written += len(child_rows)
    return written
