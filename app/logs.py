"""Structured logging, configured once by the CLI: JSON lines when stdout is not a terminal."""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import sys
import threading
import time
from typing import BinaryIO, cast

import msgspec
import structlog

from app.rules import iso_now


def configure_logging(*, batched: bool = False) -> None:
    """Human-readable on a terminal, one JSON object per line otherwise.

    `batched` (for `serve` only) flushes lines a few times a second from a background
    thread; commands that fork (rebuild) must not have that thread.
    """
    # No context-variable merging (nothing binds any) and a timestamp formatted once a
    # second: this runs once per delivery, on the endpoint's hot path.
    shared: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        _add_timestamp,
    ]
    if sys.stdout.isatty():
        structlog.configure(
            processors=[*shared, structlog.dev.ConsoleRenderer()],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.PrintLoggerFactory(),
            cache_logger_on_first_use=True,
        )
    else:
        structlog.configure(
            processors=[
                *shared,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_json_bytes),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            # structlog only calls `write` and `flush` on its output.
            logger_factory=structlog.BytesLoggerFactory(
                cast("BinaryIO", _BatchedOutput(sys.stdout.buffer)) if batched else None
            ),
            cache_logger_on_first_use=True,
        )


def _add_timestamp(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    event["timestamp"] = iso_now(time.time())
    return event


class _BatchedOutput:
    """Log lines gathered in memory and written a few times a second, in one write.

    A write per delivery line was the largest single cost of the endpoint under load (a
    system call per request), and the stream's own buffer cannot be relied on: with
    `PYTHONUNBUFFERED` set, as container images often do, it writes through. Lines reach
    the output within `FLUSH_SECONDS`, and at exit; a `kill -9` can lose the last
    fraction of a second of log lines, never data.
    """

    FLUSH_SECONDS = 0.2

    def __init__(self, output: BinaryIO) -> None:
        self._output = output
        self._lines: collections.deque[bytes] = collections.deque()
        self.write = self._lines.append
        self._writing = threading.Lock()  # the flusher and the exit hook
        flusher = threading.Thread(target=self._flush_forever, name="log-flush", daemon=True)
        flusher.start()
        atexit.register(self._write_out)

    def flush(self) -> None:
        """Leave flushing to the background thread."""

    def _write_out(self) -> None:
        # A deque's append and popleft are atomic: lines logged meanwhile wait for next time.
        lines = self._lines
        with self._writing, contextlib.suppress(ValueError, OSError):
            if lines:
                self._output.write(b"".join([lines.popleft() for _ in range(len(lines))]))
                self._output.flush()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            self._write_out()


def _json_bytes(event: object, **_options: object) -> bytes:
    # structlog passes json.dumps-style options that msgspec does not take; values it
    # cannot encode are logged by their repr rather than dropping the line.
    return msgspec.json.encode(event, enc_hook=repr)
