"""The sweep `serve` runs: later deliveries about a forgotten person, redacted in the log.

The endpoint stores every authentic delivery as received (its hot path does not look
inside bodies), and the projectors screen deliveries about forgotten entities before
they reach the tables (`app.eventlog.erasure.Screen`). What remains is the log itself: every
`SWEEP_SECONDS` the sweep runs `forget` again for each forgotten customer over the
deliveries since the last sweep, so a later delivery stays in the log for at most
that long plus one sweep, well within the hour SPEC §9 allows. A log without forget
records costs one query per sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import structlog

from app.eventlog import erasure
from app.eventlog.schema import open_log
from app.ops import forget

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from app.settings import Settings
    from projections import Projection

log = structlog.get_logger("app.ops.forget_sweep")

SWEEP_SECONDS = 600.0


def sweep_once(settings: Settings, projections: Sequence[Projection]) -> int:
    """One sweep, if anyone was forgotten; how many events it redacted."""
    conn = open_log(settings.events_path)
    try:
        if not erasure.count_records(conn):
            return 0
    finally:
        conn.close()
    reports = forget.sweep(settings, projections)
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
            except forget.ForgetError as exc:
                # A rebuild holds the lock: the next sweep picks up where this one would.
                log.warning("forget_sweep_postponed", reason=str(exc))
            except Exception:
                log.exception("forget_sweep_failed")
            await asyncio.sleep(every)

    task = asyncio.create_task(run(), name="forget-sweep")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        executor.shutdown(wait=True)
