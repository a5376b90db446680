"""`forget`: erase a person's personal values from the log, the tables and the files.

Finding: their customer events and snapshots (by id); every event of each order whose
`customer.id` is theirs (an `order.updated` without the customer is still their order);
every event of each message from or to one of their phone numbers (every `phoneNumber`
and address `phone` of their customer and order events, plus `--phone`, compared as
`erasure.normalise_phone` writes them). The same search over the conflicting
duplicates kept aside.

Erasing, in this order, holding the rebuild lock (so no rebuild copies the log meanwhile):
1. in one transaction of `events.db`: a forget record, a `redactions` row per rewritten
   event, the rewritten payloads and conflicting duplicates, and the entities to keep
   forgotten (the search runs again inside it for events that arrived meanwhile);
2. the entities are deleted from the projections and folded again from the redacted
   log (`app.projection.projector.refold`), so the tables equal a rebuild;
3. both files are scrubbed (`app.eventlog.erasure.scrub`: VACUUM, WAL truncated) and leftover
   rebuild scratch files removed;
4. the record's completion is written to `events.db`.

Steps 2 to 4 commit apart from step 1 (two files cannot commit together in WAL mode). A
forget killed between them leaves its record pending (no completion): the values are
gone from the log, but maybe not from the tables and the files. The next forget, the
sweep (which `serve` runs at start) and `finish` complete every pending record first,
re-folding all the entities of its person (idempotent) and scrubbing; `status` counts
them meanwhile.

Deliveries arriving meanwhile wait for step 1 and for the VACUUM of `events.db` (the
log's write lock); none fails unless that takes longer than the writer's busy timeout
(30 s), which a log of about ten million events would need.

The same function runs the sweep (`kind="sweep"`): it looks at the deliveries since the
last sweep for every forgotten customer and redacts those about them. `serve` runs it
in the background (`sweeping`): the endpoint stores every authentic delivery as received
(its hot path does not look inside bodies), and the projectors screen deliveries about
forgotten entities before they reach the tables (`app.eventlog.erasure.Screen`); what
remains is the log itself. Every `SWEEP_SECONDS` the sweep runs over the deliveries
since the last sweep, so a later delivery stays in the log for at most that long plus
one sweep, well within the hour SPEC §9 allows. A log without forget records costs one
query per sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shlex
import shutil
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from sqlite3 import connect
from typing import TYPE_CHECKING

import msgspec
import structlog

from app import children
from app.eventlog import erasure
from app.eventlog.erasure import ScrubError, scrub, secure, truncate_wal
from app.eventlog.reads import LogReader
from app.eventlog.schema import BUSY_TIMEOUT_MS, open_log
from app.instants import format_instant
from app.projection import projector
from app.projection.projector import StaleProjectionError, refold, stale_names
from app.projection.rebuild import (
    RebuildError,
    exclusive,
    remove_scratch_leftovers,
    remove_scratch_leftovers_unless_busy,
)
from app.projection.recovery import diagnose, head_of
from app.sqlite import rollback_if_open, write_transaction

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
    from pathlib import Path

    from app.settings import Settings
    from projections import Projection

log = structlog.get_logger("app.ops.forget")

SWEEP_SECONDS = 600.0
_TEXT = "CAST(payload AS TEXT)"
_KINDS = (
    ("customer", erasure.CUSTOMER_TYPES, erasure.CUSTOMER_KEY),
    ("order", erasure.ORDER_TYPES, erasure.ORDER_KEY),
    ("message", erasure.MESSAGE_TYPES, erasure.MESSAGE_KEY),
)


class ForgetError(Exception):
    """Forget cannot go ahead (or could not finish); the message says why and what to do."""


@dataclasses.dataclass(frozen=True, slots=True)
class FoundRow:
    """One stored row about the person: where it is, what it is, and its redacted body."""

    row: int  # the position in `events`, or the id in `conflicting_duplicates`
    event_type: str
    kind: str
    key: str
    redacted: bytes | None  # None: nothing personal left in it


@dataclasses.dataclass(slots=True)
class Plan:
    """Everything stored about one person up to `head`."""

    customer_id: str
    head: int
    events: list[FoundRow]
    conflicts: list[FoundRow]

    def counts(self) -> dict[str, int]:
        """How many events of each type are about them (redacted now or before)."""
        counts: dict[str, int] = {}
        for found in self.events:
            counts[found.event_type] = counts.get(found.event_type, 0) + 1
        return dict(sorted(counts.items()))

    def to_redact(self) -> int:
        """How many events still hold a personal value."""
        return sum(found.redacted is not None for found in self.events)

    def entities(self) -> set[tuple[str, str]]:
        """The (kind, key) pairs whose later deliveries are redacted too."""
        return {(f.kind, f.key) for f in self.events} | {("customer", self.customer_id)}


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """What one forget (or sweep) did."""

    plan: Plan
    redacted: int
    conflicts: int
    refolded: int
    seconds: float


def find(
    conn: sqlite3.Connection,
    customer_id: str,
    phones: Iterable[str] = (),
    *,
    after: int = 0,
) -> Plan:
    """Every row after `after` about `customer_id` and `phones` (and earlier forgets' ids)."""
    conn.create_function("forget_phone", 1, erasure.normalise_phone, deterministic=True)
    head = int(conn.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0])
    known = _earlier_entities(conn, customer_id)
    orders = known["order"] | _keys(
        conn, erasure.ORDER_TYPES, erasure.ORDER_KEY, f"json_extract({_TEXT}, ?) = ?",
        (erasure.ORDER_CUSTOMER_KEY, customer_id), after=after,
    )  # fmt: skip
    numbers = {n for phone in phones if (n := erasure.normalise_phone(phone))}
    for event_type, payload in _rows_about(conn, customer_id, orders, after):
        numbers |= erasure.phones_in(event_type, erasure.decode(payload))
    phone_of = f"forget_phone(json_extract({_TEXT}, ?)) IN (SELECT value FROM json_each(?))"
    phone_list = _json(numbers)
    messages = known["message"] | _keys(
        conn, erasure.MESSAGE_TYPES, erasure.MESSAGE_KEY, f"{phone_of} OR {phone_of}",
        ("$.from", phone_list, "$.to", phone_list), after=after,
    )  # fmt: skip
    where, params = _about(customer_id, orders, messages)
    events = _found(conn, "position", "events", where, params, after=after)
    # A duplicate kept aside is about them if its own body is, or the row it duplicates.
    where += " OR logged_position IN (SELECT value FROM json_each(?))"
    params.append(_json(str(f.row) for f in events))
    conflicts = _found(conn, "id", "conflicting_duplicates", where, params, after=0)
    return Plan(customer_id=customer_id, head=head, events=events, conflicts=conflicts)


