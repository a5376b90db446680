"""Prometheus metrics, on a registry of the application's own (no process-wide singletons)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """Every metric the service exposes at `/metrics`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "bitbybit_deliveries",
            "Authentic deliveries by event type and outcome.",
            ["event_type", "outcome"],
            registry=self.registry,
        )
        # `labels()` validates and locks on every call: a cost per delivery worth caching.
        self._delivery_children: dict[tuple[str, str], Counter] = {}
        self.rejections = Counter(
            "bitbybit_rejections",
            "Deliveries refused, by error code.",
            ["code"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "bitbybit_duplicates",
            "Deliveries whose webhook id was already in the log.",
            registry=self.registry,
        )
        self.commit_batch_size = Histogram(
            "bitbybit_commit_batch_size",
            "Deliveries written per log transaction (group commit).",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "bitbybit_commit_seconds",
            "Time to write and durably commit one batch to the log.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.projection_position = Gauge(
            "bitbybit_projection_position",
            "Last log position applied by each projection.",
            ["projection"],
            registry=self.registry,
        )
        self.projection_lag = Gauge(
            "bitbybit_projection_lag",
            "Events in the log not yet applied by each projection.",
            ["projection"],
            registry=self.registry,
        )
        self.projection_errors = Gauge(
            "bitbybit_projection_errors",
            "Events each projection could not apply (see its errors table).",
            ["projection"],
            registry=self.registry,
        )

    def count_delivery(self, event_type: str, outcome: str) -> None:
        """One authentic delivery; its counter child is looked up once per label pair."""
        child = self._delivery_children.get((event_type, outcome))
        if child is None:
            child = self._delivery_children[event_type, outcome] = self.deliveries.labels(
                event_type, outcome
            )
        child.inc()

    def observe_commit(self, batch_size: int, seconds: float) -> None:
        """Record one log transaction."""
        self.commit_batch_size.observe(batch_size)
        self.commit_seconds.observe(seconds)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
