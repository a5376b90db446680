"""Erasure knows which entity a body is about as the projections do.

The log's layer may not import the projections (they are above it), so `erasure` keeps
its own names of the event types and key paths of customers, orders and messages; the
projections own them, and this test holds the two together.
"""

from __future__ import annotations

import projections
from app.eventlog import erasure


def test_erasure_names_the_projections_event_types_and_keys() -> None:
    """Each kind erasure redacts is a projection's event types and payload key."""
    by_name = {p.NAME: p for p in projections.discover()}
    pairs = (
        ("customers", erasure.CUSTOMER_TYPES, erasure.CUSTOMER_KEY),
        ("orders", erasure.ORDER_TYPES, erasure.ORDER_KEY),
        ("messages", erasure.MESSAGE_TYPES, erasure.MESSAGE_KEY),
    )
    for name, event_types, key in pairs:
        assert event_types == by_name[name].EVENT_TYPES, name
        assert key == by_name[name].TABLE.payload_key, name


def test_a_phone_number_written_three_ways_is_one_number() -> None:
    """`0812…`, `+62 812-…` and `62812…` normalise alike; too few digits is no number."""
    assert {erasure.normalise_phone(p) for p in ("0812345678", "+62 812-345-678")} == {
        "62812345678"
    }
    assert erasure.normalise_phone("12-34") is None
