"""Re-folding a few entities from the log, after their events were redacted.

`forget` rewrites a person's events in the log; the tables must then hold exactly what a
rebuild of the rewritten log would. Rather than knowing which column came from which
field, the entities those events are about are deleted from every table of each
projection and folded again from their (now redacted) events, in one transaction per
projection, up to its checkpoint: the live projector carries on from there as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from app import sqlite
from app.eventlog.erasure import Screen
from app.projection import projector as projector_module

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Sequence

    from app.eventlog.reads import LogReader
    from projections import Projection


class StaleProjectionError(Exception):
    """A projection's tables were built by another version: re-folding them cannot be exact."""


def stale(conn: sqlite3.Connection, projections: Sequence[Projection]) -> list[str]:
    """The names of the projections whose tables another version built."""
    built = {
        name: version for name, version, _ in conn.execute(projector_module.SELECT_CHECKPOINTS)
    }
    return [p.NAME for p in projections if p.NAME in built and built[p.NAME] != p.VERSION]


def refold(
    conn: sqlite3.Connection,
    store: LogReader,
    projections: Sequence[Projection],
    events: Iterable[tuple[str, str]],
) -> int:
    """Delete and fold again the entities named by (event type, entity key) `events`.

    Returns how many entities were re-folded. `conn` should be `secure` (zeroing what
    it deletes).
    """
    named = list(events)
    if stale_names := stale(conn, projections):
        raise StaleProjectionError(
            f"projections {', '.join(stale_names)} are stale: run rebuild first"
        )
    refolded = 0
    screen = Screen(store)
    for projection in projections:
        keys = {key for event_type, key in named if event_type in projection.EVENT_TYPES}
        if not keys:
            continue
        with sqlite.write_transaction(conn):
            row = conn.execute(
                "SELECT position FROM _projections WHERE name = ?", (projection.NAME,)
            ).fetchone()
            if row is None:
                continue  # never installed: nothing of theirs to re-fold
            _delete(conn, projection, keys)
            table = projection.TABLE
            found = store.events_of(projection.EVENT_TYPES, table.payload_key, keys, until=row[0])
            projector_module.apply_events(conn, projection, screen.screen(found))
        refolded += len(keys)
    return refolded


def _delete(conn: sqlite3.Connection, projection: Projection, keys: set[str]) -> None:
    table = projection.TABLE
    values = msgspec.json.encode(sorted(keys)).decode()
    targets = [
        (table.name, table.key),
        (table.state_table, "key"),
        *((child.name, child.parent_column) for child in table.children),
    ]
    if table.history is not None:
        targets.append((table.history.name, table.history.columns[0][0]))
    for name, column in targets:
        # The names come from the projection's own description, never from input.
        conn.execute(
            f"DELETE FROM {name} WHERE {column} IN (SELECT value FROM json_each(?))",
            (values,),
        )
