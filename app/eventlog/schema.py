"""Every table of `events.db`, its triggers, and the moves from earlier releases' layout.

`open_log` is the one way into `events.db`: whoever opens it first creates it, or brings
an earlier release's file up to date, before anything reads or writes. `DESCRIPTIONS`
says what each table is for, beside its DDL (`explore` shows them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.eventlog.rows import StoredEvent
from app.files import make_private_dir
from app.sqlite import connect, write_transaction

if TYPE_CHECKING:
    import sqlite3
    from pathlib import Path

DDL = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    webhook_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    event_timestamp INTEGER,
    signed_at INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    signature TEXT NOT NULL,
    payload BLOB NOT NULL
) STRICT;
-- UPDATE is refused by the trigger below, which lets only a
-- recorded redaction of a payload through.
CREATE TRIGGER IF NOT EXISTS events_refuse_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only: events cannot be deleted'); END;

-- One row, rewritten by each readiness probe (`/readyz`): a committed write is the only
-- proof that the log takes writes.
CREATE TABLE IF NOT EXISTS write_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at TEXT NOT NULL,
    room BLOB NOT NULL
) STRICT;

-- Deliveries whose webhook id was already logged with a different body: never dropped
-- silently, but never allowed to change the log either.
CREATE TABLE IF NOT EXISTS conflicting_duplicates (
    id INTEGER PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    logged_position INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    event_timestamp INTEGER,
    signed_at INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    signature TEXT NOT NULL,
    payload BLOB NOT NULL
) STRICT;
"""

# The signature memory (`app.eventlog.store.SignatureMemory`): which event type each
# authentic digest is bound to, appended in log order and found by signing second.
DIGESTS_DDL = """
CREATE TABLE IF NOT EXISTS accepted_digests (
    signed_at INTEGER NOT NULL,
    digest TEXT NOT NULL,
    event_type TEXT NOT NULL,
    position INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS accepted_digests_by_signed_at ON accepted_digests (signed_at);
-- Append-only like the log itself; the memory below relies on rows never going away.
CREATE TRIGGER IF NOT EXISTS accepted_digests_refuse_update BEFORE UPDATE ON accepted_digests
BEGIN SELECT RAISE(ABORT, 'accepted digests are append-only: they cannot be updated'); END;
CREATE TRIGGER IF NOT EXISTS accepted_digests_refuse_delete BEFORE DELETE ON accepted_digests
BEGIN SELECT RAISE(ABORT, 'accepted digests are append-only: they cannot be deleted'); END;
"""
INSERT_DIGEST = (
    "INSERT INTO accepted_digests (signed_at, digest, event_type, position) VALUES (?, ?, ?, ?)"
)


