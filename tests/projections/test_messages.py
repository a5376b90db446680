"""Messages and their status history: events in, `SELECT` out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests._helpers import T0, Harness, iso, rebuilt, replayed, sample

if TYPE_CHECKING:
    from pathlib import Path

INBOUND = "msg_jkl012"
OUTBOUND = "msg_mno345"


def message(harness: Harness, key: str) -> dict[str, Any]:
    row = harness.row("messages", key, key_column="message_id")
    assert row is not None
    return row


def history(harness: Harness, key: str) -> list[tuple[Any, ...]]:
    rows = harness.select(
        "SELECT status, occurred_at, webhook_id FROM message_status_history"
        " WHERE message_id = ? ORDER BY webhook_id",
        (key,),
    )
    return [(r["status"], r["occurred_at"], r["webhook_id"]) for r in rows]


def status(harness: Harness, status: str | None, *, timestamp: int | None, webhook_id: str) -> None:
    harness.send(
        "message.status.updated",
        sample("message.status.updated", status=status),
        timestamp=timestamp,
        webhook_id=webhook_id,
    )


def test_received_sample_gives_every_column(harness: Harness) -> None:
    """The documented `message.received` is an inbound message with no status."""
    harness.send("message.received", sample("message.received"))

    assert message(harness, INBOUND) == {
        "message_id": INBOUND,
        "direction": "inbound",
        "sender": "+6281234567890",
        "recipient": None,
        "body": "Hi, I have a question about my order",
        "source": "WHATSAPP_META",
        "template_name": None,
        "status": None,
        "received_at": "2024-01-15T10:30:00.000Z",
        "status_updated_at": None,
    }
    assert history(harness, INBOUND) == []


def test_status_sample_gives_every_column(harness: Harness) -> None:
    """The documented `message.status.updated` is an outbound message and one history row."""
    harness.send(
        "message.status.updated",
        sample("message.status.updated"),
        timestamp=T0 + 5,
        webhook_id="wh-1",
    )

    assert message(harness, OUTBOUND) == {
        "message_id": OUTBOUND,
        "direction": "outbound",
        "sender": None,
        "recipient": "+6281234567890",
        "body": None,
        "source": None,
        "template_name": "order_confirmation",
        "status": "sent",
        "received_at": None,
        "status_updated_at": "2024-01-15T10:30:05.000Z",
    }
    assert history(harness, OUTBOUND) == [("sent", "2024-01-15T10:30:05.000Z", "wh-1")]


def test_read_before_delivered_keeps_read(harness: Harness) -> None:
    """Status never goes back: a late `delivered` after `read` leaves `read` and its time."""
    status(harness, "read", timestamp=T0 + 20, webhook_id="wh-2")
    status(harness, "delivered", timestamp=T0 + 10, webhook_id="wh-1")

    row = message(harness, OUTBOUND)
    assert (row["status"], row["status_updated_at"]) == ("read", iso(T0 + 20))


def test_delivered_with_later_timestamp_does_not_beat_read(harness: Harness) -> None:
    """Rank beats time: `delivered` stamped after `read` still ranks below it."""
    status(harness, "read", timestamp=T0, webhook_id="wh-1")
    status(harness, "delivered", timestamp=T0 + 60, webhook_id="wh-2")

    row = message(harness, OUTBOUND)
    assert (row["status"], row["status_updated_at"]) == ("read", iso(T0))


def test_status_moves_forward(harness: Harness) -> None:
    """Status climbs pending < sent < delivered < read in arrival order."""
    for n, value in enumerate(["pending", "sent", "delivered", "read"]):
        status(harness, value, timestamp=T0 + n, webhook_id=f"wh-{n}")
        assert message(harness, OUTBOUND)["status"] == value


def test_failed_beats_read(harness: Harness) -> None:
    """`failed` outranks every other status, even an older-stamped one."""
    status(harness, "read", timestamp=T0 + 60, webhook_id="wh-2")
    status(harness, "failed", timestamp=T0, webhook_id="wh-1")

    row = message(harness, OUTBOUND)
    assert (row["status"], row["status_updated_at"]) == ("failed", iso(T0))


def test_unknown_status_ranks_lowest(harness: Harness) -> None:
    """A status the ranking does not know never hides a known one, but is kept in history."""
    status(harness, "sent", timestamp=T0, webhook_id="wh-1")
    status(harness, "bounced_somehow", timestamp=T0 + 60, webhook_id="wh-2")

    assert message(harness, OUTBOUND)["status"] == "sent"
    assert history(harness, OUTBOUND) == [
        ("sent", iso(T0), "wh-1"),
        ("bounced_somehow", iso(T0 + 60), "wh-2"),
    ]


def test_unknown_status_alone_is_shown(harness: Harness) -> None:
    """With nothing known to outrank it, an unknown status is the status."""
    status(harness, "bounced_somehow", timestamp=T0, webhook_id="wh-1")

    assert message(harness, OUTBOUND)["status"] == "bounced_somehow"


def test_equal_rank_tie_goes_to_timestamp_then_webhook_id(harness: Harness) -> None:
    """Two `pending`/`queued`: the larger timestamp header wins, then the larger id."""
    status(harness, "queued", timestamp=T0 + 1, webhook_id="wh-1")
    status(harness, "pending", timestamp=T0, webhook_id="wh-2")
    assert message(harness, OUTBOUND)["status"] == "queued"

    status(harness, "pending", timestamp=T0 + 1, webhook_id="wh-3")
    assert message(harness, OUTBOUND)["status"] == "pending"


def test_status_without_timestamp_header_ranks_below_one_with_it(harness: Harness) -> None:
    """Equal rank: a delivery lacking the header loses even with a larger id."""
    status(harness, "queued", timestamp=T0, webhook_id="wh-1")
    status(harness, "pending", timestamp=None, webhook_id="wh-9")

    assert message(harness, OUTBOUND)["status"] == "queued"


def test_history_has_one_row_per_status_delivery(harness: Harness) -> None:
    """Every status delivery is a history row, the same status twice included."""
    status(harness, "sent", timestamp=T0, webhook_id="wh-1")
    status(harness, "sent", timestamp=T0 + 1, webhook_id="wh-2")
    status(harness, "delivered", timestamp=T0 + 2, webhook_id="wh-3")
    status(harness, "sent", timestamp=T0 + 3, webhook_id="wh-4")

    assert history(harness, OUTBOUND) == [
        ("sent", iso(T0), "wh-1"),
        ("sent", iso(T0 + 1), "wh-2"),
        ("delivered", iso(T0 + 2), "wh-3"),
        ("sent", iso(T0 + 3), "wh-4"),
    ]
    assert message(harness, OUTBOUND)["status"] == "delivered"


def test_status_for_inbound_message_keeps_direction_inbound(harness: Harness) -> None:
    """A status event for a received message ranks into status but not direction."""
    harness.send(
        "message.status.updated",
        {"messageId": INBOUND, "status": "read", "to": "+620000"},
        timestamp=T0 + 60,
    )
    harness.send("message.received", sample("message.received"), timestamp=T0)

    row = message(harness, INBOUND)
    assert row["direction"] == "inbound"
    assert row["status"] == "read"
    assert row["sender"] == "+6281234567890"
    assert row["recipient"] == "+620000"
    assert len(history(harness, INBOUND)) == 1


def test_status_before_received_then_received_in_either_order(
    harness: Harness, tmp_path: Path
) -> None:
    """The same two events give the same row whichever arrives first."""
    other = Harness(tmp_path / "other")
    try:
        for h, order in ((harness, (0, 1)), (other, (1, 0))):
            events = [
                ("message.received", sample("message.received"), T0, "wh-r"),
                ("message.status.updated", {"messageId": INBOUND, "status": "read"}, T0, "wh-s"),
            ]
            for i in order:
                event_type, payload, timestamp, webhook_id = events[i]
                h.send(event_type, payload, timestamp=timestamp, webhook_id=webhook_id)
        assert harness.dump() == other.dump()
    finally:
        other.close()


def test_status_event_without_status_writes_other_fields(harness: Harness) -> None:
    """A status event with no `status` fills recipient and template and logs a NULL status."""
    status(harness, "sent", timestamp=T0, webhook_id="wh-1")
    harness.send(
        "message.status.updated",
        {"messageId": OUTBOUND, "templateName": "shipping_update"},
        timestamp=T0 + 1,
        webhook_id="wh-2",
    )

    row = message(harness, OUTBOUND)
    assert (row["status"], row["template_name"]) == ("sent", "shipping_update")
    assert history(harness, OUTBOUND)[1] == (None, iso(T0 + 1), "wh-2")


def test_status_time_falls_back_to_signature_time(harness: Harness) -> None:
    """Without the header, `status_updated_at` is the signature's `t` (`event_time`)."""
    harness.send(
        "message.status.updated",
        sample("message.status.updated"),
        timestamp=None,
        signed_at=T0 + 42,
    )

    assert message(harness, OUTBOUND)["status_updated_at"] == iso(T0 + 42)


def test_duplicate_and_rebuild_change_nothing(harness: Harness, tmp_path: Path) -> None:
    """Re-applying the log or rebuilding it leaves the same rows and history."""
    status(harness, "read", timestamp=T0 + 20, webhook_id="wh-2")
    status(harness, "delivered", timestamp=T0 + 10, webhook_id="wh-1")
    harness.send("message.received", sample("message.received"), webhook_id="wh-3")
    before = harness.dump()

    assert rebuilt(tmp_path / "rebuild", harness.store) == before
    assert replayed(harness) == before


def test_history_keeps_the_status_text_as_sent(harness: Harness) -> None:
    """History stores the status exactly as `status` does, an empty string included."""
    status(harness, "", timestamp=T0, webhook_id="wh-1")

    assert message(harness, OUTBOUND)["status"] == ""
    assert history(harness, OUTBOUND) == [("", iso(T0), "wh-1")]
