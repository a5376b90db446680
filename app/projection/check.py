"""`rebuild --check`: rebuild into a scratch and compare it with the live tables."""

from __future__ import annotations

import sqlite3
import sys
from typing import IO, TYPE_CHECKING

from app.eventlog.reads import LogReader
from app.projection import projector as projector_module
from app.projection import scratch as scratch_module
from app.projection.rebuild_lock import exclusive

if TYPE_CHECKING:
    from collections.abc import Sequence

    from app.settings import Settings
    from projections import Projection

MAX_SHOWN_DIFFERENCES = 20


def check(
    settings: Settings,
    projections: Sequence[Projection],
    stream: IO[str] = sys.stdout,
) -> int:
    """Rebuild into scratch tables and compare them with the live ones; change nothing.

    Each projection is rebuilt up to the live checkpoint it is compared with, read in the
    same snapshot, so a running `serve` does not make the comparison drift. Returns the
    number of differing rows.
    """
    with exclusive(settings.data_dir):
        store = LogReader.open(settings.events_path)
        scratch_path = scratch_module.scratch_path(settings)
        scratch = scratch_module.open_scratch(scratch_path)
        main = projector_module.connect(settings.projections_path)
        try:
            main.execute("ATTACH DATABASE ? AS scratch", (str(scratch_path),))
            main.execute("BEGIN")
            checkpoints = {
                name: position
                for name, _, position in main.execute(projector_module.SELECT_CHECKPOINTS)
            }
            for projection in projections:
                builder = projector_module.Projector(scratch, store, [projection])
                builder.install_all()
                scratch_module.drop_indexes(scratch)
                scratch_module.fold_log(
                    builder, lambda _events: None, checkpoints.get(projection.NAME, 0)
                )
            # Compare only once every scratch table exists: the snapshot this connection
            # takes of the scratch at its first read fixes the schema it can see.
            differences = sum(_compare(main, projection, stream) for projection in projections)
            main.execute("ROLLBACK")
            main.execute("DETACH DATABASE scratch")
        finally:
            main.close()
            scratch.close()
            store.close()
            scratch_module.scratch_path(settings)
    return differences


def _compare(main: sqlite3.Connection, projection: Projection, stream: IO[str]) -> int:
    differences = 0
    for table in projection.TABLE.table_names:
        for label, first, second in (
            ("only live", "main", "scratch"),
            ("only rebuilt", "scratch", "main"),
        ):
            try:
                rows = main.execute(
                    f"SELECT * FROM {first}.{table} EXCEPT SELECT * FROM {second}.{table}"
                ).fetchall()
            except sqlite3.OperationalError as exc:
                # A live table that is missing, or has other columns (a stale projection
                # whose schema changed), differs as a whole.
                stream.write(f"{table}: cannot compare: {exc}\n")
                differences += 1
                break
            differences += len(rows)
            for row in rows[:MAX_SHOWN_DIFFERENCES]:
                stream.write(f"{table}: {label}: {row!r}\n")
    return differences
