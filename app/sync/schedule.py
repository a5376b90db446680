"""`serve --sync-every`: sync passes in a child process, at an interval, in the background.

A pass in a child process of its own, like the live projector: its JSON decoding and
hashing never compete with the endpoint for the GIL, and a pass killed with `serve`
resumes at the next one. The next pass is due an interval after the last one ended (as
`sync.db` records it), so restarting `serve` does not start a pass every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import sys
import time
from typing import TYPE_CHECKING

import structlog

from app.sync.state import last_run

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from app.settings import Settings

log = structlog.get_logger("app.sync.schedule")
STOP_SECONDS = 10.0


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
        report = last_run(self._settings.data_dir)
        if report is None or report.finished_at is None:
            return 0.0
        ended = dt.datetime.fromisoformat(report.finished_at).timestamp()
        return max(ended + self._every - self._clock(), 0.0)

    async def _loop(self) -> None:
        while True:
            await self._sleep(self._due_in())
            before = last_run(self._settings.data_dir)
            settings = self._settings
            shared = ["--allow-shared-data-dir"] if settings.allow_shared_data_dir else []
            self._process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "app", "sync"),
                *("--data-dir", str(settings.data_dir), "--json", *shared),
                stdin=asyncio.subprocess.DEVNULL,
                # Its report is in sync.db and in the line logged below (--json keeps its
                # progress quiet); what it logs joins serve's log, at serve's level.
                stdout=asyncio.subprocess.DEVNULL,
                env={**os.environ, "BITBYBIT_LOG_LEVEL": settings.log_level},
                # Its own process group, like the follower: a Ctrl-C reaches serve, which
                # then stops the pass (a stopped pass resumes next time).
                process_group=0,
            )
            code = await self._process.wait()
            after = last_run(self._settings.data_dir)
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
        task = asyncio.create_task(self._loop(), name="sync-scheduler")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._stop_pass()

    async def _stop_pass(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
