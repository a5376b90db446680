"""Log output of `serve`: the per-delivery line and the batched writer behind it."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

import msgspec

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
