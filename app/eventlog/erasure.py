"""Erasure (SPEC §9): a person's values in a body, redacting and scrubbing, and the screen.

The log keeps personal data forever by design; `forget` is the one sanctioned path
around its immutability, and this module is what it, the sweep of `serve` and every
projector share:
- which values of a body are a person's (`redact`, `phones_in`): names, email, phone
  numbers and image URL of a customer, every field but `id` of their addresses, of an
  order's `customer` and of its shipping (and billing) address, and a message's `from`,
  `to` and `body`. Redacting sets exactly those to `null`; ids, amounts, statuses, tags,
  timestamps and the structure stay, so a redacted body still projects to the same rows
  with their personal columns NULL. Snapshots of the sync are the entities as the Open
  API returns them, with the same field names, and are redacted by the same rules.
- the audit trail, in append-only tables of `events.db` that hold no personal value
  (their DDL and the trigger that lets a recorded redaction through are in
  `app.eventlog.schema`): `forget_records` (each forget or sweep: when, the customer id,
  how many events of each type, the reason), `redactions` (the rows whose payload was
  redacted, and by which record; NULL: the row came redacted from an export),
  `forgotten_entities` (the ids whose later deliveries are redacted too) and
  `forget_sweeps` (how far the sweep has looked) and `forget_completions` (each record
  whose values are gone from the tables and the files too: the log's rewrite and those
  are separate commits, so a killed forget leaves a pending record, which the next
  forget, sweep or `serve` start completes).
- `Screen`: a delivery about a forgotten person may arrive after `forget`. The endpoint
  stores it as received, so that its hot path stays as it is, and the sweep redacts it
  in the log within the hour; meanwhile every projector reads events through a
  `Screen`, so such a delivery never brings the person's values into the tables, and a
  rebuild (which screens the same way) still equals the live tables. A log nobody was
  forgotten in costs one indexed query per step.
- `scrub`: SQLite keeps what a row held before an UPDATE or DELETE: in the page's free
  space, on freelist pages, in stale copies a page split left behind, and in the WAL's
  frames until the WAL is truncated. `PRAGMA secure_delete` zeroes what a statement
  frees, but not the copies earlier statements left. So, after the rewrite (made with
  `secure_delete` on): `VACUUM` rebuilds every page of the file from its live rows
  alone, and a `wal_checkpoint(TRUNCATE)` copies those pages into the file and cuts the
  WAL to zero bytes. The checkpoint waits (the connection's busy timeout) for readers
  still reading an older snapshot; a reader that holds one longer leaves the old frames
  in the WAL, and `scrub` says so rather than claim success.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from app.sqlite import write_transaction

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from app.eventlog.rows import StoredEvent

CUSTOMER_TYPES = frozenset(
    {
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "customer.snapshot",
        "customer.gone",
    }
)
ORDER_TYPES = frozenset({"order.created", "order.updated", "order.snapshot"})
MESSAGE_TYPES = frozenset({"message.received", "message.status.updated"})

# Where each kind of body names its entity (the same paths the projections key on).
CUSTOMER_KEY = "$.id"
ORDER_KEY = "$.id"
ORDER_CUSTOMER_KEY = "$.customer.id"
MESSAGE_KEY = "$.messageId"

_CUSTOMER_FIELDS = ("email", "phoneNumber", "firstName", "lastName", "imageUrl")
_ORDER_OBJECTS = ("customer", "shippingAddress", "billingAddress")
_MESSAGE_FIELDS = {"message.received": ("from", "body"), "message.status.updated": ("to",)}
# The one field of an embedded object or address that is not the person's.
_KEPT = "id"

_NOT_DIGITS = re.compile(r"\D")


def normalise_phone(text: object) -> str | None:
    """A phone number as digits with its country code, so `+62 812-345` and `0812345` meet.

    Indonesian numbers are written both ways: a leading `0` (a national number) becomes
    `62`. Anything with fewer than 6 digits is not taken for a phone number.
    """
    if not isinstance(text, str):
        return None
    digits = _NOT_DIGITS.sub("", text)
    if digits.startswith("0"):
        digits = "62" + digits[1:]
    return digits if len(digits) >= 6 else None


def phones_in(event_type: str, body: object) -> set[str]:
    """The normalised phone numbers a customer or order body holds for its person."""
    if not isinstance(body, dict):
        return set()
    found: list[object] = []
    if event_type in CUSTOMER_TYPES:
        found.append(body.get("phoneNumber"))
        addresses = body.get("addresses")
        if isinstance(addresses, list):
            found.extend(a.get("phone") for a in addresses if isinstance(a, dict))
    elif event_type in ORDER_TYPES:
        for name, field in (("customer", "phoneNumber"), ("shippingAddress", "phone")):
            embedded = body.get(name)
            if isinstance(embedded, dict):
                found.append(embedded.get(field))
    return {phone for value in found if (phone := normalise_phone(value))}


def decode(payload: bytes) -> Any:  # noqa: ANN401 - a JSON body is any JSON value
    """The body as Python values, or None when it is not JSON (it then holds nothing known)."""
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None


def redact(event_type: str, payload: bytes) -> bytes | None:
    """The body with its personal values set to null; None if it has none left to redact.

    Numbers keep their values and keys their order; only the personal values change
    (and the whitespace between tokens, which carries no meaning).
    """
    body = decode(payload)
    if not isinstance(body, dict) or not _redact_body(event_type, body):
        return None
    return msgspec.json.encode(body)


def _redact_body(event_type: str, body: dict[str, Any]) -> bool:
    """Null the personal values of `body` in place; whether any was not null already."""
    changed = False
    if event_type in CUSTOMER_TYPES:
        changed |= _null(body, _CUSTOMER_FIELDS)
        addresses = body.get("addresses")
        if isinstance(addresses, list):
            for address in addresses:
                changed |= _null_all_but_id(address)
    elif event_type in ORDER_TYPES:
        for name in _ORDER_OBJECTS:
            changed |= _null_all_but_id(body.get(name))
    else:
        changed |= _null(body, _MESSAGE_FIELDS.get(event_type, ()))
    return changed


def _null(body: dict[str, Any], fields: tuple[str, ...]) -> bool:
    changed = False
    for field in fields:
        if body.get(field) is not None:
            body[field] = None
            changed = True
    return changed


def _null_all_but_id(embedded: object) -> bool:
    if not isinstance(embedded, dict):
        return False
    return _null(embedded, tuple(key for key in embedded if key != _KEPT))


INSERT_REDACTION = (
    "INSERT OR IGNORE INTO redactions (position, forget_id, redacted_at) VALUES (?, ?, ?)"
)
UPDATE_PAYLOAD = "UPDATE events SET payload = ? WHERE position = ?"
COUNT_RECORDS = "SELECT COUNT(*) FROM forget_records"


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


# The event types of each kind of entity a forget names, to re-fold them by (type, key).
TYPES_OF_KIND = {"customer": CUSTOMER_TYPES, "order": ORDER_TYPES, "message": MESSAGE_TYPES}


def pending(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    """(id, customer id) of every forget record not completed yet, in order."""
    rows = conn.execute(
        "SELECT id, customer_id FROM forget_records WHERE id NOT IN "
        "(SELECT forget_id FROM forget_completions) ORDER BY id"
    )
    return [(int(forget_id), str(customer_id)) for forget_id, customer_id in rows]


def complete(conn: sqlite3.Connection, forget_ids: Iterable[int], at: str) -> None:
    """Record that these forgets' values are gone from the tables and files as well."""
    with write_transaction(conn):
        conn.executemany(
            "INSERT OR IGNORE INTO forget_completions (forget_id, completed_at) VALUES (?, ?)",
            [(forget_id, at) for forget_id in forget_ids],
        )


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


