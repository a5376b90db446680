"""The live projector of `serve`: applies each committed batch to the projections.

It runs on a thread of its own with its own connections, woken by the log writer after
every commit (and once a second, to pick up events another process appended, or a
rebuild's fresh checkpoint), so the endpoint never waits for a projection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from app import projector as projector_module
from app.store import EventStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from app.metrics import Metrics
    from app.settings import Settings
    from projections import Projection

log = structlog.get_logger("app.live")

T = TypeVar("T")

LIVE_BATCH = 2000
POLL_SECONDS = 1.0


class LiveProjector:
    """Keeps the projections at the log's head while `serve` runs."""

    def __init__(
        self, settings: Settings, metrics: Metrics, projections: Sequence[Projection]
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._projections = projections
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projector")
        self._wakeup = asyncio.Event()
        self._projector: projector_module.Projector | None = None

    def notify(self, _head: int) -> None:
        """The log has new events: apply them soon."""
        self._wakeup.set()

    async def report(self) -> list[dict[str, Any]]:
        """Each projection's position, lag, errors and staleness; also sets the gauges."""
        statuses = await self._run_in_thread(self._statuses)
        for status in statuses:
            self._metrics.projection_position.labels(status.name).set(status.position)
            self._metrics.projection_lag.labels(status.name).set(status.lag)
            self._metrics.projection_errors.labels(status.name).set(status.errors)
        return [dataclasses.asdict(status) for status in statuses]

    def _statuses(self) -> list[projector_module.ProjectionStatus]:
        assert self._projector is not None  # noqa: S101 - only called while running
        return self._projector.statuses()

    async def _run_in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _open(self) -> projector_module.Projector:
        store = EventStore.open(self._settings.events_path)
        conn = projector_module.connect(self._settings.projections_path)
        projector = projector_module.Projector(conn, store, self._projections)
        projector.install_all()
        for status in projector.statuses():
            log.info(
                "projection",
                projection=status.name,
                version=status.version,
                position=status.position,
                lag=status.lag,
                errors=status.errors,
                stale=status.stale,
            )
            if status.stale:
                log.warning(
                    "projection_stale",
                    projection=status.name,
                    detail="its tables were built by another version; run `rebuild` to update",
                )
        return projector

    def _close(self) -> None:
        if self._projector is not None:
            self._projector.conn.close()
            self._projector.store.close()

    def _step(self) -> int:
        assert self._projector is not None  # noqa: S101 - only called while running
        read, _ = self._projector.step(LIVE_BATCH)
        return read

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), POLL_SECONDS)
            self._wakeup.clear()
            try:
                # One batch per call, so `/readyz` and `/metrics` can be answered between
                # batches even while a large log is being caught up.
                while await self._run_in_thread(self._step):
                    pass
            except Exception:
                # A locked or failing projections.db must not stop the service; the log
                # keeps everything and the next wake-up tries again.
                log.exception("projector_failed")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LiveProjector]:
        """Open the projections, catch up in the background, stop cleanly on exit."""
        self._projector = await self._run_in_thread(self._open)
        task = asyncio.create_task(self._run(), name="live-projector")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._run_in_thread(self._close)
            self._executor.shutdown(wait=True)
