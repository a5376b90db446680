"""Group commit: one writer owns the log's transactions.

A durable commit costs an fsync, so committing each delivery on its own caps the endpoint
at a few thousand per second. Deliveries that arrive while a commit is in flight wait in
`_pending` and are written together in the next transaction; each caller is answered only
when the transaction holding its delivery has committed.

The statements run on the event loop's thread, a batch in a handful of them; only waits
go to the writer thread (the fsync of each commit, and the write lock when another
process holds it). Measured: running the statements on a thread as well costs more CPU
per delivery, in GIL hand-offs, than it saves.

Every delivery is answered by its deadline (SPEC §3: 15 s after its last byte, half of
BitByBit's own timeout). The only wait that can run long is for the write lock, held by
another process (an import, a sync pass, a long `forget`), so that wait is what the
deadline bounds: the writer takes the lock before anything is written, waiting at most
until the earliest pending deadline (less an allowance for the commit itself), and the
deliveries whose deadline has come are then answered `store_unavailable` straight from
the queue. The 503 therefore always tells the truth: an expired delivery was never in a
transaction, and it leaves the queue as it is answered, so no later batch can commit it.
The reverse choice was rejected: once a batch is in its transaction, its callers wait for
the commit however long the fsync takes, because answering 503 while the commit might
still land would turn a 200 into a lie the other way (BitByBit would retry a delivery it
counts as lost, and the log's dedupe by webhook id would hide it, but an operator
counting 503s as "not stored" would be wrong). A held lock delays nobody past the
deadline; a stalled disk delays the batch in flight only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from app.eventlog.store import AppendResult, EventStore, StoreUnavailableError
from app.instants import format_instant
from app.settings import DEFAULT_ANSWER_SECONDS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable

    from app.eventlog.rows import Delivery
    from app.metrics import Metrics

# Bounds one transaction, so a burst cannot make a single commit (and its callers) wait long.
MAX_BATCH = 1000
# The share of the answer time kept for writing and committing once the lock is taken:
# the lock is waited for until this long before the earliest deadline (1.5 s of 15 s).
COMMIT_SHARE = 0.1


class GroupCommitWriter:
    """Appends deliveries in batches: whatever arrives while a commit is in flight."""

    def __init__(
        self,
        store: EventStore,
        metrics: Metrics,
        on_commit: Callable[[int], None] = lambda _head: None,
        *,
        answer_seconds: float = DEFAULT_ANSWER_SECONDS,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._on_commit = on_commit
        self._answer_seconds = answer_seconds
        self._commit_allowance = answer_seconds * COMMIT_SHARE
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-writer")
        # Each with its deadline, on the event loop's monotonic clock.
        self._pending: list[tuple[Delivery, asyncio.Future[AppendResult], float]] = []
        self._probes: list[tuple[asyncio.Future[None], float]] = []
        self._wakeup = asyncio.Event()
        self._stopping = False

    async def append(self, delivery: Delivery, *, deadline: float | None = None) -> AppendResult:
        """Return once `delivery` is durably committed (or raise `StoreUnavailableError`).

        `deadline` (`loop.time()`, by default `answer_seconds` from now) is when the
        caller must have its answer: a delivery the log's write lock keeps out until then
        is refused unwritten.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AppendResult] = loop.create_future()
        due = loop.time() + self._answer_seconds if deadline is None else deadline
        self._pending.append((delivery, future, due))
        self._wakeup.set()
        return await future

    async def probe(self) -> None:
        """Return once a write rode along in one of the log's transactions and committed.

        What `/readyz` asks: the probe takes the deliveries' own connection and path, in
        turn with them, so it fails exactly when they would (a full disk, a lost file).
        Raises `StoreUnavailableError` otherwise.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._probes.append((future, loop.time() + self._answer_seconds))
        self._wakeup.set()
        await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending or self._probes:
                try:
                    locked = await self._lock(loop)
                except StoreUnavailableError as exc:
                    self._fail_pending(exc)
                    continue
                if not locked:
                    continue
                batch = [(d, f) for d, f, _ in self._pending[:MAX_BATCH]]
                del self._pending[:MAX_BATCH]
                probes = [future for future, _ in self._probes]
                self._probes = []
                await self._commit(loop, batch, probes)
            if self._stopping:
                return

    async def _lock(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Take the log's write lock before the earliest deadline waiting on it.

        False when another process held it until then: the deliveries whose deadline has
        come are answered `store_unavailable` and leave the queue, unwritten.
        """
        store = self._store
        if store.try_begin():
            return True
        latest_start = self._earliest_deadline() - self._commit_allowance
        wait = latest_start - loop.time()
        if wait > 0 and await loop.run_in_executor(self._executor, store.begin_within, wait):
            return True
        self._expire(loop.time() + self._commit_allowance)
        return False

    def _earliest_deadline(self) -> float:
        dues = [due for _, _, due in self._pending] + [due for _, due in self._probes]
        return min(dues, default=0.0)

    def _expire(self, horizon: float) -> None:
        """Refuse, unwritten, every waiting delivery and probe due by `horizon`."""
        error = StoreUnavailableError(
            "another process holds the event log's write lock (an import, a sync pass, "
            "a forget); nothing was stored"
        )
        expired = [(f, due) for _, f, due in self._pending if due <= horizon]
        self._pending = [entry for entry in self._pending if entry[2] > horizon]
        _fail((f for f, _ in expired), error)
        _fail((f for f, due in self._probes if due <= horizon), error)
        self._probes = [entry for entry in self._probes if entry[1] > horizon]

    def _fail_pending(self, error: StoreUnavailableError) -> None:
        """The lock could not even be asked for: this batch's callers (and probes) fail."""
        batch = self._pending[:MAX_BATCH]
        del self._pending[:MAX_BATCH]
        _fail((f for _, f, _ in batch), error)
        _fail((f for f, _ in self._probes), error)
        self._probes = []

    async def _commit(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[Delivery, asyncio.Future[AppendResult]]],
        probes: list[asyncio.Future[None]],
    ) -> None:
        started = time.perf_counter()
        try:
            results = await self._write(loop, [delivery for delivery, _ in batch], bool(probes))
        except Exception as exc:  # noqa: BLE001 - every caller must be answered, whatever failed
            unavailable = (
                exc if isinstance(exc, StoreUnavailableError) else StoreUnavailableError(str(exc))
            )
            _fail((future for _, future in batch), unavailable)
            _fail(probes, unavailable)
            return
        for probe in probes:
            if not probe.done():
                probe.set_result(None)
        if not batch:
            return
        self._metrics.observe_commit(len(batch), time.perf_counter() - started)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        self._on_commit(max((r.position or 0) for r in results))

    async def _write(
        self, loop: asyncio.AbstractEventLoop, deliveries: list[Delivery], probe: bool
    ) -> list[AppendResult]:
        """One transaction, already begun: the deliveries, and the probe row if one waits."""
        store = self._store
        try:
            results = store.append_in_transaction(deliveries)
            if probe:
                store.write_probe(format_instant(time.time()))
            await loop.run_in_executor(self._executor, store.commit)
        except BaseException:
            # On the writer thread: a commit still running there owns the connection.
            await loop.run_in_executor(self._executor, store.rollback)
            raise
        return results

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[GroupCommitWriter]:
        """Run the writer; on exit, commit whatever is still pending, then close the log."""
        task = asyncio.create_task(self._run(), name="log-writer")
        try:
            yield self
        finally:
            self._stopping = True
            self._wakeup.set()
            await task
            await asyncio.get_running_loop().run_in_executor(self._executor, self._store.close)
            self._executor.shutdown(wait=True)


def _fail(futures: Iterable[asyncio.Future[Any]], error: StoreUnavailableError) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)
