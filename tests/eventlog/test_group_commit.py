"""The group-commit writer: concurrent deliveries share transactions, and so does the probe."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from app.eventlog.group_commit import GroupCommitWriter
from app.eventlog.store import EventStore, Outcome, StoreUnavailableError
from app.metrics import Metrics
from tests import _helpers
from tests._helpers import SECRET, event_rows, log_rows

if TYPE_CHECKING:
    from pathlib import Path

    from app.eventlog.rows import Delivery


def delivery(webhook_id: str, payload: bytes = b'{"id": 1}') -> Delivery:
    """A really signed order.created, as ingest builds it."""
    return _helpers.delivery("order.created", payload, webhook_id=webhook_id, secret=SECRET)


class TestConcurrency:
    """Racing deliveries through the writer never store a webhook id twice."""

    async def test_group_commit_writer_appends_the_same_id_once(self, tmp_path: Path) -> None:
        """Concurrent appends of one delivery through the writer: one accepted, the rest dupes."""
        writer = GroupCommitWriter(EventStore.open(tmp_path / "events.db"), Metrics())
        async with writer.running():
            same = delivery("same")
            results = await asyncio.gather(*(writer.append(same) for _ in range(5)))
            others = await asyncio.gather(
                *(writer.append(delivery(f"w{i}", str(i).encode())) for i in range(50))
            )
        outcomes = [r.outcome for r in results]
        assert outcomes.count(Outcome.ACCEPTED) == 1
        assert outcomes.count(Outcome.DUPLICATE) == 4
        assert {r.position for r in results} == {1}
        assert sorted(r.position or 0 for r in others) == list(range(2, 52))
        assert len(event_rows(tmp_path)) == 51


class TestProbe:
    """The readiness probe rides in the writer's transactions and counts as no delivery."""

    async def test_a_probe_alone_commits_without_a_batch(self, tmp_path: Path) -> None:
        """A probe-only transaction writes the probe row, and no commit metric or nudge."""
        metrics = Metrics()
        heads: list[int] = []
        writer = GroupCommitWriter(
            EventStore.open(tmp_path / "events.db"), metrics, on_commit=heads.append
        )
        async with writer.running():
            await writer.probe()
            await asyncio.gather(writer.probe(), writer.append(delivery("a")), writer.probe())
        assert log_rows(tmp_path, "SELECT id FROM write_probe") == [(1,)]
        assert heads == [1]
        counted = {
            sample.name: sample.value
            for histogram in (metrics.commit_batch_size, metrics.commit_seconds)
            for family in histogram.collect()
            for sample in family.samples
        }
        assert counted["bitbybit_commit_batch_size_count"] == 1  # the delivery's batch only
        assert counted["bitbybit_commit_batch_size_sum"] == 1
        assert counted["bitbybit_commit_seconds_count"] == 1
        assert [r[1] for r in event_rows(tmp_path)] == ["a"]


ANSWER_SECONDS = 1.0
# Scheduling slack on a loaded machine; the default deadline is 15 s, BitByBit's 30.
SLACK_SECONDS = 1.0


async def _timed_append(writer: GroupCommitWriter, item: Delivery) -> tuple[str, float]:
    """`accepted`, `duplicate` or `store_unavailable`, and how long the answer took."""
    started = time.monotonic()
    try:
        result = await writer.append(item)
    except StoreUnavailableError:
        return "store_unavailable", time.monotonic() - started
    return result.outcome.value, time.monotonic() - started


class TestDeadline:
    """Another process holding the write lock delays no answer past the deadline (SPEC §3)."""

    async def test_a_held_lock_is_answered_unavailable_by_the_deadline(
        self, tmp_path: Path
    ) -> None:
        """Held past the deadline: every delivery is refused in time, and none is stored."""
        path = tmp_path / "events.db"
        writer = GroupCommitWriter(EventStore.open(path), Metrics(), answer_seconds=ANSWER_SECONDS)
        async with writer.running():
            with _helpers.held_write_lock(path):
                probe = asyncio.ensure_future(writer.probe())
                deliveries = await asyncio.gather(
                    *(_timed_append(writer, delivery(f"w{i}", str(i).encode())) for i in range(20))
                )
                with pytest.raises(StoreUnavailableError):
                    await probe
                # Still held: nothing can have been written meanwhile.
                assert event_rows(tmp_path) == []
            assert {outcome for outcome, _ in deliveries} == {"store_unavailable"}
            took = [seconds for _, seconds in deliveries]
            # Refused in time, yet only once the lock had been waited for as long as it could.
            assert min(took) > ANSWER_SECONDS / 2
            assert max(took) < ANSWER_SECONDS + SLACK_SECONDS
            # Released: the same deliveries are new to the log, so the 503s said the truth.
            again = await asyncio.gather(
                *(writer.append(delivery(f"w{i}", str(i).encode())) for i in range(20))
            )
        assert {r.outcome for r in again} == {Outcome.ACCEPTED}
        assert len(event_rows(tmp_path)) == 20

    async def test_a_lock_released_in_time_is_waited_for(self, tmp_path: Path) -> None:
        """Released before the deadline: the waiting deliveries are committed and accepted."""
        path = tmp_path / "events.db"
        writer = GroupCommitWriter(EventStore.open(path), Metrics(), answer_seconds=30.0)
        async with writer.running():
            with _helpers.held_write_lock(path) as holder:
                appends = [
                    asyncio.ensure_future(writer.append(delivery(f"w{i}", str(i).encode())))
                    for i in range(5)
                ]
                await asyncio.to_thread(_helpers.release_lock, holder)
                results = await asyncio.gather(*appends)
        assert {r.outcome for r in results} == {Outcome.ACCEPTED}
        assert len(event_rows(tmp_path)) == 5

    async def test_only_the_deliveries_due_are_refused(self, tmp_path: Path) -> None:
        """A delivery due later than the lock is held waits on; the one due earlier is refused."""
        path = tmp_path / "events.db"
        writer = GroupCommitWriter(EventStore.open(path), Metrics(), answer_seconds=5.0)
        loop = asyncio.get_running_loop()
        async with writer.running():
            with _helpers.held_write_lock(path) as holder:
                soon = asyncio.ensure_future(
                    writer.append(delivery("soon"), deadline=loop.time() + 1.0)
                )
                later = asyncio.ensure_future(writer.append(delivery("later")))
                with pytest.raises(StoreUnavailableError):
                    await soon
                assert not later.done()
                await asyncio.to_thread(_helpers.release_lock, holder)
                assert (await later).outcome is Outcome.ACCEPTED
        assert [row[1] for row in event_rows(tmp_path)] == ["later"]
