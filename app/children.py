"""`serve`'s helpers that run beside the endpoint: child processes and background tasks.

The live projector, the publisher and a sync pass each run as a child process, so their
CPU never competes with deliveries for the event loop's GIL. Each gets a process group
of its own: a Ctrl-C on a terminal reaches the foreground group, that is `serve`, which
then stops its children in order. Had a child got the SIGINT too, it would die with a
traceback in the log, even while still starting up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine, Mapping
    from typing import Any

STOP_SECONDS = 10.0


async def start(
    *argv: str, env: Mapping[str, str], stdin: int, stdout: int | None = None
) -> asyncio.subprocess.Process:
    """`python ARGV...` in a process group of its own, with `env` over serve's environment."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        stdin=stdin,
        stdout=stdout,
        env={**os.environ, **env},
        process_group=0,
    )


async def stop(process: asyncio.subprocess.Process | None, *, at_end_of_input: bool) -> None:
    """End `process` and wait for it; killed if it takes more than `STOP_SECONDS`.

    The long-running children stop at the end of their stdin (`at_end_of_input`), which
    also reaches them if `serve` dies; a sync pass is sent SIGTERM.
    """
    if process is None or process.returncode is not None:
        return
    if not at_end_of_input:
        process.terminate()
    elif process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), STOP_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def in_background(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run `work` as a task for the block; cancel it, and wait until it is done, on exit."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