def _earlier_entities(conn: sqlite3.Connection, customer_id: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"customer": set(), "order": set(), "message": set()}
    if _has_table(conn, "forgotten_entities"):
        for kind, key in erasure.entities_of(conn, customer_id):
            found[kind].add(key)
    return found


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    return row is not None


def _json(values: Iterable[str]) -> str:
    return msgspec.json.encode(sorted(values)).decode()


def _keys(  # noqa: PLR0913 - one query's parts
    conn: sqlite3.Connection,
    types: frozenset[str],
    key_path: str,
    where: str,
    params: Sequence[object],
    *,
    after: int,
) -> set[str]:
    """The entity keys of the events of `types` after `after` that `where` selects."""
    marks = ",".join("?" * len(types))
    rows = conn.execute(
        f"SELECT DISTINCT json_extract({_TEXT}, ?) FROM events WHERE position > ? "
        f"AND event_type IN ({marks}) AND json_valid({_TEXT}) AND ({where})",
        (key_path, after, *sorted(types), *params),
    )
    return {key for (key,) in rows if isinstance(key, str)}


def _about(customer_id: str, orders: set[str], messages: set[str]) -> tuple[str, list[object]]:
    """A WHERE clause (and its parameters) selecting every event about the person."""
    clauses = []
    params: list[object] = []
    for kind, types, key_path in _KINDS:
        keys = {"customer": {customer_id}, "order": orders, "message": messages}[kind]
        marks = ",".join("?" * len(types))
        clauses.append(
            f"(event_type IN ({marks}) AND json_valid({_TEXT}) "
            f"AND json_extract({_TEXT}, ?) IN (SELECT value FROM json_each(?)))"
        )
        params.extend([*sorted(types), key_path, _json(keys)])
    return " OR ".join(clauses), params


