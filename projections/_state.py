"""Where each entity's register versions are stored, and how a batch reads and writes them.

The values are the entity's row (and its child rows); the versions are kept in a hidden
`_state_<table>` table beside it, encoded by `encode_state`.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Sequence

    from projections._changes import Change
    from projections._tables import EntityTable

_state_decoder = msgspec.json.Decoder(tuple[list[str], list[int]])
_state_encoder = msgspec.json.Encoder()
_keys_encoder = msgspec.json.Encoder()
# Where a register is absent from a stored state.
_ABSENT = -1
_LOOKUP_CHUNK = 500


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


def load_states(
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


def write_states(
    conn: sqlite3.Connection,
    table: EntityTable,
    states: dict[str, dict[str, list[Any]]],
    dirty: dict[str, set[str]],
    old_sizes: dict[str, int] | None = None,
) -> int:
    """Write the dirty entities' rows, states and replaced child rows; how many rows.

    With `old_sizes`, how many child rows each replaced list had before is counted there.
    """
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
        if old_sizes is None:
            conn.executemany(
                f"DELETE FROM {child.name} WHERE {child.parent_column} = ?",
                [(k,) for k in replaced],
            )
        else:
            gone = conn.execute(
                f"DELETE FROM {child.name} WHERE {child.parent_column} IN "
                f"(SELECT value FROM json_each(?)) RETURNING {child.parent_column}",
                (_encode_keys(replaced),),
            ).fetchall()
            for (parent,) in gone:
                old_sizes[parent] = old_sizes.get(parent, 0) + 1
        child_rows = [
            (key, position, *row)
            for key in replaced
            for position, row in enumerate(states[key][child.register][0] or ())
        ]
        marks = ", ".join("?" * (len(child.columns) + 2))
        conn.executemany(f"INSERT INTO {child.name} VALUES ({marks})", child_rows)
        written += len(child_rows)
    return written


def _encode_keys(keys: list[str]) -> str:
    return _keys_encoder.encode(keys).decode()
