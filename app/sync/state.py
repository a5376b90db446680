"""`sync.db` in the data directory: where a pass stands, and what it did so far.

Kept apart from `events.db` (which holds only deliveries) and from `projections.db`
(disposable): losing it costs one pass starting over, nothing else. After each page is
durably in the log, one transaction here records the page reached, the ids it held and
the report so far (per entity type, the SPEC's report, kept between runs of a resumed
pass); a pass killed between the two reads that page again, and its snapshots are
duplicates that add nothing. So nothing is ever half-written.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING

import msgspec

from app.files import holding
from app.sqlite import connect, connect_read_only, write_transaction

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from app.settings import Settings

# Said in the report, `--help` and the README: the API has no way to read them back.
MESSAGES_NOTE = (
    "message statuses are not synced: the Open API can send WhatsApp messages but "
    "cannot read a message or its status back; only webhooks bring them"
)
MAX_PROBLEMS_LISTED = 20


class KindReport(msgspec.Struct):
    """Counts for one entity type; `problems_seen` lists the first few problems."""

    read: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    gone: int = 0
    problems: int = 0
    problems_seen: list[str] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)

    def problem(self, text: str) -> None:
        """Count a problem; keep its text while the list is short."""
        self.problems += 1
        if len(self.problems_seen) < MAX_PROBLEMS_LISTED:
            self.problems_seen.append(text)


class Report(msgspec.Struct):
    """A whole pass. `ok` is False when it stopped early or any entity had a problem."""

    started_at: str
    entities: dict[str, KindReport]
    finished_at: str | None = None
    ok: bool | None = None
    stopped: str | None = None  # why the pass stopped before its end
    resumed: bool = False
    messages: str = MESSAGES_NOTE

    def conclude(self, finished_at: str) -> None:
        """Mark the pass ended, successfully if nothing stopped it and nothing failed."""
        self.finished_at = finished_at
        self.ok = self.stopped is None and all(k.problems == 0 for k in self.entities.values())


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Report)


def encode(report: Report) -> bytes:
    """The report as JSON (what `--json` prints and the state keeps)."""
    return _encoder.encode(report)


def decode(data: bytes) -> Report:
    """A report `encode` wrote."""
    return _decoder.decode(data)


def render(report: Report) -> str:
    """The report as a few lines of text for a terminal."""
    header = ("entity", "read", "new", "changed", "unchanged", "gone", "problems")
    lines = ["{:<10} {:>7} {:>7} {:>7} {:>9} {:>5} {:>8}".format(*header)]
    for name, k in report.entities.items():
        lines.append(
            f"{name:<10} {k.read:>7} {k.new:>7} {k.changed:>7} {k.unchanged:>9} "
            f"{k.gone:>5} {k.problems:>8}"
        )
        lines.extend(f"  {name}: {note}" for note in k.notes)
        lines.extend(f"  {name}: problem: {text}" for text in k.problems_seen)
    if report.resumed:
        lines.append("this pass resumed one that had stopped")
    if report.stopped:
        lines.append(f"stopped: {report.stopped}")
    lines.append(f"note: {report.messages}")
    lines.append("sync " + ("complete" if report.ok else "did NOT complete cleanly"))
    return "\n".join(lines)


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


@contextlib.contextmanager
def exclusive(settings: Settings) -> Iterator[None]:
    """Hold the data directory's sync lock; a second sync refuses at once."""
    busy = SyncBusyError(f"another sync is running on {settings.data_dir}; wait for it to finish")
    with holding(settings.sync_lock_path, busy):
        yield


class SyncState:
    """The cursor, the ids seen by the pass in progress, and the finished passes."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, path: Path) -> SyncState:
        """Open (or create, private to its user) the state file at `path` (`sync.db`)."""
        # `connect` creates a new database file private to its user.
        conn = connect(path, synchronous="NORMAL", timeout_seconds=30)
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
        return cursor, decode(found[4])

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
                (report.finished_at, int(bool(report.ok)), encode(report)),
            )

    def keep_stopped(self, report: Report) -> None:
        """A pass that stopped early: keep its cursor to resume, and record the outcome."""
        assert report.finished_at is not None  # noqa: S101 - concluded by the caller
        with write_transaction(self._conn) as conn:
            conn.execute("UPDATE pass SET report = ?", (encode(report),))
            conn.execute(
                "INSERT INTO runs (finished_at, ok, report) VALUES (?, 0, ?)",
                (report.finished_at, encode(report)),
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
                encode(report),
            ),
        )


def last_run(path: Path) -> Report | None:
    """The report of the last pass that ended (completed or stopped), read-only.

    None when no pass has ended, or there is no state file yet (nothing is created).
    """
    if not path.exists():
        return None
    conn = connect_read_only(path)
    try:
        row = conn.execute("SELECT report FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.OperationalError:  # the tables are not there yet
        return None
    finally:
        conn.close()
    return None if row is None else decode(row[0])
