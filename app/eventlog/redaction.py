"""The one sanctioned path around the log's immutability: audited redaction (SPEC §9).

Four append-only tables of `events.db` hold it, none with a personal value in it:
- `forget_records`: each forget (and each sweep that redacted later deliveries): when,
  the customer id, how many events of each type, the reason;
- `redactions`: the rows of `events` whose payload was redacted, and by which record
  (NULL: the row came redacted from an export);
- `forgotten_entities`: the ids (customer, orders, messages) whose later deliveries are
  redacted too, by the projector at once and in the log by the sweep;
- `forget_sweeps`: how far the sweep has looked.

The trigger on `events` lets exactly one UPDATE through: of the payload alone, to valid
JSON, of a row that a `redactions` row names. It checks that itself; there is no switch
that turns it off. Every other UPDATE and every DELETE still fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from app.eventlog.rows import StoredEvent
from app.sqlite import write_transaction

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Mapping

# Earlier releases refused every UPDATE with this trigger; it is replaced on first open.
OLD_UPDATE_TRIGGER = "events_refuse_update"
UPDATE_TRIGGER = "events_refuse_update_unless_redacted"

_APPEND_ONLY = """
CREATE TRIGGER IF NOT EXISTS {table}_refuse_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only: its rows cannot be updated'); END;
CREATE TRIGGER IF NOT EXISTS {table}_refuse_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only: its rows cannot be deleted'); END;
"""
_TABLES = """
CREATE TABLE IF NOT EXISTS forget_records (
    id INTEGER PRIMARY KEY,
    forgotten_at TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('forget', 'sweep')),
    events TEXT NOT NULL,
    reason TEXT NOT NULL,
    head INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS redactions (
    position INTEGER PRIMARY KEY,
    forget_id INTEGER,
    redacted_at TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS forgotten_entities (
    kind TEXT NOT NULL CHECK (kind IN ('customer', 'order', 'message')),
    key TEXT NOT NULL,
    forget_id INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
) STRICT;
CREATE TABLE IF NOT EXISTS forget_sweeps (
    id INTEGER PRIMARY KEY,
    swept_at TEXT NOT NULL,
    head INTEGER NOT NULL
) STRICT;
"""
DDL = _TABLES + "".join(
    _APPEND_ONLY.format(table=table)
    for table in ("forget_records", "redactions", "forgotten_entities", "forget_sweeps")
)
# The columns a redaction leaves as they were: all but the payload.
_KEPT_COLUMNS = tuple(name for name in StoredEvent.__struct_fields__ if name != "payload")
EVENTS_UPDATE_TRIGGER = f"""
CREATE TRIGGER IF NOT EXISTS {UPDATE_TRIGGER} BEFORE UPDATE ON events
WHEN NOT EXISTS (SELECT 1 FROM redactions WHERE redactions.position = OLD.position)
    OR {" OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in _KEPT_COLUMNS)}
    OR NOT json_valid(CAST(NEW.payload AS TEXT))
BEGIN SELECT RAISE(ABORT, 'the event log is append-only: events cannot be updated, \
except the payload of a row named in redactions (python -m app forget)'); END;
"""

INSERT_REDACTION = (
    "INSERT OR IGNORE INTO redactions (position, forget_id, redacted_at) VALUES (?, ?, ?)"
)
UPDATE_PAYLOAD = "UPDATE events SET payload = ? WHERE position = ?"
COUNT_RECORDS = "SELECT COUNT(*) FROM forget_records"


def install(conn: sqlite3.Connection) -> None:
    """Create the tables and the trigger; replace an earlier release's trigger in one step.

    The new trigger exists before the old one goes, so at no moment may an UPDATE pass.
    """
    conn.executescript(DDL)
    conn.executescript(EVENTS_UPDATE_TRIGGER)
    if _has_trigger(conn, OLD_UPDATE_TRIGGER):
        with write_transaction(conn):
            conn.execute(f"DROP TRIGGER IF EXISTS {OLD_UPDATE_TRIGGER}")


def _has_trigger(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def add_record(  # noqa: PLR0913 - the columns of one record
    conn: sqlite3.Connection,
    *,
    at: str,
    customer_id: str,
    kind: str,
    counts: Mapping[str, int],
    reason: str,
    head: int,
) -> int:
    """Append a forget record (inside the caller's transaction); return its id.

    `head` is the log's head it looked up to: a sweep looks only after it.
    """
    events = msgspec.json.encode(dict(sorted(counts.items()))).decode()
    cursor = conn.execute(
        "INSERT INTO forget_records (forgotten_at, customer_id, kind, events, reason, head) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (at, customer_id, kind, events, reason, head),
    )
    return int(cursor.lastrowid or 0)


def redact_rows(
    conn: sqlite3.Connection, forget_id: int | None, at: str, rows: Iterable[tuple[int, bytes]]
) -> None:
    """Name each (position, redacted payload) in `redactions`, then rewrite its payload."""
    rows = list(rows)
    conn.executemany(INSERT_REDACTION, [(position, forget_id, at) for position, _ in rows])
    conn.executemany(UPDATE_PAYLOAD, [(payload, position) for position, payload in rows])


def remember_entities(
    conn: sqlite3.Connection, forget_id: int, entities: Iterable[tuple[str, str]]
) -> None:
    """Add (kind, key) pairs whose later deliveries are to be redacted too."""
    conn.executemany(
        "INSERT OR IGNORE INTO forgotten_entities (kind, key, forget_id) VALUES (?, ?, ?)",
        [(kind, key, forget_id) for kind, key in entities],
    )


def forgotten_entities(conn: sqlite3.Connection, after_row: int = 0) -> list[tuple[int, str, str]]:
    """(rowid, kind, key) of the forgotten entities added after `after_row`, in order."""
    rows = conn.execute(
        "SELECT rowid, kind, key FROM forgotten_entities WHERE rowid > ? ORDER BY rowid",
        (after_row,),
    )
    return [(int(row), str(kind), str(key)) for row, kind, key in rows]


def entities_of(conn: sqlite3.Connection, customer_id: str) -> set[tuple[str, str]]:
    """The (kind, key) pairs earlier forgets of `customer_id` named."""
    rows = conn.execute(
        "SELECT e.kind, e.key FROM forgotten_entities AS e "
        "JOIN forget_records AS r ON r.id = e.forget_id WHERE r.customer_id = ?",
        (customer_id,),
    )
    return {(str(kind), str(key)) for kind, key in rows}


def forgotten_customers(conn: sqlite3.Connection) -> list[str]:
    """Every customer id a forget record names, in id order."""
    rows = conn.execute("SELECT DISTINCT customer_id FROM forget_records ORDER BY customer_id")
    return [str(customer_id) for (customer_id,) in rows]


def swept_to(conn: sqlite3.Connection, customer_id: str) -> int:
    """The log position up to which the deliveries about `customer_id` were looked at."""
    row = conn.execute(
        "SELECT MAX(COALESCE((SELECT MAX(head) FROM forget_sweeps), 0), "
        "COALESCE((SELECT MAX(head) FROM forget_records WHERE customer_id = ?), 0))",
        (customer_id,),
    ).fetchone()
    return int(row[0])


def add_sweep(conn: sqlite3.Connection, at: str, head: int) -> None:
    """Record that a sweep looked at every delivery up to `head`."""
    conn.execute("INSERT INTO forget_sweeps (swept_at, head) VALUES (?, ?)", (at, head))


def mark_imported(conn: sqlite3.Connection, webhook_ids: Iterable[str]) -> int:
    """Name imported rows that were exported redacted (no forget record of this log)."""
    ids = msgspec.json.encode(sorted(set(webhook_ids))).decode()
    with write_transaction(conn):
        cursor = conn.execute(
            "INSERT OR IGNORE INTO redactions (position, forget_id, redacted_at) "
            "SELECT position, NULL, received_at FROM events "
            "WHERE webhook_id IN (SELECT value FROM json_each(?))",
            (ids,),
        )
    return cursor.rowcount


def redacted_positions(conn: sqlite3.Connection) -> set[int]:
    """The positions of every redacted row (export marks them)."""
    return {int(p) for (p,) in conn.execute("SELECT position FROM redactions")}


def count_records(conn: sqlite3.Connection) -> int:
    """How many forget records the log holds (`status` shows it)."""
    return int(conn.execute(COUNT_RECORDS).fetchone()[0])
