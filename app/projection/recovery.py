"""A `projections.db` that cannot be trusted is moved aside and built again (SPEC §4).

The file is disposable: everything in it comes from the log. Two things make it
untrustworthy, and projecting into it as it is would be worse than starting over:
- it is damaged (not a database at all, truncated, or failing SQLite's check): every
  step of the live projector would fail, for ever;
- it is ahead of the log (a checkpoint beyond the log's head, as after restoring an
  older `events.db` beside it): its tables show events the log no longer holds, and
  the projector, waiting for positions the log has already reused, would never apply
  the next deliveries while `status` showed a lag of 0.

Either way it is renamed with the reason and a timestamp, its `-wal` and `-shm` files
with it (a WAL left beside a new file would be replayed into it), never deleted: it may
be the only copy of something an operator wants to look at. `serve` and `rebuild` call
`recover` before they open the file, and the new one is built from the log (by the live
projector from position 0, or by the rebuild's switch). `events.db` is only read.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from typing import TYPE_CHECKING

import structlog

from app.eventlog.reads import LogReader
from app.sqlite import connect_read_only

if TYPE_CHECKING:
    from pathlib import Path

    from app.settings import Settings

log = structlog.get_logger("app.projection.recovery")

DAMAGED = "damaged"
AHEAD = "ahead"
# SQLite's side files, moved with the database they belong to.
_SIDE_FILES = ("-wal", "-shm")


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """Why a `projections.db` cannot be used as it is: `DAMAGED` or `AHEAD`, and a sentence."""

    reason: str
    detail: str


def diagnose(path: Path, head: int) -> Problem | None:
    """What is wrong with the projections database at `path`, if anything; writes nothing.

    `PRAGMA quick_check` reads every page (the full `integrity_check` also cross-checks
    each index against its table, which would make every start of `serve` as slow as
    that on a large file, for damage the page check already finds in practice).
    """
    if not path.exists():
        return None
    try:
        conn = connect_read_only(path)
        try:
            found = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
            if found != ["ok"]:
                return Problem(DAMAGED, f"{path} fails SQLite's integrity check: {found[0]}")
            has_bookkeeping = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_projections'"
            ).fetchone()
            if not has_bookkeeping:
                return None
            (top,) = conn.execute("SELECT COALESCE(MAX(position), 0) FROM _projections").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return Problem(DAMAGED, f"{path} is not a usable SQLite database: {exc}")
    if int(top) > head:
        return Problem(
            AHEAD,
            f"{path} is ahead of the log: a checkpoint at position {top}, beyond the "
            f"log's head at {head} (was an older events.db restored beside it?)",
        )
    return None


def head_of(settings: Settings) -> int:
    """The log's head, read without writing."""
    store = LogReader.open(settings.events_path)
    try:
        return store.head()
    finally:
        store.close()


def recover(settings: Settings) -> Problem | None:
    """Move `projections.db` aside if it cannot be used, saying why in one log line.

    Returns what was wrong (None: nothing, and nothing was moved). The caller then opens
    the path as usual and gets a new, empty file to build from the log.
    """
    path = settings.projections_path
    problem = diagnose(path, head_of(settings))
    if problem is None:
        return None
    moved_to = move_aside(path, problem.reason)
    log.warning(
        "projections_moved_aside",
        reason=problem.reason,
        detail=problem.detail,
        moved_to=str(moved_to),
        action="rebuilding it from the log",
    )
    return problem


def move_aside(path: Path, reason: str) -> Path:
    """Rename the database and its side files to `<name>.<reason>-<UTC time>`; the new name.

    The database goes last: until then, the path still names it with its own side files.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.{reason}-{stamp}")
    serial = 1
    while target.exists():  # two moves within one second
        serial += 1
        target = path.with_name(f"{path.name}.{reason}-{stamp}-{serial}")
    for suffix in _SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    path.rename(target)
    return target