# The audit trail of `forget` (`app.eventlog.erasure`): five append-only tables, none with
# a personal value in it. The trigger on `events` lets exactly one UPDATE through: of the
# payload alone, to valid JSON, of a row that a `redactions` row names. It checks that
# itself; there is no switch that turns it off. Every other UPDATE and every DELETE fails.
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
-- A forget record without a completion is pending: its rows are redacted in the log, but
-- the tables and the files may still hold the values until it is completed.
CREATE TABLE IF NOT EXISTS forget_completions (
    forget_id INTEGER PRIMARY KEY,
    completed_at TEXT NOT NULL
) STRICT;
"""
ERASURE_DDL = _TABLES + "".join(
    _APPEND_ONLY.format(table=table)
    for table in (
        "forget_records",
        "redactions",
        "forgotten_entities",
        "forget_sweeps",
        "forget_completions",
    )
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


_DELIVERY_COLUMNS = {
    "webhook_id": "X-BitByBit-Webhook-Id: the delivery's id, unique",
    "event_type": "X-BitByBit-Webhook-Event, e.g. order.updated",
    "event_timestamp": "X-BitByBit-Webhook-Timestamp (Unix seconds); NULL if absent",
    "signed_at": "t of the signature (Unix seconds)",
    "received_at": "when this service received it (UTC)",
    "signature": "the signature header as received, so the row can be re-verified",
    "payload": "the body, byte for byte (personal data); CAST(payload AS TEXT) to read it",
}
# Every table of the log, with the DDL above: what each holds and what each column
# means, for `explore` and for anyone
# reading the file.
TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "events": (
        "The log: every authentic delivery, kept forever, never changed.",
        {"position": "order of acceptance, strictly increasing", **_DELIVERY_COLUMNS},
    ),
    "conflicting_duplicates": (
        "Deliveries whose webhook id was already logged with a different body: kept aside.",
        {
            "id": "row number",
            "logged_position": "the logged delivery with the same id (events.position)",
            **_DELIVERY_COLUMNS,
        },
    ),
    "forget_records": (
        "One row per forget (and per sweep of later deliveries): the audit of erasures.",
        {
            "id": "row number",
            "forgotten_at": "when, ISO 8601 UTC",
            "customer_id": "the forgotten customer's id",
            "kind": "forget (the command) or sweep (later deliveries redacted by serve)",
            "events": "how many events of each type were redacted, as JSON",
            "reason": "the --reason given",
            "head": "the log's head position when it ran",
        },
    ),
    "redactions": (
        "Each log row whose body a forget rewrote; its signature no longer matches.",
        {
            "position": "the redacted delivery (events.position)",
            "forget_id": "the forget that rewrote it (forget_records.id)",
            "redacted_at": "when, ISO 8601 UTC",
        },
    ),
    "forgotten_entities": (
        "The customers, orders and messages that stay forgotten: later deliveries are redacted.",
        {
            "kind": "customer, order or message",
            "key": "the entity's id",
            "forget_id": "the forget that named it (forget_records.id)",
        },
    ),
    "forget_completions": (
        (
            "Each forget record whose values are gone from the tables and files too; a "
            "record without one is pending (a forget was killed), and is completed by the "
            "next forget, sweep or serve start."
        ),
        {
            "forget_id": "the record in forget_records",
            "completed_at": "when, ISO 8601 UTC",
        },
    ),
    "forget_sweeps": (
        "How far serve's sweep has looked for later deliveries about forgotten people.",
        {
            "id": "row number",
            "swept_at": "when, ISO 8601 UTC",
            "head": "the log position the sweep reached",
        },
    ),
    "accepted_digests": (
        (
            "Which event type each accepted signature came with, so a signature replayed "
            "under another event type is refused."
        ),
        {
            "signed_at": "t of the signature",
            "digest": "the matching v1 digest",
            "event_type": "the event type it was accepted with",
            "position": "the delivery (events.position)",
        },
    ),
    "write_probe": (
        "One row rewritten by each /readyz call: proof that the log takes writes.",
        {"id": "always 1", "probed_at": "when /readyz last wrote", "room": "a page of zeros"},
    ),
}
# The tables the service keeps for itself, which a person browsing the log rarely needs.
BOOKKEEPING = frozenset(
    {"write_probe", "accepted_digests", "redactions", "forgotten_entities", "forget_sweeps"}
)

# How long a writer waits for another one (an import, a backup) to release the log.
BUSY_TIMEOUT_MS = 30_000


def open_log(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open the log, creating it (and its directory) or bringing it up to date if needed.

    `synchronous=FULL` makes every commit reach the disk before it returns: the endpoint
    answers 200 only after that.
    """
    make_private_dir(path.parent)
    conn = connect(path, synchronous=synchronous, timeout_seconds=BUSY_TIMEOUT_MS / 1000)
    conn.executescript(DDL)
    conn.executescript(DIGESTS_DDL)
    _install_erasure(conn)
    _move_digests_of_earlier_releases(conn)
    return conn


def _move_digests_of_earlier_releases(conn: sqlite3.Connection) -> None:
    """Move a log's digests from the table earlier releases kept them in, in one transaction.

    That table was keyed by the digest (and by signing time before it); it has the
    digest, event type and position columns either way, and `signed_at` is taken from
    the event each row points at. The events themselves are never touched.
    """
    if not _has_old_digests(conn):
        return
    with write_transaction(conn):
        if _has_old_digests(conn):  # unless another process moved them meanwhile
            conn.execute(
                "INSERT INTO accepted_digests (signed_at, digest, event_type, position) "
                "SELECT events.signed_at, old.digest, old.event_type, old.position "
                "FROM signature_digests AS old JOIN events USING (position) "
                "ORDER BY old.position"
            )
            conn.execute("DROP TABLE signature_digests")


def _has_old_digests(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("PRAGMA table_info(signature_digests)").fetchall())


def _install_erasure(conn: sqlite3.Connection) -> None:
    """Create the tables and the trigger; replace an earlier release's trigger in one step.

    The new trigger exists before the old one goes, so at no moment may an UPDATE pass.
    """
    conn.executescript(ERASURE_DDL)
    conn.executescript(EVENTS_UPDATE_TRIGGER)
    if _has_trigger(conn, OLD_UPDATE_TRIGGER):
        with write_transaction(conn):
            conn.execute(f"DROP TRIGGER IF EXISTS {OLD_UPDATE_TRIGGER}")


def _has_trigger(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?", (name,)
    ).fetchone()
    return row is not None
