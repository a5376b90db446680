"""Progress of a pass: one rewritten line on a terminal, structured log lines otherwise."""

from __future__ import annotations

import time
from typing import IO, TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from collections.abc import Callable

log = structlog.get_logger("app.sync")


class Progress:
    """Pages, entities, rate and time left (from `meta.total`) of the entity type at hand."""

    def __init__(
        self,
        stream: IO[str] | None,
        *,
        log_lines: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A terminal gets the rewritten line; anything else (a file, serve's log) gets
        # log lines, unless stdout is for something else (`--json`).
        self._stream = stream if stream is not None and stream.isatty() else None
        self._log_lines = log_lines
        self._clock = clock
        self._kind = ""
        self._started = clock()
        self._count = 0

    def begin(self, kind: str) -> None:
        """A new entity type (or phase) starts: its rate is counted from now."""
        self._end_line()
        self._kind, self._started, self._count = kind, self._clock(), 0

    def advance(self, step: str, entities: int, total: int | None) -> None:
        """`entities` more were read; `step` names where the pass is (a page, a check)."""
        self._count += entities
        elapsed = max(self._clock() - self._started, 1e-6)
        rate = self._count / elapsed
        left = None
        if total is not None and rate > 0:
            left = max(total - self._count, 0) / rate
        if self._stream is None:
            if not self._log_lines:
                return
            log.info(
                "sync_progress",
                entity=self._kind,
                step=step,
                entities=self._count,
                total=total,
                per_second=round(rate, 1),
                seconds_left=None if left is None else round(left),
            )
            return
        of = f"/{total}" if total is not None else ""
        eta = "" if left is None else f", {int(left) // 60}:{int(left) % 60:02d} left"
        self._stream.write(
            f"\r{self._kind}: {step}, {self._count}{of} entities, {rate:.0f}/s{eta}\x1b[K"
        )
        self._stream.flush()

    def finish(self) -> None:
        """End the progress line, so that the report starts on a line of its own."""
        self._end_line()

    def _end_line(self) -> None:
        if self._stream is not None and self._count:
            self._stream.write("\n")
            self._stream.flush()
