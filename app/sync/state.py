"""`sync.db` in the data directory: where a pass stands, so a killed one resumes.

Kept apart from `events.db` (which holds only deliveries) and from `projections.db`
(disposable): losing it costs one pass starting over, nothing else. After each page is
durably in the log, one transaction here records the page reached, the ids it held and
the report so far; a pass killed between the two reads that page again, and its
snapshots are duplicates that add nothing. So nothing is ever half-written.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING

import msgspec

from app.files import holding
from app.sqlite import connect, connect_read_only, write_transaction
from app.sync import report as report_module

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from app.sync.report import Report

DDL = """
CREATE TABLE IF NOT EXISTS pass (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    selection TEXT NOT NULL,
    kind_index INTEGER NOT NULL,
    phase TEXT NOT NULL,
    page INTEGER NOT NULL,
    report BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS seen (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    finished_at TEXT NOT NULL,
    ok INTEGER NOT NULL,
    report BLOB NOT NULL
) STRICT;
"""
WALK = "walk"  # paging through the list
VERIFY = "verify"  # fetching by id what the mirror holds and the walk did not see


class SyncBusyError(Exception):
    """Another sync holds the data directory's lock."""


class Cursor(msgspec.Struct):
    """Where the pass stands: which entity type, which phase, the next page."""

    selection: list[str]
    kind_index: int = 0
    phase: str = WALK
    page: int = 1


def state_path(data_dir: Path) -> Path:
    """Where a data directory's sync state lives."""
    return data_dir / "sync.db"


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's sync lock; a second sync refuses at once."""
    busy = SyncBusyError(f"another sync is running on {data_dir}; wait for it to finish")
    with holding(data_dir / "sync.lock", busy):
        yield


class SyncState:
    """The cursor, the ids seen by the pass in progress, and the finished passes."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, data_dir: Path) -> SyncState:
        """Open (or create, private to its user) the state of `data_dir`."""
        # `connect` creates a new database file private to its user.
        conn = connect(state_path(data_dir), synchronous="NORMAL", timeout_seconds=30)
        conn.executescript(DDL)
        return cls(conn)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def resume(self, selection: list[str]) -> tuple[Cursor, Report] | None:
        """The unfinished pass over the same entity types, if there is one."""
        row = self._conn.execute("SELECT selection, kind_index, phase, page, report FROM pass")
        found = row.fetchone()
        if found is None or msgspec.json.decode(found[0]) != selection:
            return None
        cursor = Cursor(selection, found[1], found[2], found[3])
        return cursor, report_module.decode(found[4])

    def start(self, cursor: Cursor, report: Report) -> None:
        """Begin a new pass, forgetting any other unfinished one."""
        with write_transaction(self._conn) as conn:
            conn.execute("DELETE FROM seen")
            conn.execute("DELETE FROM pass")
            self._write(conn, cursor, report)

    def advance(self, cursor: Cursor, report: Report, kind: str, seen: Iterable[str] = ()) -> None:
        """Record progress and the ids just seen, in one transaction."""
        with write_transaction(self._conn) as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO seen (kind, id) VALUES (?, ?)", ((kind, k) for k in seen)
            )
            self._write(conn, cursor, report)

    def seen(self, kind: str) -> set[str]:
        """Ids the pass in progress has already read (or checked) of one entity type."""
        rows = self._conn.execute("SELECT id FROM seen WHERE kind = ?", (kind,))
        return {key for (key,) in rows}

    def finish(self, report: Report) -> None:
        """Close the pass: keep its report, forget its cursor and ids."""
        assert report.finished_at is not None  # noqa: S101 - concluded by the caller
        with write_transaction(self._conn) as conn:
            conn.execute("DELETE FROM seen")
            conn.execute("DELETE FROM pass")
            conn.execute(
                "INSERT INTO runs (finished_at, ok, report) VALUES (?, ?, ?)",
                (report.finished_at, int(bool(report.ok)), report_module.encode(report)),
            )

    def keep_stopped(self, report: Report) -> None:
        """A pass that stopped early: keep its cursor to resume, and record the outcome."""
        assert report.finished_at is not None  # noqa: S101 - concluded by the caller
        with write_transaction(self._conn) as conn:
            conn.execute("UPDATE pass SET report = ?", (report_module.encode(report),))
            conn.execute(
                "INSERT INTO runs (finished_at, ok, report) VALUES (?, 0, ?)",
                (report.finished_at, report_module.encode(report)),
            )

    def _write(self, conn: sqlite3.Connection, cursor: Cursor, report: Report) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO pass (id, selection, kind_index, phase, page, report) "
            "VALUES (1, ?, ?, ?, ?, ?)",
            (
                msgspec.json.encode(cursor.selection).decode(),
                cursor.kind_index,
                cursor.phase,
                cursor.page,
                report_module.encode(report),
            ),
        )


def last_run(data_dir: Path) -> Report | None:
    """The report of the last pass that ended (completed or stopped), read-only.

    None when no pass has ended, or there is no state file yet (nothing is created).
    """
    path = state_path(data_dir)
    if not path.exists():
        return None
    conn = connect_read_only(path)
    try:
        row = conn.execute("SELECT report FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.OperationalError:  # the tables are not there yet
        return None
    finally:
        conn.close()
    return None if row is None else report_module.decode(row[0])
