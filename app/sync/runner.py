"""What `sync` runs: the pass or the check, wired to the log, the state and the API."""

from __future__ import annotations

import contextlib
import sys
from typing import IO, TYPE_CHECKING

import aiohttp

from app.eventlog.store import EventStore
from app.sync import check as check_module
from app.sync.client import Endpoint, OpenApiClient, Policy
from app.sync.passes import SyncPass
from app.sync.state import SyncState, exclusive
from app.terminal import Progress

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from app.settings import Settings
    from app.sync.check import CheckReport
    from app.sync.report import Report
    from app.sync.snapshots import Kind


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
    with exclusive(settings.data_dir):
        store = EventStore.open(settings.events_path)
        state = SyncState.open(settings.data_dir)
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