def _rows_about(
    conn: sqlite3.Connection, customer_id: str, orders: set[str], after: int
) -> Iterator[tuple[str, bytes]]:
    """The customer's own events and their orders' events: where their phones are."""
    where, params = _about(customer_id, orders, set())
    yield from conn.execute(
        f"SELECT event_type, payload FROM events WHERE position > ? AND ({where})",
        (after, *params),
    )


def _found(  # noqa: PLR0913 - one query's parts
    conn: sqlite3.Connection,
    row_column: str,
    table: str,
    where: str,
    params: Sequence[object],
    *,
    after: int,
) -> list[FoundRow]:
    rows = conn.execute(
        f"SELECT {row_column}, event_type, payload FROM {table} "
        f"WHERE {row_column} > ? AND ({where}) ORDER BY {row_column}",
        (after, *params),
    )
    found = []
    for row, event_type, payload in rows:
        kind, key_path = next((kind, path) for kind, types, path in _KINDS if event_type in types)
        key = _key_of(erasure.decode(payload), key_path)
        found.append(FoundRow(row, event_type, kind, key, erasure.redact(event_type, payload)))
    return found


def _key_of(body: object, key_path: str) -> str:
    value = body.get(key_path.removeprefix("$.")) if isinstance(body, dict) else None
    return value if isinstance(value, str) else ""


def plan(settings: Settings, customer_id: str, phones: Sequence[str]) -> Plan:
    """What forgetting `customer_id` would change, read without writing a byte.

    An id no customer or order event names is an error: a typo must not look like success.
    """
    settings.require_event_log()
    conn = _read_only(settings)
    try:
        found = find(conn, customer_id, phones)
    finally:
        conn.close()
    if not any(f.kind in {"customer", "order"} for f in found.events):
        raise ForgetError(
            f"no customer or order event in the log names customer {customer_id!r}; "
            "nothing was changed (find the id with the SQL in the README)"
        )
    return found


def _read_only(settings: Settings) -> sqlite3.Connection:
    """A connection that only reads: not `open_log`, which would bring an old log up to date.

    Not `mode=ro` either: a read-only connection cannot remove the `-wal` and `-shm`
    files it opened when it closes, and they would be left behind.
    """
    return connect(settings.events_path, timeout=BUSY_TIMEOUT_MS / 1000)


