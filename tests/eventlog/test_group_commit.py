"""The group-commit writer: concurrent deliveries share transactions, and so does the probe."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from app.eventlog.group_commit import GroupCommitWriter
from app.eventlog.store import EventStore, Outcome
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
