"""`serve`'s publisher: a child process that follows the change feed into PostgreSQL.

Like the live projector, it runs apart from the endpoint (its decoding and COPY never
compete with deliveries for the GIL), gets the URL through its environment (never its
command line, which every user can read), and is started again if it dies. It needs no
signal from `serve`: it looks at the feed a few times a second. Its progress is read
back from `publish.json` for `/metrics`, without touching PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from app import children
from app.publish.state import read_status, report

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from prometheus_client import Metric

    from app.settings import Settings

log = structlog.get_logger("app.publish.supervisor")

RESTART_SECONDS = 1.0


@contextlib.asynccontextmanager
async def publishing(settings: Settings) -> AsyncIterator[None]:
    """Run the publisher child for the block; stop it (and wait) on exit."""
    process: asyncio.subprocess.Process | None = None

    async def supervise() -> None:
        nonlocal process
        while True:
            process = await children.start(
                *("-m", "app.publish.runner", str(settings.data_dir)),
                stdin=asyncio.subprocess.PIPE,
                env={
                    "BITBYBIT_PUBLISH_URL": settings.publish_url,
                    "BITBYBIT_PUBLISH_SCHEMA": settings.publish_schema,
                    "BITBYBIT_LOG_LEVEL": settings.log_level,
                },
            )
            code = await process.wait()
            log.error("publisher_exited", returncode=code)
            await asyncio.sleep(RESTART_SECONDS)

    try:
        async with children.in_background(supervise(), "publisher"):
            yield
    finally:
        await children.stop(process, at_end_of_input=True)


class PublishCollector(Collector):
    """`bitbybit_publish_lag` and `bitbybit_publish_errors_total`, read at each scrape."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def collect(self) -> Iterator[Metric]:
        """One reading of `publish.json` (and of the feed after its cursor) per scrape."""
        lag = GaugeMetricFamily(
            "bitbybit_publish_lag",
            "Change feed lines the PostgreSQL publisher has not applied yet; absent if it "
            "never published.",
        )
        reported = report(self._settings)
        if isinstance(reported["lag"], int):
            lag.add_metric([], reported["lag"])
        yield lag
        errors = CounterMetricFamily(
            "bitbybit_publish_errors",
            "Failures of the PostgreSQL publisher (unreachable, refused), retried with backoff.",
        )
        errors.add_metric([], read_status(self._settings.data_dir).errors)
        yield errors
