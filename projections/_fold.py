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
from typing import TYPE_CHECKING, Any

from projections._state import load_states, write_states

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable

    from projections._changes import Change
    from projections._state import Fresh
    from projections._tables import EntityTable


@dataclasses.dataclass(slots=True)
class Touched:
    """Which entities a write changed, for the change feed that records them with the write.

    Maps each entity's key to the larger of how many child rows it had and has where its
    list was replaced (0 where it was not), so that the positions a shorter list removed
    are named in the feed. An entity with a new history row is named too: its history
    comes with it in the feed.
    """

    entities: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, other: Touched) -> None:
        """Take in what another write touched."""
        entities = self.entities
        for key, size in other.entities.items():
            entities[key] = max(entities.get(key, 0), size)


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
    touched: Touched | None = None,
) -> int:
    """Fold `changes` into the stored entities; return how many rows were written.

    With `fresh`, the entities it knows to be unwritten are not looked up; with
    `touched`, the rows written are noted there.
    """
    by_key: dict[str, list[Change]] = {}
    history_rows: list[tuple[object, ...]] = []
    for change in changes:
        by_key.setdefault(change.key, []).append(change)
        if change.history is not None:
            history_rows.append(change.history)
    lookup = list(by_key) if fresh is None else [k for k in by_key if not fresh.unwritten(k)]
    states = load_states(conn, table, lookup)
    dirty: dict[str, set[str]] = {}
    for key, key_changes in by_key.items():
        known = key in states
        state = states.setdefault(key, {})
        changed = _fold_entity(state, key_changes)
        # Any event naming an id makes its row exist, even one that carries no field.
        if changed or not known:
            dirty[key] = changed
    old_sizes: dict[str, int] | None = {} if touched is not None else None
    written = write_states(conn, table, states, dirty, old_sizes)
    if history_rows and table.history:
        marks = ", ".join("?" * len(table.history.columns))
        conn.executemany(
            f"INSERT OR IGNORE INTO {table.history.name} VALUES ({marks})", history_rows
        )
        written += len(history_rows)
    if touched is not None and old_sizes is not None:
        _note(touched, table, states, dirty, old_sizes, history_rows)
    return written


def _note(  # noqa: PLR0913, PLR0917 - what one write did, as write_changes has it
    touched: Touched,
    table: EntityTable,
    states: dict[str, dict[str, list[Any]]],
    dirty: dict[str, set[str]],
    old_sizes: dict[str, int],
    history_rows: list[tuple[object, ...]],
) -> None:
    registers = [child.register for child in table.children]
    entities = touched.entities
    for key, columns in dirty.items():
        state = states[key]
        # The longest list, before or after: the feed names that many positions in the
        # entity's child tables, the ones that no longer exist as removed rows.
        size = max((len(state[r][0] or ()) for r in registers if r in columns), default=0)
        entities[key] = max(entities.get(key, 0), size, old_sizes.get(key, 0))
    # A history row's first column is its entity's key (message_id).
    for row in history_rows:
        entities.setdefault(str(row[0]), 0)


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