def count_completed(conn: sqlite3.Connection) -> int:
    """How many forgets are complete: their values gone from projections.db as well."""
    return int(conn.execute("SELECT COUNT(*) FROM forget_completions").fetchone()[0])


def count_records(conn: sqlite3.Connection) -> int:
    """How many forget records the log holds (`status` shows it)."""
    return int(conn.execute(COUNT_RECORDS).fetchone()[0])


class _Names(msgspec.Struct):
    """What a body says about whom: the only fields a screen reads."""

    id: Any = None
    messageId: Any = None  # noqa: N815 - the body's own name
    customer: Any = None


_names = msgspec.json.Decoder(_Names)


class ForgottenEntities(Protocol):
    """Where a screen learns whom a forget named (the log's reader)."""

    def forgotten_entities(self, after_row: int = 0) -> list[tuple[int, str, str]]:
        """(rowid, kind, key) of the forgotten entities added after `after_row`."""
        ...


class Screen:
    """Redacts the events about the forgotten entities the log knows, as they are read."""

    def __init__(self, store: ForgottenEntities) -> None:
        self._store = store
        self._last_row = 0
        self._keys: dict[str, set[str]] = {"customer": set(), "order": set(), "message": set()}

    def screen(self, events: Sequence[StoredEvent]) -> Sequence[StoredEvent]:
        """`events`, those about a forgotten entity with their personal values nulled."""
        for row, kind, key in self._store.forgotten_entities(self._last_row):
            self._keys[kind].add(key)
            self._last_row = row
        if not self._keys["customer"]:
            return events
        return [self._screened(event) for event in events]

    def _screened(self, event: StoredEvent) -> StoredEvent:
        if not self.concerns(event.event_type, event.payload):
            return event
        redacted = redact(event.event_type, event.payload)
        return event if redacted is None else msgspec.structs.replace(event, payload=redacted)

    def concerns(self, event_type: str, payload: bytes) -> bool:
        """Whether a body of `event_type` is about an entity a forget named."""
        if not (
            event_type in CUSTOMER_TYPES or event_type in ORDER_TYPES or event_type in MESSAGE_TYPES
        ):
            return False
        try:
            names = _names.decode(payload)
        except msgspec.DecodeError:
            return False  # not JSON: nothing a projection could show
        keys = self._keys
        if event_type in CUSTOMER_TYPES:
            return _among(names.id, keys["customer"])
        if event_type in ORDER_TYPES:
            customer = names.customer
            return _among(names.id, keys["order"]) or (
                isinstance(customer, dict) and _among(customer.get("id"), keys["customer"])
            )
        return _among(names.messageId, keys["message"])


