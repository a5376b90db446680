"""The sync helper: commits made durable from another process, and the WAL checkpointed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app.metrics import Metrics
from app.store import EventStore, StoreUnavailableError
from app.walsync import WalSyncer
from app.writer import GroupCommitWriter
from tests.conftest import event_rows
from tests.test_store import delivery

if TYPE_CHECKING:
    from collections.abc import Callable

DEADLINE_SECONDS = 10.0


def helper_pids(events_path: Path) -> list[int]:
    """The sync helpers running for `events_path`, found the way an operator would."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"app.walsync" in argv and str(events_path).encode() in argv:
            pids.append(int(entry.name))
    return pids


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll `condition` until it holds, failing after `DEADLINE_SECONDS`."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the condition did not hold in time")
        await asyncio.sleep(0.02)


async def test_writer_answers_after_the_helper_synced(tmp_path: Path) -> None:
    """Deliveries through the writer and helper are committed, positioned and readable."""
    path = tmp_path / "events.db"
    syncer = WalSyncer(path)
    writer = GroupCommitWriter(
        EventStore.open(path, synchronous="NORMAL", checkpoints=False), syncer, Metrics()
    )
    async with syncer.running(), writer.running():
        results = await asyncio.gather(*(writer.append(delivery(f"w{i}")) for i in range(20)))
    assert sorted(r.position or 0 for r in results) == list(range(1, 21))
    assert len(event_rows(tmp_path)) == 20


async def test_helper_exits_when_serve_closes_its_end(tmp_path: Path) -> None:
    """Leaving `running` stops the helper: no process outlives the service."""
    path = tmp_path / "events.db"
    EventStore.open(path).close()
    async with WalSyncer(path).running() as syncer:
        await syncer.sync()
        assert len(helper_pids(path)) == 1
    assert helper_pids(path) == []


async def test_a_dead_helper_fails_one_batch_then_is_started_again(tmp_path: Path) -> None:
    """A killed helper is a 503 for the batch waiting on it, not for every later one."""
    path = tmp_path / "events.db"
    EventStore.open(path).close()
    async with WalSyncer(path).running() as syncer:
        await syncer.sync()
        (pid,) = helper_pids(path)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(StoreUnavailableError, match="sync helper is gone"):
            await syncer.sync()
        await syncer.sync()
        assert len(helper_pids(path)) == 1


async def test_a_failed_sync_is_store_unavailable(tmp_path: Path) -> None:
    """When the WAL cannot be synced, the caller hears why and nothing is acknowledged."""
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    async with WalSyncer(not_a_directory / "events.db").running() as syncer:
        with pytest.raises(StoreUnavailableError, match=r"could not be synced.*Not a directory"):
            await syncer.sync()


async def test_helper_checkpoints_what_the_writer_left_in_the_wal(tmp_path: Path) -> None:
    """The writer never checkpoints; the helper moves its commits into the database file."""
    path = tmp_path / "events.db"
    syncer = WalSyncer(path)
    store = EventStore.open(path, synchronous="NORMAL", checkpoints=False)
    writer = GroupCommitWriter(store, syncer, Metrics())
    before = path.stat().st_size
    big = b'{"blob": "' + b"x" * 8_000 + b'"}'
    async with syncer.running(), writer.running():
        await asyncio.gather(*(writer.append(delivery(f"w{i}", big)) for i in range(100)))
        await wait_until(lambda: path.stat().st_size > before + 100 * 8_000)
        assert store.durable_head() == 100


def test_durable_head_is_the_head(tmp_path: Path) -> None:
    """Once synced, the durable head is simply the newest position."""
    store = EventStore.open(tmp_path / "events.db")
    assert store.durable_head() == 0
    store.append([delivery("a"), delivery("b")])
    assert store.durable_head() == store.head() == 2
    store.close()
