"""The last sync and the last webhook delivery as Prometheus gauges, read at each scrape.

Read from the files (`sync.db`, `events.db`) rather than kept in memory, so that a pass
run by hand, by cron or by `serve --sync-every`, and a restart of `serve`, all show.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.eventlog.reads import LogReader
from app.sqlite import read_only_uri
from app.sync.state import last_run

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client import Metric

    from app.settings import Settings

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
        report = last_run(self._settings.data_dir)
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
