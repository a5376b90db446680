"""`send-test`: sign sample deliveries exactly as BitByBit does and post them.

It checks an installation end to end: the secret, the URL, the signature check, the log
and the projections. Deliveries go one after another, in the catalogue's order, so each
entity is created before it is updated or deleted.
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

from app.webhooks.delivery import ID_HEADER, request_headers
from app.webhooks.samples import DEFAULT_URL, EVENT_TYPES, sample_body
from app.webhooks.signature import sign

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "DEFAULT_URL",
    "Sent",
    "answer_line",
    "client_session",
    "new_webhook_id",
    "post_delivery",
    "run",
    "send",
    "signed_request",
]

# The sender gives up on an endpoint after 30 s; so does the test.
TIMEOUT_SECONDS = 30
# The sender keeps at most 4 KB of an answer; a terminal line needs far less.
MAX_SHOWN_ANSWER = 500


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


def run(
    url: str,
    secret: bytes,
    event_types: Sequence[str] = EVENT_TYPES,
    count: int = 1,
    stream: IO[str] | None = None,
) -> int:
    """Send, summarise, and return the exit code: 0 when every delivery was accepted."""
    stream = sys.stdout if stream is None else stream
    try:
        results = asyncio.run(send(url, secret, event_types, count, stream))
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"error: cannot deliver to {url}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    refused = [r for r in results if not r.accepted]
    stream.write(f"{len(results) - len(refused)} of {len(results)} deliveries accepted\n")
    return 1 if refused else 0
