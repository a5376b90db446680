"""One sync pass: page through each entity type, append what was read, then find deletions.

For each entity type the pass walks the list (`limit=100` until `hasNextPage` is false)
and appends a snapshot of every entity; then it fetches, one by one, every entity the
log holds (not deleted) that the walk did not see. Offset paging over a list that
changes while it is read can skip an entity, so that step both heals skips and finds
deletions: only a 404 `NOT_FOUND` on the entity's own GET, after a complete walk,
appends a `*.gone`. Products have no documented list: where `GET /products` is not
found, every product id the log knows is fetched that way instead.

An entity becomes a row of the log as a snapshot (or a `*.gone`), with conventions
shared with the log, `export`/`import` and `events`: a row the service wrote itself is
unsigned (`signature` is the empty string, no digests); its event timestamp and signing
time are the moment it was read. Its webhook id is a hash of the event type, the entity
id and the body, so the same content read again collides with the row already logged
and the log's own duplicate rule makes a second pass over unchanged data add nothing.
The body is the entity as the API returned it, with its keys sorted and no whitespace:
the same content always makes the same bytes (and the same id), however the API formats
it. What the log already knows of an entity type (the ids it holds, which are deleted)
is read from the log itself, so the answer does not depend on whether the projections
are current.

After every page the log commits first, then the cursor (`state`): a killed pass, run
again, goes on from the page it had reached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import msgspec

from app.eventlog.rows import Delivery
from app.eventlog.store import Outcome, StoreUnavailableError
from app.instants import format_instant
from app.sqlite import connect_read_only
from app.sync.client import PAGE_SIZE, AccessDeniedError, ApiError, ApiUnavailableError
from app.sync.state import VERIFY, WALK, Cursor, KindReport, Report

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from app.eventlog.store import EventStore
    from app.sync.client import OpenApiClient, Page
    from app.sync.state import SyncState
    from app.terminal import Progress

UNSIGNED = ""
_id_only = msgspec.json.Decoder(dict[str, object])


@dataclasses.dataclass(frozen=True, slots=True)
class Kind:
    """One entity type of the API, and the event types its rows have in the log."""

    name: str  # as on the command line and in the report: "customers"
    singular: str  # as in event types: "customer"
    deletable: bool  # orders are never deleted (there is no `order.deleted`)

    @property
    def snapshot_type(self) -> str:
        """The event type of a snapshot of this entity."""
        return f"{self.singular}.snapshot"

    @property
    def gone_type(self) -> str:
        """The event type that says the API no longer has it."""
        return f"{self.singular}.gone"

    @property
    def event_types(self) -> tuple[str, ...]:
        """Every event type in the log about this entity, webhooks and sync alike."""
        s = self.singular
        return (f"{s}.created", f"{s}.updated", f"{s}.deleted", self.snapshot_type, self.gone_type)

    @property
    def deleted_types(self) -> tuple[str, ...]:
        """The event types that end an entity (deletion is final)."""
        return (f"{self.singular}.deleted", self.gone_type)


CUSTOMERS = Kind("customers", "customer", deletable=True)
ORDERS = Kind("orders", "order", deletable=False)
PRODUCTS = Kind("products", "product", deletable=True)
KINDS = {kind.name: kind for kind in (CUSTOMERS, ORDERS, PRODUCTS)}


class SnapshotError(ValueError):
    """An entity the API returned that cannot be kept: not an object, or without an id."""


def entity_id(body: bytes) -> tuple[str, bytes]:
    """The entity's id and its canonical body (sorted keys, compact)."""
    try:
        entity = _id_only.decode(body)
    except msgspec.DecodeError as exc:
        raise SnapshotError(f"not a JSON object: {exc}") from None
    key = entity.get("id")
    if not isinstance(key, str) or not key:
        raise SnapshotError("the entity has no id")
    return key, msgspec.json.encode(entity, order="sorted")


def snapshot(kind: Kind, body: bytes, read_at: float) -> tuple[str, Delivery]:
    """The entity's id and the snapshot row that keeps it (see the module's docstring)."""
    key, canonical = entity_id(body)
    return key, _unsigned(kind.snapshot_type, key, canonical, read_at)


def gone_event(kind: Kind, key: str, checked_at: float) -> Delivery:
    """The row saying the API answered 404 `NOT_FOUND` for this entity at `checked_at`."""
    return _unsigned(kind.gone_type, key, msgspec.json.encode({"id": key}), checked_at)


