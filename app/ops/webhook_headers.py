"""The headers a BitByBit delivery carries, built in one place for every sender and viewer.

`send-test` and `replay` send them; `events --id` shows the ones the log keeps. The names
are the endpoint's own (`app.eventlog.ingest`), so what is sent is what is read.
"""

from __future__ import annotations

from app.eventlog.ingest import EVENT_HEADER, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER

USER_AGENT = "BitByBit-Webhooks/1.0"


def bitbybit_headers(
    webhook_id: str, event_type: str, event_timestamp: int | None, signature: str
) -> dict[str, str]:
    """The four `X-BitByBit-Webhook-*` headers; no timestamp header when there is none."""
    headers = {ID_HEADER: webhook_id, EVENT_HEADER: event_type}
    if event_timestamp is not None:
        headers[TIMESTAMP_HEADER] = str(event_timestamp)
    headers[SIGNATURE_HEADER] = signature
    return headers


def request_headers(
    webhook_id: str, event_type: str, event_timestamp: int | None, signature: str
) -> dict[str, str]:
    """Everything BitByBit puts on a delivery's request: type, agent and its four headers."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **bitbybit_headers(webhook_id, event_type, event_timestamp, signature),
    }