def forget(  # noqa: PLR0913 - what to forget, why, and how
    settings: Settings,
    projections: Sequence[Projection],
    customer_id: str,
    phones: Sequence[str] = (),
    reason: str = "",
    *,
    kind: str = "forget",
    after: int = 0,
) -> Report:
    """Redact everything about the person after `after`, in the log, tables and files.

    The record and the log's rewrite commit together; the tables and the files follow in
    commits of their own, and the completion is recorded last. Killed in between, the
    record stays pending, and this (or the sweep) completes it first thing next time.
    """
    started = time.monotonic()
    with _locked(settings):
        remove_scratch_leftovers(settings)
        if kind == "forget":
            _refuse_unreachable_copies(settings)
            _refuse_stale(settings, projections)
        else:
            # A sweep redacts later deliveries, which a stale projection never applied
            # (serve leaves it alone until a rebuild, which screens them): its tables
            # hold none of them, and the others are re-folded as usual.
            projections = _current(settings, projections)
        require_space(settings)
        conn = secure(open_log(settings.events_path))
        try:
            with _space_given_back(settings, conn):
                _complete_pending(settings, projections, conn)
                with write_transaction(conn):
                    found = find(conn, customer_id, phones, after=after)
                    forget_id, redacted = _record(conn, found, reason, kind)
                reached("recorded")
                # A sweep that found nothing new recorded nothing, and has nothing to finish.
                refolded = 0
                if forget_id is not None:
                    refolded = _refold(settings, projections, _named(found))
                    reached("refolded")
                    _scrub(settings, conn)
                    reached("scrubbed")
                    _completed(conn, [forget_id])
        finally:
            conn.close()
    return Report(
        plan=found,
        redacted=redacted,
        conflicts=sum(f.redacted is not None for f in found.conflicts),
        refolded=refolded,
        seconds=time.monotonic() - started,
    )


def reached(step: str) -> None:
    """A forget has committed `step` (`recorded`, `refolded`, `scrubbed`); does nothing.

    The one place the crash tests kill a forget at, to see the next run complete it.
    """


def finish(settings: Settings, projections: Sequence[Projection]) -> int:
    """Complete the forgets a killed forget or sweep left pending; how many there were."""
    with _locked(settings):
        conn = open_log(settings.events_path)
        try:
            if not erasure.pending(conn):
                return 0
        finally:
            conn.close()
        remove_scratch_leftovers(settings)
        require_space(settings)
        conn = secure(open_log(settings.events_path))
        try:
            with _space_given_back(settings, conn):
                return _complete_pending(settings, _current(settings, projections), conn)
        finally:
            conn.close()


def _complete_pending(
    settings: Settings, projections: Sequence[Projection], conn: sqlite3.Connection
) -> int:
    """Re-fold every entity of the pending forgets' people, scrub, and record them complete.

    Their log rows are redacted already (that commit made the record), so folding their
    entities again from the log, which is idempotent, brings the tables to what a
    rebuild would hold. Holding the rebuild lock.
    """
    waiting = erasure.pending(conn)
    if not waiting:
        return 0
    named = [
        (event_type, key)
        for customer_id in sorted({customer for _, customer in waiting})
        for kind, key in erasure.entities_of(conn, customer_id)
        for event_type in erasure.TYPES_OF_KIND[kind]
    ]
    _refold(settings, projections, named)
    _scrub(settings, conn)
    _completed(conn, [forget_id for forget_id, _ in waiting])
    # Ids and counts only: the values themselves are gone.
    log.info("forget_completed", records=len(waiting))
    return len(waiting)


def free_bytes(directory: Path) -> int:
    """The bytes free for this user on the disk of `directory`."""
    return shutil.disk_usage(directory).free


def require_space(settings: Settings) -> None:
    """Refuse to start a rewrite the disk has no room for, in one sentence.

    A rewrite that filled the disk would fail halfway, and a `serve` beside it would
    answer 503 until someone freed space: better not to begin. Each file is rewritten
    in turn (the log's WAL is emptied before the tables' file is rewritten), so the
    larger need is what must be free.
    """
    paths = [settings.events_path]
    if settings.projections_path.exists():
        paths.append(settings.projections_path)
    need = max(erasure.scrub_space(path) for path in paths)
    free = free_bytes(settings.data_dir)
    if free < need:
        raise ForgetError(
            f"forget needs about {_mib(need)} free on the disk of {settings.data_dir} to "
            f"rewrite its databases (a copy of each and its WAL), and only {_mib(free)} is "
            f"free: free {_mib(need - free)} more and run forget again; nothing was changed"
        )


def _mib(size: int) -> str:
    return f"{-(-size // (1024 * 1024))} MiB"


