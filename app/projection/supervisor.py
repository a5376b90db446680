"""The live projector of `serve`: a child process that applies each committed batch.

Projecting in the serving process would compete with request handling for the GIL
(measured: it halved ingest throughput), so `serve` only installs the projections,
starts `app.projection.follower` and nudges it through a pipe after each commit. Status
for `/readyz` and `/metrics` is read straight from both files, read-only, through
aiosqlite, so a slow read (a disk under load) never holds up the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import aiosqlite
import structlog

from app import children
from app.eventlog.reads import SELECT_HEAD, LogReader
from app.projection import projector as projector_module
from app.projection.follower import REPLACED
from app.projection.recovery import recover
from app.sqlite import read_only_uri

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from app.metrics import Metrics
    from app.settings import Settings
    from projections import Projection

log = structlog.get_logger("app.projection.supervisor")

RESTART_SECONDS = 1.0
# How long /readyz and /metrics wait for the projections to open before leaving them out.
REPORT_WAIT_SECONDS = 2.0


class ProjectorSupervisor:
    """Keeps the projections at the log's head while `serve` runs."""

    def __init__(
        self, settings: Settings, metrics: Metrics, projections: Sequence[Projection]
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._projections = projections
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projections")
        self._process: asyncio.subprocess.Process | None = None
        # Read-only connections to events.db and projections.db, once the projections
        # are installed.
        self._readers: tuple[aiosqlite.Connection, aiosqlite.Connection] | None = None
        self._opened = asyncio.Event()

    def notify(self, _head: int) -> None:
        """The log has new events: wake the follower (never blocks; a full pipe is fine)."""
        process = self._process
        if process is not None and process.stdin is not None and not process.stdin.is_closing():
            process.stdin.write(b".")

    async def report(self) -> list[dict[str, Any]]:
        """Each projection's position, lag, errors and staleness; also sets the gauges.

        Empty while the projections are still being opened (see `running`), after
        waiting `REPORT_WAIT_SECONDS` for them.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._opened.wait(), REPORT_WAIT_SECONDS)
        if self._readers is None:
            return []
        events, projections = self._readers
        try:
            [(head,)] = await events.execute_fetchall(SELECT_HEAD)
            checkpoints = await projections.execute_fetchall(projector_module.SELECT_CHECKPOINTS)
            errors = await projections.execute_fetchall(projector_module.COUNT_ERRORS)
            warnings = await projections.execute_fetchall(projector_module.COUNT_WARNINGS)
        except (sqlite3.Error, ValueError) as exc:
            # A full disk or an I/O error can fail even a read; /readyz's own write probe
            # says what that means for deliveries. (ValueError: aiosqlite's answer when the
            # readers were closed meanwhile, to follow a rebuilt file.)
            log.warning("projection_status_unavailable", error=str(exc))
            return []
        statuses = projector_module.statuses_of(
            self._projections,
            head,
            map(tuple, checkpoints),
            map(tuple, errors),
            map(tuple, warnings),
        )
        for status in statuses:
            self._metrics.projection_position.labels(status.name).set(status.position)
            self._metrics.projection_lag.labels(status.name).set(status.lag)
            self._metrics.projection_errors.labels(status.name).set(status.errors)
        return [dataclasses.asdict(status) for status in statuses]

    def _install(self) -> None:
        """Recover what a crash left, create what is missing, and say where each stands.

        A damaged projections.db, or one ahead of the log, is moved aside first, and the
        new one is projected from the start of the log.
        """
        recover(self._settings)
        store = LogReader.open(self._settings.events_path)
        conn = projector_module.connect(self._settings.projections_path)
        try:
            projector = projector_module.Projector(conn, store, self._projections)
            projector.install_all()
            statuses = projector.statuses()
        finally:
            conn.close()
            store.close()
        for status in statuses:
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

    async def _open_readers(self) -> None:
        events_uri, projections_uri = (
            read_only_uri(path)
            for path in (self._settings.events_path, self._settings.projections_path)
        )
        events = await _connect_read_only(events_uri)
        try:
            projections = await _connect_read_only(projections_uri)
        except BaseException:
            await events.close()
            raise
        self._readers = (events, projections)

    async def _close_readers(self) -> None:
        if self._readers is not None:
            for reader in self._readers:
                await reader.close()
            self._readers = None

    async def _supervise(self) -> None:
        """Run the follower; should it ever die, log it and start another."""
        while True:
            self._process = await children.start(
                *("-m", "app.projection.follower", str(self._settings.data_dir)),
                stdin=asyncio.subprocess.PIPE,
                env={"BITBYBIT_LOG_LEVEL": self._settings.log_level},
            )
            code = await self._process.wait()
            if code == REPLACED:
                # A rebuild moved projections.db aside: the readers follow to the new file.
                await self._close_readers()
                await self._open()
                continue
            log.error("follower_exited", returncode=code)
            await asyncio.sleep(RESTART_SECONDS)

    async def _open_then_follow(self) -> None:
        """Install the projections, then run the follower; retried while that fails."""
        await self._open()
        self._opened.set()
        await self._supervise()

    async def _open(self) -> None:
        """Install the projections and open the readers, retried while that fails."""
        loop = asyncio.get_running_loop()
        while self._readers is None:
            try:
                await loop.run_in_executor(self._executor, self._install)
                await self._open_readers()
            except Exception:
                # The endpoint does not need the projections: it keeps taking deliveries,
                # and they are projected once projections.db can be opened.
                log.exception("projections_unavailable")
                await asyncio.sleep(RESTART_SECONDS)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ProjectorSupervisor]:
        """Open the projections and run the follower in the background; stop on exit.

        Deliveries are taken from the start: a projections.db held by a rebuild's switch,
        or one that cannot be opened at all, delays projecting, never the endpoint.
        """
        try:
            async with children.in_background(self._open_then_follow(), "follower"):
                yield self
        finally:
            await children.stop(self._process, at_end_of_input=True)
            await self._close_readers()
            self._executor.shutdown(wait=True)


async def _connect_read_only(uri: str) -> aiosqlite.Connection:
    """An aiosqlite connection that `mode=ro` keeps from writing; cancelling waits for it.

    aiosqlite opens the file on a thread of its own, which answers the event loop when it
    is done: abandoned mid-open (serve stopping), it would answer a closed loop. So a
    cancelled open is let finish, closed, and the cancellation passed on.
    """
    opening = asyncio.ensure_future(aiosqlite.connect(uri, uri=True, timeout=REPORT_WAIT_SECONDS))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await (await opening).close()
        raise
