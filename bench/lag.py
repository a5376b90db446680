"""The live projections' lag, read from `/readyz`: during the load and until it drains."""

from __future__ import annotations

import math
import threading
import time
import urllib.request

import msgspec

POLL_SECONDS = 0.25
DRAIN_POLL_SECONDS = 0.05
DRAIN_TIMEOUT = 30.0


class _Projection(msgspec.Struct):
    name: str
    lag: int
    errors: int


class _Ready(msgspec.Struct):
    projections: list[_Projection]


def read_lag(url: str) -> tuple[int, int] | None:
    """(largest lag, total projection errors) from `/readyz`, or None if it did not answer."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - local http URL
            ready = msgspec.json.decode(answer.read(), type=_Ready)
    except (OSError, msgspec.DecodeError):
        return None
    return (
        max((p.lag for p in ready.projections), default=0),
        sum(p.errors for p in ready.projections),
    )


class LagMonitor(threading.Thread):
    """Polls `/readyz` every `interval` seconds while the load runs; keeps the largest lag."""

    def __init__(self, url: str, interval: float = POLL_SECONDS) -> None:
        super().__init__(name="readyz-poller", daemon=True)
        self._url = url
        self._interval = interval
        self._stop_event = threading.Event()
        self.samples: list[int] = []
        self.failures = 0

    def run(self) -> None:
        """Sample until `stop()`."""
        while not self._stop_event.is_set():
            reading = read_lag(self._url)
            if reading is None:
                self.failures += 1
            else:
                self.samples.append(reading[0])
            self._stop_event.wait(self._interval)

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop_event.set()
        self.join()

    @property
    def max_lag(self) -> int:
        """The largest lag seen, in events."""
        return max(self.samples, default=0)


def time_to_drain(url: str, started_at: float) -> tuple[float, int]:
    """Seconds from `started_at` until every projection's lag is 0; and the error count."""
    deadline = started_at + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        reading = read_lag(url)
        if reading is not None and reading[0] == 0:
            return time.monotonic() - started_at, reading[1]
        time.sleep(DRAIN_POLL_SECONDS)
    return math.inf, -1
