"""Group commit: one writer owns the log's transactions.

A durable commit costs an fsync, so committing each delivery on its own caps the endpoint
at a few thousand per second. Deliveries that arrive while a commit is in flight wait in
`_pending` and are written together in the next transaction; each caller is answered only
when the transaction holding its delivery has committed.

The statements run on the event loop's thread, a batch in a handful of them; only waits
go to the writer thread (the fsync of each commit, and the write lock when another
process holds it). Measured: running the statements on a thread as well costs more CPU
per delivery, in GIL hand-offs, than it saves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from app.eventlog.store import AppendResult, EventStore, StoreUnavailableError
from app.instants import format_instant

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable

    from app.eventlog.rows import Delivery
    from app.metrics import Metrics

# Bounds one transaction, so a burst cannot make a single commit (and its callers) wait long.
MAX_BATCH = 1000


class GroupCommitWriter:
    """Appends deliveries in batches: whatever arrives while a commit is in flight."""

    def __init__(
        self,
        store: EventStore,
        metrics: Metrics,
        on_commit: Callable[[int], None] = lambda _head: None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._on_commit = on_commit
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-writer")
        self._pending: list[tuple[Delivery, asyncio.Future[AppendResult]]] = []
        self._probes: list[asyncio.Future[None]] = []
        self._wakeup = asyncio.Event()
        self._stopping = False

    async def append(self, delivery: Delivery) -> AppendResult:
        """Return once `delivery` is durably committed (or raise `StoreUnavailableError`)."""
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._pending.append((delivery, future))
        self._wakeup.set()
        return await future

    async def probe(self) -> None:
        """Return once a write rode along in one of the log's transactions and committed.

        What `/readyz` asks: the probe takes the deliveries' own connection and path, in
        turn with them, so it fails exactly when they would (a full disk, a lost file).
        Raises `StoreUnavailableError` otherwise.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._probes.append(future)
        self._wakeup.set()
        await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending or self._probes:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                probes, self._probes = self._probes, []
                await self._commit(loop, batch, probes)
            if self._stopping:
                return

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
        """One transaction: the deliveries, and the probe row if a probe is waiting."""
        store = self._store
        if not store.try_begin():
            await loop.run_in_executor(self._executor, store.begin)
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
