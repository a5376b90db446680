"""How the commands speak to a person: tables and a progress line, or JSON Lines and logs.

A terminal gets what a person reads; a pipe, a file or serve's log gets what a program does.
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING

import msgspec
import structlog

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

log = structlog.get_logger("app.progress")

# Wide columns (an error message, a long id) are cut so a row stays one line.
MAX_CELL = 60
_encode = msgspec.json.Encoder().encode


def wants_json(as_json: bool, stream: IO[str]) -> bool:
    """JSON when asked, or when the output is a pipe or a file rather than a person."""
    return as_json or not stream.isatty()


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], stream: IO[str] | None = None
) -> None:
    """Columns padded to their widest cell; NULL shown as `-`."""
    stream = sys.stdout if stream is None else stream
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        stream.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        stream.write("\n")


def print_json_lines(items: Iterable[object], stream: IO[str] | None = None) -> None:
    """One JSON object per line."""
    stream = sys.stdout if stream is None else stream
    for item in items:
        stream.write(_encode(item).decode())
        stream.write("\n")


def _cell(value: object) -> str:
    text = "-" if value is None else " ".join(str(value).split())
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


class Progress:
    """Where a long job stands: a rewritten line on a terminal, else a log line now and then.

    Elsewhere (a file, serve's log) it logs every few seconds, or not at all when stdout is
    taken (`--json`).

    One job may have several phases (sync's entity types), each counted from its own start.
    """

    LOG_EVERY_SECONDS = 5.0

    def __init__(
        self,
        stream: IO[str] | None,
        *,
        event: str,
        log_lines: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream if stream is not None and stream.isatty() else None
        self._event = event
        self._log_lines = log_lines
        self._clock = clock
        self._phase = ""
        self._total: int | None = None
        self._started = self._last_log = clock()
        self.done = 0

    def begin(self, phase: str = "", total: int | None = None) -> None:
        """A new phase starts, of `total` units if known: its rate is counted from now."""
        self._end_line()
        self._phase, self._total, self.done = phase, total, 0
        self._started = self._last_log = self._clock()

    def advance(self, count: int, step: str = "", total: int | None = None) -> None:
        """`count` more units are done; `step` names where the job is (a page, a check)."""
        self.done += count
        if total is not None:
            self._total = total
        now = self._clock()
        rate = self.done / max(now - self._started, 1e-6)
        left = None
        if self._total is not None and rate > 0:
            left = max(self._total - self.done, 0) / rate
        if self._stream is None:
            if self._log_lines and now - self._last_log >= self.LOG_EVERY_SECONDS:
                self._last_log = now
                log.info(
                    self._event,
                    phase=self._phase or None,
                    step=step or None,
                    done=self.done,
                    total=self._total,
                    per_second=round(rate, 1),
                    seconds_left=None if left is None else round(left),
                )
            return
        where = ", ".join(part for part in (self._phase, step) if part)
        of = "" if self._total is None else f"/{self._total:,}"
        eta = "" if left is None else f", {int(left) // 60}:{int(left) % 60:02d} left"
        prefix = f"{where}: " if where else ""
        self._stream.write(f"\r{prefix}{self.done:,}{of} done, {rate:,.0f}/s{eta}\x1b[K")
        self._stream.flush()

    def finish(self) -> None:
        """End the progress line, so that what follows starts on a line of its own."""
        self._end_line()

    def _end_line(self) -> None:
        if self._stream is not None and self.done:
            self._stream.write("\n")
            self._stream.flush()