def _unsigned(event_type: str, key: str, body: bytes, at: float) -> Delivery:
    digest = hashlib.sha256(b"\0".join((event_type.encode(), key.encode(), body))).hexdigest()
    return Delivery(
        webhook_id=f"sync_{digest}",
        event_type=event_type,
        event_timestamp=int(at),
        signed_at=int(at),
        received_at=format_instant(at),
        signature=UNSIGNED,
        payload=body,
        digests=(),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Known:
    """Ids of one entity type in the log; `deleted` is a subset of `ids`."""

    ids: frozenset[str]
    deleted: frozenset[str]

    @property
    def live(self) -> frozenset[str]:
        """Ids the mirror holds and has not seen deleted."""
        return self.ids - self.deleted


def known(events_path: Path, kind: Kind) -> Known:
    """One scan of the log's events of `kind`, read-only."""
    conn = connect_read_only(events_path)
    types = kind.event_types
    marks = ",".join("?" * len(types))
    deleted_marks = ",".join("?" * len(kind.deleted_types))
    text = "CAST(payload AS TEXT)"
    try:
        rows = conn.execute(
            f"SELECT json_extract({text}, '$.id') AS id, MAX(event_type IN ({deleted_marks})) "
            f"FROM events WHERE event_type IN ({marks}) AND json_valid({text}) GROUP BY id",
            (*kind.deleted_types, *types),
        ).fetchall()
    finally:
        conn.close()
    ids = {key for key, _ in rows if isinstance(key, str) and key}
    deleted = {key for key, gone in rows if gone and key in ids}
    return Known(frozenset(ids), frozenset(deleted))


# `GET /products` answering one of these means "no such endpoint": fall back to ids.
_NO_LIST = frozenset({404, 405})
T = TypeVar("T")


class SyncPass:
    """A pass over `kinds`, resumed from the state's cursor where one was left."""

    def __init__(  # noqa: PLR0913 - the pass's collaborators, each injectable
        self,
        client: OpenApiClient,
        store: EventStore,
        state: SyncState,
        events_path: Path,
        progress: Progress,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._store = store
        self._state = state
        self._events_path = events_path
        self._progress = progress
        self._clock = clock
        # SQLite work (log appends, cursor commits) off the event loop, one at a time.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-writer")

    async def run(self, kinds: Sequence[Kind]) -> Report:
        """Run (or resume) the pass; the report says how it ended. Never raises for the API."""
        selection = [kind.name for kind in kinds]
        resumed = await self._in_thread(self._state.resume, selection)
        if resumed is None:
            cursor = Cursor(selection)
            report = Report(format_instant(self._clock()), {n: KindReport() for n in selection})
            await self._in_thread(self._state.start, cursor, report)
        else:
            cursor, report = resumed
            report.resumed, report.stopped, report.ok, report.finished_at = True, None, None, None
        try:
            while cursor.kind_index < len(selection):
                kind = kinds[cursor.kind_index]
                mirror = await self._in_thread(known, self._events_path, kind)
                if cursor.phase == WALK:
                    await self._walk(kind, cursor, report, mirror)
                await self._verify(kind, cursor, report, mirror)
                cursor.kind_index, cursor.phase, cursor.page = cursor.kind_index + 1, WALK, 1
                await self._in_thread(self._state.advance, cursor, report, kind.name)
        except (AccessDeniedError, ApiUnavailableError, ApiError, StoreUnavailableError) as exc:
            report.stopped = str(exc)
        finally:
            self._progress.finish()
        report.conclude(format_instant(self._clock()))
        if report.stopped:
            await self._in_thread(self._state.keep_stopped, report)
        else:
            await self._in_thread(self._state.finish, report)
        self._executor.shutdown(wait=True)
        return report

    async def _walk(self, kind: Kind, cursor: Cursor, report: Report, mirror: Known) -> None:
        """Page through the list from the cursor's page; then the pass verifies."""
        self._progress.begin(kind.name)
        entities = report.entities[kind.name]
        number = cursor.page
        try:
            first = await self._client.page(kind.name, number)
        except ApiError as exc:
            if kind is not PRODUCTS or exc.status not in _NO_LIST:
                raise
            entities.notes.append(
                f"GET /products answered {exc.status} {exc.code}: there is no product list, "
                "so every product id the log knows was fetched one by one; products the log "
                "has never seen arrive only by webhook"
            )
            first = None
        pending: asyncio.Future[Page] | None = None
        try:
            page = first
            while page is not None:
                # The next page is read while this one is written.
                more = page.has_next and bool(page.items)
                if more:
                    pending = asyncio.ensure_future(self._client.page(kind.name, number + 1))
                batch = self._snapshots(kind, page.items, entities)
                entities.read += len(page.items)
                cursor.page = number + 1
                await self._in_thread(self._commit, batch, batch.keys, cursor, report, mirror)
                self._progress.advance(len(page.items), f"page {number}", page.total)
                if pending is None:
                    break
                page, pending = await pending, None
                number += 1
        finally:
            if pending is not None:
                pending.cancel()
        cursor.phase, cursor.page = VERIFY, 1
        await self._in_thread(self._state.advance, cursor, report, kind.name)

    def _snapshots(self, kind: Kind, bodies: list[bytes], entities: KindReport) -> _Batch:
        read_at = self._clock()
        batch = _Batch(kind, read_at)
        for body in bodies:
            try:
                key, delivery = snapshot(kind, body, read_at)
            except SnapshotError as exc:
                entities.problem(f"an entity the API returned could not be kept: {exc}")
                continue
            batch.keys.append(key)
            batch.deliveries.append(delivery)
        return batch

    def _commit(
        self,
        batch: _Batch,
        seen: list[str],
        cursor: Cursor,
        report: Report,
        mirror: Known,
    ) -> None:
        """The log first, then the cursor: a crash in between only repeats the batch."""
        kind = batch.kind
        entities = report.entities[kind.name]
        results = self._store.append(batch.deliveries) if batch.deliveries else []
        for key, delivery, result in zip(batch.keys, batch.deliveries, results, strict=True):
            if delivery.event_type == kind.gone_type:
                entities.gone += result.outcome is Outcome.ACCEPTED
            elif result.outcome is Outcome.ACCEPTED:
                if key in mirror.ids:
                    entities.changed += 1
                else:
                    entities.new += 1
            elif result.outcome is Outcome.DUPLICATE:
                entities.unchanged += 1
            else:
                entities.problem(f"{key}: the log kept it aside ({result.outcome.value})")
        self._state.advance(cursor, report, kind.name, seen)

    async def _verify(self, kind: Kind, cursor: Cursor, report: Report, mirror: Known) -> None:
        """Fetch by id what the mirror holds and this pass has not seen: healed, or gone."""
        entities = report.entities[kind.name]
        seen = await self._in_thread(self._state.seen, kind.name)
        candidates = sorted(mirror.live - seen)
        if not candidates:
            return
        self._progress.begin(f"{kind.name} by id")
        for start in range(0, len(candidates), PAGE_SIZE):
            chunk = candidates[start : start + PAGE_SIZE]
            bodies, gone = await self._fetch_each(kind, chunk, entities)
            if gone and entities.read + len(bodies) == 0:
                # A wrong base URL can answer 404 to everything: with not one entity of
                # the type found anywhere in the pass, none is taken for deleted.
                entities.problem(
                    f"{len(gone)} {kind.name} answered 404 NOT_FOUND and none was found at "
                    "all: not taken as deletions (check BITBYBIT_API_URL)"
                )
                gone = []
            batch = self._snapshots(kind, bodies, entities)
            for key in gone:
                batch.keys.append(key)
                batch.deliveries.append(gone_event(kind, key, batch.read_at))
            entities.read += len(bodies)
            # Every id checked is remembered, whatever it answered: a resumed pass does
            # not ask again, and a problem is in the report.
            await self._in_thread(self._commit, batch, chunk, cursor, report, mirror)
            self._progress.advance(len(chunk), f"{start + len(chunk)}/{len(candidates)}")

    async def _fetch_each(
        self, kind: Kind, keys: list[str], entities: KindReport
    ) -> tuple[list[bytes], list[str]]:
        """(bodies found, ids gone) for `keys`, one GET each."""
        bodies: list[bytes] = []
        gone: list[str] = []
        for key in keys:
            try:
                body = await self._client.entity(kind.name, key)
            except AccessDeniedError:
                raise
            except ApiError as exc:  # unavailable after every attempt included: not gone
                entities.problem(f"{key}: {exc}; left as it is")
                continue
            if body is not None:
                bodies.append(body)
            elif kind.deletable:
                gone.append(key)
            else:
                entities.problem(
                    f"{key}: the API answered 404 NOT_FOUND, but {kind.name} are never "
                    "deleted; left as it is"
                )
        return bodies, gone

    async def _in_thread(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)


@dataclasses.dataclass(slots=True)
class _Batch:
    """Rows about to be appended, with the entity id of each."""

    kind: Kind
    read_at: float
    keys: list[str] = dataclasses.field(default_factory=list)
    deliveries: list[Delivery] = dataclasses.field(default_factory=list)