@contextlib.contextmanager
def _space_given_back(settings: Settings, log_conn: sqlite3.Connection) -> Iterator[None]:
    """Should the rewrite fail (a disk filled by something else), empty both WALs anyway.

    A failed VACUUM leaves the WAL as long as what it had written: truncating it gives
    the space back, so the disk is never left fuller than the forget found it. A full
    disk is then said in one sentence; a recorded forget stays pending, to be completed.
    """
    try:
        yield
    except BaseException as exc:
        _truncate_quietly(log_conn)
        if settings.projections_path.exists():
            conn = projector.connect(settings.projections_path)
            try:
                _truncate_quietly(conn)
            finally:
                conn.close()
        if erasure.disk_full(exc):
            raise ForgetError(
                f"the disk of {settings.data_dir} filled up during forget, and the space "
                "it took was given back; free some space and run forget again (a forget "
                "already recorded is completed then, or by serve's next sweep)"
            ) from None
        raise


def _truncate_quietly(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        rollback_if_open(conn)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _completed(conn: sqlite3.Connection, forget_ids: Sequence[int]) -> None:
    """Record the completions, and leave no WAL behind (it held the scrubbed pages)."""
    erasure.complete(conn, forget_ids, format_instant(time.time()))
    try:
        truncate_wal(conn, "events.db")
    except ScrubError as exc:
        raise ForgetError(str(exc)) from None


def _named(found: Plan) -> list[tuple[str, str]]:
    """(event type, entity key) of every event the plan found: what to re-fold."""
    return [(f.event_type, f.key) for f in found.events]


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    try:
        with exclusive(settings):
            yield
    except RebuildError:
        raise ForgetError(
            f"a rebuild is running on {settings.data_dir}: its scratch copies hold the "
            "person's values; run forget again when it has finished"
        ) from None


def _refuse_unreachable_copies(settings: Settings) -> None:
    """Refuse while a projections.db that forget cannot rewrite holds the person's values.

    A damaged file (or one ahead of the log) is moved aside by `serve` and `rebuild`, never
    deleted; such a file could not be redacted exactly, and deleting it is the operator's
    decision, so forget names it rather than claim that no byte is left.
    """
    problem = diagnose(settings.projections_path, head_of(settings))
    if problem is not None:
        raise ForgetError(
            f"{problem.detail}: run rebuild first, which moves it aside and rebuilds it, "
            "then run forget again"
        )
    aside = sorted(settings.data_dir.glob(f"{settings.projections_path.name}.*"))
    if aside:
        names = " ".join(shlex.quote(str(path)) for path in aside)
        raise ForgetError(
            "projections.db files moved aside (damaged or ahead of the log) may hold the "
            f"person's values, which forget cannot reach: delete them (rm {names}) and run "
            "forget again"
        )


def _refuse_stale(settings: Settings, projections: Sequence[Projection]) -> None:
    if names := _stale_names(settings, projections):
        raise ForgetError(
            f"projections {', '.join(names)} are stale (built by another version): "
            "run rebuild first, so that their tables can be redacted exactly"
        )


def _current(settings: Settings, projections: Sequence[Projection]) -> list[Projection]:
    names = set(_stale_names(settings, projections))
    return [p for p in projections if p.NAME not in names]


def _stale_names(settings: Settings, projections: Sequence[Projection]) -> list[str]:
    if not settings.projections_path.exists():
        return []
    conn = projector.connect(settings.projections_path)
    try:
        return stale_names(conn, projections)
    finally:
        conn.close()


def _record(
    conn: sqlite3.Connection, found: Plan, reason: str, kind: str
) -> tuple[int | None, int]:
    """Write the record, the redactions and the entities; the record's id, and how many changed.

    The id is None when nothing was written: a sweep that found nothing new.
    """
    to_redact = [(f.row, f.redacted) for f in found.events if f.redacted is not None]
    if kind == "sweep" and not to_redact:
        return None, 0
    at = format_instant(time.time())
    forget_id = erasure.add_record(
        conn,
        at=at,
        customer_id=found.customer_id,
        kind=kind,
        counts=found.counts(),
        reason=reason,
        head=found.head,
    )
    erasure.redact_rows(conn, forget_id, at, to_redact)
    conn.executemany(
        "UPDATE conflicting_duplicates SET payload = ? WHERE id = ?",
        [(f.redacted, f.row) for f in found.conflicts if f.redacted is not None],
    )
    erasure.remember_entities(conn, forget_id, found.entities())
    return forget_id, len(to_redact)


def _refold(
    settings: Settings, projections: Sequence[Projection], named: list[tuple[str, str]]
) -> int:
    if not settings.projections_path.exists():
        return 0
    store = LogReader.open(settings.events_path)
    conn = secure(projector.connect(settings.projections_path))
    try:
        return refold(conn, store, projections, named)
    except StaleProjectionError as exc:
        raise ForgetError(str(exc)) from None
    finally:
        conn.close()
        store.close()


def _scrub(settings: Settings, log: sqlite3.Connection) -> None:
    """No byte left: both files rebuilt and their WALs emptied; scratch leftovers gone."""
    try:
        scrub(log, "events.db")
        if settings.projections_path.exists():
            conn = projector.connect(settings.projections_path)
            try:
                scrub(conn, "projections.db")
            finally:
                conn.close()
    except ScrubError as exc:
        raise ForgetError(str(exc)) from None
    # Held under the rebuild lock: any scratch file is a killed rebuild's leftover.
    remove_scratch_leftovers(settings)


def sweep(settings: Settings, projections: Sequence[Projection]) -> list[Report]:
    """Redact the deliveries about every forgotten customer that arrived since the last sweep.

    A forget (or sweep) left pending by a kill is completed first, even with nothing new.
    """
    finish(settings, projections)
    conn = open_log(settings.events_path)
    try:
        customers = erasure.forgotten_customers(conn)
        head = LogReader(conn).head()
        starts = {c: erasure.swept_to(conn, c) for c in customers}
    finally:
        conn.close()
    reports = [
        forget(settings, projections, customer, kind="sweep", after=after)
        for customer, after in starts.items()
        if after < head
    ]
    conn = open_log(settings.events_path)
    try:
        with write_transaction(conn):
            erasure.add_sweep(conn, format_instant(time.time()), head)
    finally:
        conn.close()
    return [report for report in reports if report.redacted]


def sweep_once(settings: Settings, projections: Sequence[Projection]) -> int:
    """One sweep, if anyone was forgotten; how many events it redacted.

    First, what a killed rebuild left is removed: its scratch files hold personal data,
    maybe of someone forgotten since (not while a rebuild is running: they are its own).
    """
    if removed := remove_scratch_leftovers_unless_busy(settings):
        log.info("rebuild_leftovers_removed", files=removed)
    conn = open_log(settings.events_path)
    try:
        if not erasure.count_records(conn):
            return 0
    finally:
        conn.close()
    reports = sweep(settings, projections)
    redacted = sum(report.redacted for report in reports)
    if redacted:
        # Counts and ids only: the values themselves are gone.
        log.info("forget_sweep", redacted=redacted, customers=len(reports))
    return redacted


@contextlib.asynccontextmanager
async def sweeping(
    settings: Settings, projections: Sequence[Projection], every: float = SWEEP_SECONDS
) -> AsyncIterator[None]:
    """Run a sweep now and every `every` seconds, on a thread, until the block exits."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forget-sweep")
    loop = asyncio.get_running_loop()

    async def run() -> None:
        while True:
            try:
                await loop.run_in_executor(executor, sweep_once, settings, projections)
            except ForgetError as exc:
                # A rebuild holds the lock: the next sweep picks up where this one would.
                log.warning("forget_sweep_postponed", reason=str(exc))
            except Exception:
                log.exception("forget_sweep_failed")
            await asyncio.sleep(every)

    try:
        async with children.in_background(run(), "forget-sweep"):
            yield
    finally:
        executor.shutdown(wait=True)
