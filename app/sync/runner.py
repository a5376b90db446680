"""What runs `sync`: a pass or the check by hand, passes behind `serve`, and their metrics.

`run_pass` and `run_check` wire the log, `sync.db` and the API together. `serve
--sync-every` runs passes in a child process of its own (`SyncScheduler`), like the live
projector: its JSON decoding and hashing never compete with the endpoint for the GIL,
and a pass killed with `serve` resumes at the next one. The next pass is due an interval
after the last one ended (as `sync.db` records it), so restarting `serve` does not start
a pass every time. The last sync and the last webhook delivery are Prometheus gauges
read from the files at each scrape (`SyncCollector`), so that a pass run by hand, by
cron or by `serve`, and a restart of `serve`, all show.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
import sys
import time
from typing import IO, TYPE_CHECKING

import aiohttp
import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app import children
from app.eventlog.reads import LogReader
from app.eventlog.store import EventStore
from app.sqlite import read_only_uri
from app.sync import check as check_module
from app.sync.client import Endpoint, OpenApiClient, Policy
from app.sync.passes import SyncPass
from app.sync.state import SyncState, exclusive, last_run
from app.terminal import Progress

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

    from prometheus_client import Metric

    from app.settings import Settings
    from app.sync.check import CheckReport
    from app.sync.passes import Kind
    from app.sync.state import Report


@contextlib.asynccontextmanager
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    # One connection pool for the pass: the API is one host, and keep-alive saves a
    # TLS handshake per request.
    async with aiohttp.ClientSession(raise_for_status=False) as session:
        yield session


async def run_pass(
    settings: Settings,
    kinds: Sequence[Kind],
    *,
    stream: IO[str] | None = None,
    policy: Policy | None = None,
    log_lines: bool = True,
) -> Report:
    """One pass (resumed where the last one stopped), under the data directory's lock."""
    settings.require_api_key()
    settings.require_private_data_dir()
    endpoint = Endpoint(settings.api_url, settings.api_key_header, settings.api_key)
    with exclusive(settings):
        store = EventStore.open(settings.events_path)
        state = SyncState.open(settings.sync_path)
        try:
            async with _session() as session:
                client = OpenApiClient(session, endpoint, policy)
                progress = Progress(
                    sys.stderr if stream is None else stream,
                    event="sync_progress",
                    log_lines=log_lines,
                )
                return await SyncPass(client, store, state, settings.events_path, progress).run(
                    kinds
                )
        finally:
            state.close()
            store.close()


async def run_check(settings: Settings, policy: Policy | None = None) -> CheckReport:
    """`sync --check`: writes nothing, takes no lock; fewer attempts than a pass."""
    settings.require_api_key()
    async with _session() as session:
        return await check_module.check(session, settings, policy or Policy(attempts=3))


log = structlog.get_logger("app.sync.runner")


class SyncScheduler:
    """Runs `python -m app sync` every `settings.sync_every_seconds`."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        assert settings.sync_every_seconds is not None  # noqa: S101 - checked by the caller
        self._settings = settings
        self._every = settings.sync_every_seconds
        self._clock = clock
        self._sleep = sleep
        self._process: asyncio.subprocess.Process | None = None

    def _due_in(self) -> float:
        report = last_run(self._settings.sync_path)
        if report is None or report.finished_at is None:
            return 0.0
        ended = dt.datetime.fromisoformat(report.finished_at).timestamp()
        return max(ended + self._every - self._clock(), 0.0)

    async def _loop(self) -> None:
        while True:
            await self._sleep(self._due_in())
            before = last_run(self._settings.sync_path)
            settings = self._settings
            shared = ["--allow-shared-data-dir"] if settings.allow_shared_data_dir else []
            self._process = await children.start(
                *("-m", "app", "sync", "--data-dir", str(settings.data_dir), "--json", *shared),
                stdin=asyncio.subprocess.DEVNULL,
                # Its report is in sync.db and in the line logged below (--json keeps its
                # progress quiet); what it logs joins serve's log, at serve's level.
                stdout=asyncio.subprocess.DEVNULL,
                env={"BITBYBIT_LOG_LEVEL": settings.log_level},
            )
            code = await self._process.wait()
            after = last_run(self._settings.sync_path)
            log.info(
                "sync_pass_ended",
                returncode=code,
                ok=None if after is None else after.ok,
                finished_at=None if after is None else after.finished_at,
            )
            if after == before:
                # Nothing recorded (another sync held the lock, or it failed to start):
                # try again an interval from now, not in a tight loop.
                await self._sleep(self._every)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SyncScheduler]:
        """Schedule passes in the background; on exit, stop a pass that is running."""
        try:
            async with children.in_background(self._loop(), "sync-scheduler"):
                yield self
        finally:
            # A stopped pass resumes next time.
            await children.stop(self._process, at_end_of_input=False)


OUTCOMES = ("read", "new", "changed", "unchanged", "gone", "problems")


def _seconds(iso: str | None) -> float | None:
    if iso is None:
        return None
    try:
        return dt.datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def last_delivery_at(settings: Settings) -> str | None:
    """The last accepted webhook delivery, read-only; None without a log or a delivery."""
    if not settings.events_path.exists():
        return None
    uri = read_only_uri(settings.events_path)
    store = LogReader(sqlite3.connect(uri, uri=True))
    try:
        return store.last_delivery_at()
    finally:
        store.close()


class SyncCollector(Collector):
    """Gauges of the last sync's end, outcome and counts, and of the last delivery."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def collect(self) -> Iterator[Metric]:
        """One reading of each file per scrape."""
        delivered = GaugeMetricFamily(
            "bitbybit_last_delivery_timestamp_seconds",
            "When the last webhook delivery was accepted (Unix time); absent if never.",
        )
        if (at := _seconds(last_delivery_at(self._settings))) is not None:
            delivered.add_metric([], at)
        yield delivered
        report = last_run(self._settings.sync_path)
        finished = GaugeMetricFamily(
            "bitbybit_sync_last_finished_timestamp_seconds",
            "When the last sync pass ended (Unix time); absent if none has.",
        )
        ok = GaugeMetricFamily(
            "bitbybit_sync_last_ok", "1 if the last sync pass completed cleanly, else 0."
        )
        entities = GaugeMetricFamily(
            "bitbybit_sync_entities",
            "Entities of the last sync pass, by entity type and outcome.",
            labels=["entity", "outcome"],
        )
        if report is not None:
            if (end := _seconds(report.finished_at)) is not None:
                finished.add_metric([], end)
            ok.add_metric([], 1.0 if report.ok else 0.0)
            for name, counts in report.entities.items():
                for outcome in OUTCOMES:
                    entities.add_metric([name, outcome], float(getattr(counts, outcome)))
        yield finished
        yield ok
        yield entities
