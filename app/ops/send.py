"""Sending deliveries the way BitByBit does: `send-test`'s samples and `replay`'s stored ones.

`send-test` checks an installation end to end: the secret, the URL, the signature check,
the log and the projections. Its samples go one after another, in the catalogue's order,
so each entity is created before it is updated or deleted.

`replay` sends stored deliveries as BitByBit sent them: the stored body byte for byte,
the stored webhook id, event type and timestamp headers, and a signature made now (`t`
is the sending time, or the receiver's tolerance window would refuse it) with the
receiver's secret. Because the id is kept, a receiver that deduplicates by id (this
service does) takes each delivery once, however often it is replayed. Deliveries go
oldest first, one at a time, paced to `rate` a second so a merchant's handler is not
flooded; the log is read a page at a time, each page its own short read, so a long
replay never holds the log's WAL from being checkpointed.

Both print a line per answer as it comes, to the stream they are given.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sys
import time
from typing import IO, TYPE_CHECKING

import aiohttp
import msgspec

from app.ops import inspection
from app.sqlite import connect_read_only
from app.webhooks.delivery import ID_HEADER, request_headers
from app.webhooks.samples import EVENT_TYPES, sample_body
from app.webhooks.signature import sign

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from app.eventlog.rows import StoredEvent

# The sender gives up on an endpoint after 30 s; so does the test.
TIMEOUT_SECONDS = 30
# The sender keeps at most 4 KB of an answer; a terminal line needs far less.
MAX_SHOWN_ANSWER = 500
# Deliveries a replay reads from the log at a time.
PAGE = 500


class _Answer(msgspec.Struct):
    status: str | None = None


_answer = msgspec.json.Decoder(_Answer)


@dataclasses.dataclass(frozen=True, slots=True)
class Sent:
    """One test delivery and what the endpoint answered."""

    event_type: str
    webhook_id: str
    http_status: int
    answer: str

    @property
    def accepted(self) -> bool:
        """HTTP 200 with `{"status": "accepted"}`: the delivery is in the log."""
        if self.http_status != 200:
            return False
        try:
            return _answer.decode(self.answer).status == "accepted"
        except msgspec.DecodeError:
            return False


def new_webhook_id() -> str:
    """A fresh id shaped like BitByBit's (`evt_` and 24 random lowercase characters)."""
    return "evt_" + secrets.token_hex(12)


def signed_request(event_type: str, secret: bytes, now: float) -> tuple[dict[str, str], bytes]:
    """The headers and body BitByBit would send for a sample `event_type` at `now`."""
    body = sample_body(event_type, now)
    timestamp = int(now)
    signature = sign(secret, timestamp, body)
    return request_headers(new_webhook_id(), event_type, timestamp, signature), body


async def send(
    url: str,
    secret: bytes,
    event_types: Sequence[str] = EVENT_TYPES,
    count: int = 1,
    stream: IO[str] | None = None,
) -> list[Sent]:
    """Post `count` rounds of one sample delivery per event type; print a line for each."""
    stream = sys.stdout if stream is None else stream
    results: list[Sent] = []
    async with client_session() as session:
        for _ in range(count):
            for event_type in event_types:
                headers, body = signed_request(event_type, secret, time.time())
                status, answer = await post_delivery(session, url, headers, body)
                sent = Sent(event_type, headers[ID_HEADER], status, answer)
                results.append(sent)
                stream.write(
                    f"{sent.event_type:<24} {answer_line(sent.webhook_id, status, answer)}\n"
                )
                stream.flush()
    return results


def client_session() -> aiohttp.ClientSession:
    """A session that gives up on an answer when BitByBit would."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS))


async def post_delivery(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes
) -> tuple[int, str]:
    """POST one delivery; its HTTP status and answer text."""
    async with session.post(url, data=body, headers=headers) as response:
        answer = await response.text(errors="replace")
    return response.status, answer.strip()


def answer_line(webhook_id: str, status: int, answer: str) -> str:
    """How one answer is printed: the id, the status and the start of the answer."""
    return f"{webhook_id}  {status}  {answer[:MAX_SHOWN_ANSWER]}"


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Where deliveries go, the secret they are signed with, and how fast."""

    url: str
    secret: bytes = dataclasses.field(repr=False)
    rate: float


@dataclasses.dataclass(slots=True)
class ReplayReport:
    """How many deliveries were sent and how many were not answered 2xx."""

    sent: int = 0
    not_2xx: int = 0
    failure: str | None = None  # why sending stopped early


def signed_replay(event: StoredEvent, secret: bytes, now: float) -> dict[str, str]:
    """The request headers for `event`, signed with `secret` at `now`."""
    signature = sign(secret, int(now), event.payload)
    return request_headers(event.webhook_id, event.event_type, event.event_timestamp, signature)


def _pages(events_path: Path, selection: inspection.Selection) -> list[StoredEvent]:
    conn = connect_read_only(events_path)
    try:
        page = dataclasses.replace(selection, limit=PAGE)
        return list(inspection.select(conn, page, newest_first=False))
    finally:
        conn.close()


async def replay(
    events_path: Path,
    selection: inspection.Selection,
    target: Target,
    stream: IO[str] | None = None,
) -> ReplayReport:
    """Send the selected deliveries to `url`, printing a line for each answer."""
    stream = sys.stdout if stream is None else stream
    report = ReplayReport()
    started = time.monotonic()
    async with client_session() as session:
        while page := _pages(events_path, selection):
            for event in page:
                # Paced from the start, so slow answers do not lower the average rate.
                await asyncio.sleep(
                    max(0.0, started + report.sent / target.rate - time.monotonic())
                )
                headers = signed_replay(event, target.secret, time.time())
                try:
                    status, answer = await post_delivery(
                        session, target.url, headers, event.payload
                    )
                except (aiohttp.ClientError, TimeoutError) as exc:
                    report.failure = (
                        f"cannot deliver to {target.url}: {exc or type(exc).__name__}; stopped at "
                        f"position {event.position}"
                    )
                    return report
                report.sent += 1
                if not 200 <= status < 300:
                    report.not_2xx += 1
                line = answer_line(event.webhook_id, status, answer)
                stream.write(f"{event.position:>8}  {event.event_type:<24} {line}\n")
                stream.flush()
            selection = dataclasses.replace(selection, after=page[-1].position)
    return report
