"""Structured logging, configured once by the CLI: JSON lines when stdout is not a terminal."""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, BinaryIO, cast

import msgspec
import structlog

from app.instants import format_instant

if TYPE_CHECKING:
    from collections.abc import Callable


def configure_logging(*, batched: bool = False, level: str = "info") -> None:
    """Human-readable on a terminal, one JSON object per line otherwise.

    `batched` (for `serve` only) flushes lines a few times a second from a background
    thread; commands that fork (rebuild) must not have that thread. `level` is the least
    severe level written (`BITBYBIT_LOG_LEVEL`).
    """
    threshold = logging.getLevelNamesMapping()[level.upper()]
    # No context-variable merging (nothing binds any) and a timestamp formatted once a
    # second: this runs once per delivery, on the endpoint's hot path.
    shared: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        _add_timestamp,
    ]
    if sys.stdout.isatty():
        structlog.configure(
            processors=[*shared, _escape_unencodable, structlog.dev.ConsoleRenderer()],
            wrapper_class=structlog.make_filtering_bound_logger(threshold),
            logger_factory=structlog.PrintLoggerFactory(),
            cache_logger_on_first_use=True,
        )
    else:
        output = BatchedOutput(sys.stdout.buffer).start() if batched else None
        structlog.configure(
            processors=[
                *shared,
                structlog.processors.format_exc_info,
                _escape_unencodable,
                structlog.processors.JSONRenderer(serializer=_json_bytes),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(threshold),
            # structlog only calls `write` and `flush` on its output.
            logger_factory=structlog.BytesLoggerFactory(cast("BinaryIO", output)),
            cache_logger_on_first_use=True,
        )
        # The fast delivery line is an info line: above info, structlog filters it.
        if output is not None and threshold <= logging.INFO:
            _delivery_sink[:] = [output.write]


class _DeliveryLine(msgspec.Struct):
    """The per-delivery line, its keys in the order structlog's JSON lines have them."""

    webhook_id: str
    event_type: str
    outcome: str
    duration_ms: float
    peer: str
    forwarded_for: str | None
    event: str
    level: str
    timestamp: str


_delivery_log = structlog.get_logger("app.webhook")
_delivery_sink: list[Callable[[bytes], object]] = []
_encode_line = msgspec.json.Encoder().encode
_LEVEL_NAMES = {logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}


def log_delivery(  # noqa: PLR0913 - the fields of one line
    level: int,
    webhook_id: str,
    event_type: str,
    outcome: str,
    duration_ms: float,
    *,
    peer: str = "",
    forwarded_for: str | None = None,
) -> None:
    """The one line each delivery gets: the same line a structlog call would write.

    When `serve` writes JSON, the line is encoded in one call and handed straight to the
    batched output: structlog's processor chain took about 8 µs a line, a noticeable share
    of a delivery's cost at thousands a second. Elsewhere (a terminal, tests capturing
    structlog) it goes through structlog.

    The id and event type are whatever the sender sent (a refused delivery's too), so
    they are escaped to printable ASCII: a line is always written, never an error. So is
    `X-Forwarded-For`, kept as sent (behind a proxy, the peer is the proxy): with the
    peer, it is what traces a flood of refusals back to its sender.
    """
    webhook_id = printable(webhook_id)
    event_type = printable(event_type)
    peer = printable(peer)
    if forwarded_for is not None:
        forwarded_for = printable(forwarded_for)
    if _delivery_sink:
        line = _DeliveryLine(
            webhook_id,
            event_type,
            outcome,
            duration_ms,
            peer,
            forwarded_for,
            "delivery",
            _LEVEL_NAMES[level],
            format_instant(time.time()),
        )
        _delivery_sink[0](_encode_line(line) + b"\n")
        return
    _delivery_log.log(
        level,
        "delivery",
        webhook_id=webhook_id,
        event_type=event_type,
        outcome=outcome,
        duration_ms=duration_ms,
        peer=peer,
        forwarded_for=forwarded_for,
    )


def printable(value: str) -> str:
    """`value` itself when it is printable ASCII, else with backslash escapes in its place.

    What a sender puts in a header ends up in log lines: escaping keeps the line
    encodable (aiohttp turns undecodable bytes into lone surrogates, which UTF-8 refuses)
    and keeps control characters away from the terminal reading it.
    """
    if value.isascii() and value.isprintable():
        return value
    return value.encode("unicode_escape").decode("ascii")


def _escape_unencodable(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Any string value that UTF-8 cannot encode is escaped, so no line fails to render."""
    for key, value in event.items():
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                event[key] = printable(value)
    return event


def _add_timestamp(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    event["timestamp"] = format_instant(time.time())
    return event


class BatchedOutput:
    """Log lines gathered in memory and written a few times a second, in one write.

    A write per delivery line was the largest single cost of the endpoint under load (a
    system call per request), and the stream's own buffer cannot be relied on: with
    `PYTHONUNBUFFERED` set, as container images often do, it writes through. Lines reach
    the output within `FLUSH_SECONDS`, and at exit; a `kill -9` can lose the last
    fraction of a second of log lines, never data.
    """

    FLUSH_SECONDS = 0.2
    # About 40 MB of lines. Should the output stall (a stuck log pipe), the oldest lines
    # beyond it are dropped rather than memory growing without end; a line says so.
    MAX_PENDING_LINES = 200_000

    def __init__(self, output: BinaryIO) -> None:
        self._output = output
        self._lines: collections.deque[bytes] = collections.deque(maxlen=self.MAX_PENDING_LINES)
        self.write = self._lines.append
        self._writing = threading.Lock()  # the flusher and the exit hook

    def start(self) -> BatchedOutput:
        """Write out every `FLUSH_SECONDS` from a thread of its own, and once more at exit."""
        flusher = threading.Thread(target=self._flush_forever, name="log-flush", daemon=True)
        flusher.start()
        atexit.register(self.write_out)
        return self

    def flush(self) -> None:
        """Leave flushing to the background thread."""

    def write_out(self) -> None:
        """Write every pending line in one write (what the thread does at each tick)."""
        # A deque's append and popleft are atomic: lines logged meanwhile wait for next time.
        lines = self._lines
        with self._writing:
            if not lines:
                return
            full = len(lines) == lines.maxlen
            batch = [lines.popleft() for _ in range(len(lines))]
            if full:
                batch.insert(0, _DROPPED_LINE)
            # An output that fails (closed, broken pipe) loses these lines, never data:
            # retrying a broken pipe would only spin. A stalled one blocks here, and the
            # bounded queue keeps memory flat meanwhile.
            with contextlib.suppress(ValueError, OSError):
                self._output.write(b"".join(batch))
                self._output.flush()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            self.write_out()


_DROPPED_LINE = (
    b'{"event":"log_lines_dropped","level":"warning",'
    b'"detail":"the log output fell behind; the oldest pending lines were dropped"}\n'
)


def _json_bytes(event: object, **_options: object) -> bytes:
    # structlog passes json.dumps-style options that msgspec does not take; values it
    # cannot encode are logged by their repr rather than dropping the line.
    return msgspec.json.encode(event, enc_hook=repr)
