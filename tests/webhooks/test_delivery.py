"""BitByBit's delivery headers, without HTTP: the event timestamp header's integers."""

from __future__ import annotations

import pytest

from app.webhooks.delivery import parse_event_timestamp


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("1705314600", 1705314600),
        (" 1705314600 ", 1705314600),
        ("-5", -5),
        ("9" * 18, int("9" * 18)),
        ("9" * 19, None),
        ("\u00b2", None),  # a digit to str.isdigit, not to int() or the SPEC
        ("soon", None),
    ],
)
def test_event_timestamp_parsing(value: str, parsed: int | None) -> None:
    """Integers (ASCII digits, an optional sign and surrounding spaces) parse; others not."""
    assert parse_event_timestamp(value) == parsed
