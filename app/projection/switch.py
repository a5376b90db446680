"""The switch: the scratch tables replace the live ones in one transaction.

It takes `projections.db`'s write lock, applies the last events that arrived during the
build, and replaces the old tables and checkpoint with the new ones: readers see the old
complete tables until the new complete ones, and the live projector carries on from the
new checkpoint.

A projection's views are replaced with its tables, in the same transaction, from the
code's definitions (a view change is a version change). Another projection's views
that read the replaced tables (`customer_revenue` reads `customers`) need nothing:
SQLite lets a table under a view be dropped and resolves the view's tables again when
it is read, so they see the new tables once the transaction commits. Nothing here may
use ALTER TABLE ... RENAME, which, while such a view points at a dropped table,
fails ("error in view ...") unless `legacy_alter_table` is on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec

from app.eventlog.sqlite import rollback_if_open
from app.projection import projector as projector_module
from app.projection import scratch as scratch_module

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence
    from pathlib import Path

    from app.eventlog.reads import LogReader
    from app.projection.rebuild import Summary
    from projections import Projection


def switch(
    main: sqlite3.Connection,
    store: LogReader,
    projections: Sequence[Projection],
    paths: dict[str, Path],
    built: dict[str, Summary],
) -> None:
    """Replace the live tables with the scratch ones in one transaction.

    What each projection takes from the log meanwhile, and the time it takes, is added
    to its summary in `built`.
    """
    for projection in projections:
        main.execute(
            f"ATTACH DATABASE ? AS scratch_{projection.NAME}", (str(paths[projection.NAME]),)
        )
    try:
        # Take the write lock of projections.db alone (BEGIN IMMEDIATE would lock the
        # scratches too, which still have to take the last events).
        main.execute("BEGIN")
        try:
            main.execute("UPDATE main._projections SET position = position")
            for projection in projections:
                started = time.monotonic()
                # The live projector is held off by the write lock now: whatever arrived
                # in the log during the build goes into the scratch before it is copied.
                scratch = scratch_module.open_scratch(paths[projection.NAME])
                try:
                    tail = projector_module.Projector(scratch, store, [projection])
                    tail.catch_up(scratch_module.BATCH)
                finally:
                    scratch.close()
                _replace(main, projection, f"scratch_{projection.NAME}")
                summary = built[projection.NAME]
                summary.events += tail.stats[projection.NAME].events
                summary.rows += tail.stats[projection.NAME].rows
                summary.seconds += time.monotonic() - started
            main.execute("COMMIT")
        except BaseException:
            rollback_if_open(main)
            raise
    finally:
        for projection in projections:
            main.execute(f"DETACH DATABASE scratch_{projection.NAME}")


def _replace(main: sqlite3.Connection, projection: Projection, scratch: str) -> None:
    row = main.execute(
        "SELECT tables FROM main._projections WHERE name = ?", (projection.NAME,)
    ).fetchone()
    old_names = msgspec.json.decode(row[0], type=list[str]) if row else []
    for name in dict.fromkeys([*old_names, *projector_module.owned_names(projection)]):
        kind = main.execute(
            "SELECT type FROM main.sqlite_master WHERE name = ? AND type IN ('table', 'view')",
            (name,),
        ).fetchone()
        if kind:
            main.execute(f"DROP {kind[0].upper()} main.{name}")
    # Empty tables with the scratch's very indexes: SQLite then copies each table and
    # its indexes page by page in order (its transfer optimisation), sorting nothing.
    # The projection's views are created with them.
    for statement in projection.TABLE.ddl():
        main.execute(statement)
    for table in projection.TABLE.table_names:
        main.execute(f"INSERT INTO main.{table} SELECT * FROM {scratch}.{table}")
    main.execute(
        f"INSERT OR REPLACE INTO main._projections SELECT * FROM {scratch}._projections "
        "WHERE name = ?",
        (projection.NAME,),
    )
    main.execute("DELETE FROM main._projection_errors WHERE projection = ?", (projection.NAME,))
    main.execute(
        f"INSERT INTO main._projection_errors SELECT * FROM {scratch}._projection_errors "
        "WHERE projection = ?",
        (projection.NAME,),
    )
