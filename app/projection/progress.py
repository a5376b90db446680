"""A rebuild's progress: a live line on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import time
from typing import IO

import structlog

log = structlog.get_logger("app.projection.rebuild")

LOG_EVERY_SECONDS = 5.0


class Progress:
    """Events done, rate and time left: a live line on a terminal, a log line otherwise."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self._total = total
        self._stream = stream
        self._tty = stream.isatty()
        self._started = time.monotonic()
        self._last_log = self._started
        self.done = 0

    def advance(self, events: int) -> None:
        """Count `events` more and show where the rebuild stands."""
        self.done += events
        now = time.monotonic()
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        left = max(self._total - self.done, 0) / rate if rate else 0.0
        if self._tty:
            self._stream.write(
                f"\r{self.done:,}/{self._total:,} events  {rate:,.0f}/s  {left:,.0f} s left "
            )
            self._stream.flush()
        elif now - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = now
            log.info(
                "rebuild_progress",
                done=self.done,
                total=self._total,
                rate=round(rate),
                seconds_left=round(left),
            )

    def finish(self) -> None:
        """End the live line."""
        if self._tty:
            self._stream.write("\n")
