"""`status`: the log's size and head, and where each projection stands."""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import TYPE_CHECKING

from app import files as private_files
from app.eventlog import erasure
from app.eventlog.reads import LogReader
from app.projection import projector, recovery
from app.publish.state import report as publish_report
from app.sqlite import connect_read_only
from app.sync.state import last_run
from projections import discover

if TYPE_CHECKING:
    from pathlib import Path

    from app.settings import Settings


def collect(settings: Settings) -> dict[str, object]:
    """The SPEC's status object: `{"log": {...}, "projections": [...], "sync": {...}}`.

    Beside the SPEC's keys: `"files"` (the data directory's permissions),
    `"projections_db"` (whether projections.db is usable), and in `"log"`
    `unknown_type_events`, `forget_records` and `forget_pending`.

    Reads only: both files are opened read-only, and a projections.db that `serve` has
    not made yet (missing, or not yet holding its bookkeeping) is reported as projections
    at position 0, not created. A projections.db that `serve` or `rebuild` would move
    aside (damaged, or ahead of the log) is reported under `"projections_db"`, and a
    damaged one as projections at position 0, rather than failing.
    """
    log_conn = connect_read_only(settings.events_path)
    store = LogReader(log_conn)
    problem = recovery.diagnose(settings.projections_path, store.head())
    if problem is not None and problem.reason == recovery.DAMAGED:
        conn = projector.connect(":memory:")
    else:
        conn = _projections_or_empty(settings.projections_path)
    try:
        runner = projector.Projector(conn, store, discover())
        statuses = runner.statuses()
        synced = last_run(settings.sync_path)
        return {
            "log": {
                "events": store.count(),
                "head": store.head(),
                "last_delivery_at": store.last_delivery_at(),
                # Authentic deliveries of types no projection reads: kept, shown here.
                "unknown_type_events": store.count_other_types(
                    t for p in runner.projections for t in p.EVENT_TYPES
                ),
                "forget_records": _forget_records(log_conn),
                # Recorded, but the tables and files may still hold the values until the
                # next forget, sweep or serve start completes them.
                "forget_pending": _forget_pending(log_conn),
            },
            "projections": [dataclasses.asdict(s) for s in statuses],
            "projections_db": _problem(problem),
            "files": files(settings),
            "sync": {
                "finished_at": None if synced is None else synced.finished_at,
                "ok": None if synced is None else synced.ok,
            },
            "publish": publish_report(settings),
        }
    finally:
        conn.close()
        store.close()


def _problem(problem: recovery.Problem | None) -> dict[str, object]:
    if problem is None:
        return {"ok": True, "problem": None, "detail": None}
    return {
        "ok": False,
        "problem": problem.reason,
        "detail": f"{problem.detail}; serve or rebuild moves it aside and rebuilds it from the log",
    }


def _forget_pending(conn: sqlite3.Connection) -> int:
    """How many forgets a kill left pending; 0 for a log no release with forget opened."""
    try:
        return len(erasure.pending(conn))
    except sqlite3.OperationalError:
        return 0


def _forget_records(conn: sqlite3.Connection) -> int:
    """How many forgets (and sweeps) were recorded; 0 for a log no release with forget opened."""
    try:
        return erasure.count_records(conn)
    except sqlite3.OperationalError:
        return 0


def files(settings: Settings) -> dict[str, object]:
    """The data directory's permissions, and a warning for each path wider than private.

    Warned about even when `--allow-shared-data-dir` accepts it (then marked `accepted`):
    status is where an operator sees who else can read the customers' data.
    """
    exposures = private_files.exposures(settings.data_dir)
    modes = private_files.file_modes(settings.data_dir)
    return {
        "data_dir": str(settings.data_dir),
        "modes": {name: f"{mode:04o}" for name, mode in modes.items()},
        "private": not exposures,
        "warnings": [
            {
                "path": str(exposure.path),
                "mode": f"{exposure.mode:04o}",
                "fix": exposure.fix,
                "accepted": settings.allow_shared_data_dir and exposure.shared_only,
            }
            for exposure in exposures
        ],
    }


def _projections_or_empty(path: Path) -> sqlite3.Connection:
    if path.exists():
        conn = connect_read_only(path)
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = '_projections'").fetchone():
            return conn
        conn.close()
    return projector.connect(":memory:")  # the bookkeeping tables, empty
