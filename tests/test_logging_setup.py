"""Log output of `serve`: the per-delivery line and the batched writer behind it.

A log line is always written: what a sender sent is escaped, never raised on.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

import msgspec
import structlog
from structlog.testing import capture_logs

from app import logging_setup as logs

if TYPE_CHECKING:
    import pytest


def test_fast_delivery_line_has_the_structlog_line_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """When serving, the line is encoded directly, with the keys a structlog line has."""
    written: list[bytes] = []
    monkeypatch.setattr(logs, "_delivery_sink", [written.append])
    logs.log_delivery(
        logging.WARNING,
        "wh_1",
        "order.updated",
        "conflicting_duplicate",
        1.5,
        peer="10.0.0.7",
        forwarded_for="203.0.113.9, \x1b[31m",
    )
    (line,) = written
    assert line.endswith(b"\n")
    decoded = msgspec.json.decode(line)
    assert decoded.pop("timestamp").endswith("Z")
    assert decoded == {
        "webhook_id": "wh_1",
        "event_type": "order.updated",
        "outcome": "conflicting_duplicate",
        "duration_ms": 1.5,
        "peer": "10.0.0.7",
        # As sent, escaped: a control character never reaches the terminal reading it.
        "forwarded_for": "203.0.113.9, \\x1b[31m",
        "event": "delivery",
        "level": "warning",
    }


def test_batched_output_writes_every_line_once_in_order() -> None:
    """Lines wait in memory and leave in one write, in the order they were logged."""
    output = io.BytesIO()
    batched = logs.BatchedOutput(output)  # not started: the test writes out itself
    for number in range(5):
        batched.write(b"line %d\n" % number)
    assert output.getvalue() == b""
    batched.write_out()
    batched.write_out()  # nothing new: nothing written twice
    assert output.getvalue() == b"".join(b"line %d\n" % n for n in range(5))


def test_a_stalled_output_keeps_the_newest_lines_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the cap the oldest pending lines go, memory stays flat, and a line says so."""
    monkeypatch.setattr(logs.BatchedOutput, "MAX_PENDING_LINES", 3)
    output = io.BytesIO()
    batched = logs.BatchedOutput(output)  # not started: the test writes out itself
    for number in range(5):
        batched.write(b"line %d\n" % number)
    batched.write_out()
    written = output.getvalue().splitlines()
    assert msgspec.json.decode(written[0])["event"] == "log_lines_dropped"
    assert written[1:] == [b"line 2", b"line 3", b"line 4"]


# ---- A log line is always written: what a sender sent is escaped, never raised on.


# What aiohttp makes of a latin-1 "é" (byte 0xE9) in a header: a lone surrogate.
UNDECODABLE = "wh_\udce9"


def test_fast_delivery_line_escapes_what_utf8_cannot_encode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The line `serve` writes is still valid JSON, with the byte shown as an escape."""
    written: list[bytes] = []
    monkeypatch.setattr(logs, "_delivery_sink", [written.append])
    logs.log_delivery(logging.WARNING, UNDECODABLE, "order.\x1b[31m", "malformed_header", 0.5)
    (line,) = written
    decoded = msgspec.json.decode(line)
    assert decoded["webhook_id"] == "wh_\\udce9"
    assert decoded["event_type"] == "order.\\x1b[31m"


def test_structlog_delivery_line_is_escaped_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Elsewhere (a terminal, tests) the same values reach structlog already escaped."""
    # Commands run in-process by earlier tests configure structlog with cached loggers: a
    # logger first used under an earlier configuration keeps that one's processors, which
    # `capture_logs` does not reach. A fresh one binds to the configuration in force.
    monkeypatch.setattr(logs, "_delivery_log", structlog.get_logger("app.webhook"))
    monkeypatch.setattr(logs, "_delivery_sink", [])
    with capture_logs() as lines:
        logs.log_delivery(logging.INFO, UNDECODABLE, "order.created", "malformed_header", 0.5)
    assert lines[0]["webhook_id"] == "wh_\\udce9"


def test_any_line_with_an_unencodable_value_still_renders() -> None:
    """The processor in front of both renderers escapes only what UTF-8 refuses."""
    event = {"event": "x", "path": "/\udcff", "name": "Budi Santoso é"}
    escaped = logs._escape_unencodable(None, "info", event)  # noqa: SLF001 - the processor
    assert escaped == {"event": "x", "path": "/\\udcff", "name": "Budi Santoso é"}
    assert msgspec.json.encode(escaped)


def test_printable_ascii_passes_unchanged() -> None:
    """What BitByBit sends costs nothing to log."""
    value = "evt_clxxxxxxxxxxxxxxxxxx"
    assert logs.printable(value) is value