def _among(value: object, keys: set[str]) -> bool:
    return isinstance(value, str) and value in keys


# What a rewrite may need beyond the copies of the file: the forget's own transaction in
# the WAL, and deliveries a `serve` beside it commits meanwhile.
SCRUB_HEADROOM_BYTES = 8 * 1024 * 1024


def scrub_space(path: Path) -> int:
    """The free bytes `scrub` of the database at `path` needs on its disk, at most.

    VACUUM builds the new file in a temporary database (in SQLite's temporary directory)
    and then writes all of it through the WAL before the checkpoint copies it back: about
    the file's size in the WAL, and as much again where the temporary directory is on the
    same disk, plus the WAL it already has and some headroom.
    """
    size = sum(_size(path.with_name(path.name + suffix)) for suffix in ("", "-wal"))
    copies = 2 if _same_disk(path.parent, sqlite_temp_dir()) else 1
    return copies * size + size // 10 + SCRUB_HEADROOM_BYTES


# SQLite's own fallbacks (os_unix.c), only looked at to know which disk they are on.
_SQLITE_TEMP_DIRS = ("/var/tmp", "/usr/tmp", "/tmp")  # noqa: S108


def sqlite_temp_dir() -> Path:
    """Where SQLite writes temporary files on Unix: the first of these that is a directory."""
    candidates = [os.environ.get("SQLITE_TMPDIR"), os.environ.get("TMPDIR"), *_SQLITE_TEMP_DIRS]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return Path()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _same_disk(first: Path, second: Path) -> bool:
    return first.stat().st_dev == second.stat().st_dev


def disk_full(exc: BaseException) -> bool:
    """Whether SQLite failed for want of space (SQLITE_FULL)."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


TRUNCATE_SECONDS = 30.0
RETRY_SECONDS = 0.05


class ScrubError(Exception):
    """The WAL could not be truncated: a reader holds an old snapshot of the file."""


def secure(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Make `conn` zero whatever its statements free (content, then freelist pages)."""
    conn.execute("PRAGMA secure_delete = ON")
    return conn


def scrub(conn: sqlite3.Connection, name: str) -> None:
    """Rebuild the file of `conn` from its live rows, then empty its WAL.

    Holds the file's write lock for as long as VACUUM takes: writers wait meanwhile.
    """
    secure(conn)
    conn.execute("VACUUM")
    truncate_wal(conn, name)


def truncate_wal(conn: sqlite3.Connection, name: str, seconds: float = TRUNCATE_SECONDS) -> None:
    """Checkpoint the whole WAL into the file and cut the WAL to zero bytes.

    A checkpoint another connection runs at that moment (an automatic one) makes SQLite
    answer busy at once, without waiting, so it is tried again until `seconds` are up.
    """
    deadline = time.monotonic() + seconds
    while conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
        if time.monotonic() > deadline:
            raise ScrubError(
                f"{name}: another connection keeps reading an old snapshot, so its WAL still "
                "holds the old content; close long-running readers (sqlite3 shells) and run "
                "forget again"
            )
        time.sleep(RETRY_SECONDS)  # a pause between attempts, not a synchronisation
