"""A log line is always written: what a sender sent is escaped, never raised on."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec
from structlog.testing import capture_logs

from app import logging_setup as logs

if TYPE_CHECKING:
    import pytest

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


def test_structlog_delivery_line_is_escaped_too() -> None:
    """Elsewhere (a terminal, tests) the same values reach structlog already escaped."""
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
