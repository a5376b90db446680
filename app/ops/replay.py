"""`replay`: send stored deliveries to another endpoint, signed anew as BitByBit signs.

Each delivery goes out as BitByBit sent it: the stored body byte for byte, the stored
webhook id, event type and timestamp headers, and a signature made now (`t` is the
sending time, or the receiver's tolerance window would refuse it) with the receiver's
secret. Because the id is kept, a receiver that deduplicates by id (this service does)
takes each delivery once, however often it is replayed.

Deliveries go oldest first, one at a time, paced to `rate` a second so a merchant's
handler is not flooded; the log is read a page at a time, each page its own short
read, so a long replay never holds the log's WAL from being checkpointed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from typing import IO, TYPE_CHECKING

import aiohttp

from app.ops import deliveries
from app.ops.sample_sender import answer_line, client_session, post_delivery
from app.sqlite import connect_read_only
from app.webhooks.delivery import request_headers
from app.webhooks.signature import sign

if TYPE_CHECKING:
    from pathlib import Path

    from app.eventlog.rows import StoredEvent

PAGE = 500


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


def _pages(events_path: Path, selection: deliveries.Selection) -> list[StoredEvent]:
    conn = connect_read_only(events_path)
    try:
        page = dataclasses.replace(selection, limit=PAGE)
        return list(deliveries.select(conn, page, newest_first=False))
    finally:
        conn.close()


async def replay(
    events_path: Path,
    selection: deliveries.Selection,
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


def run(events_path: Path, selection: deliveries.Selection, target: Target) -> int:
    """Replay, summarise, and return the exit code: 0 when every answer was 2xx."""
    report = asyncio.run(replay(events_path, selection, target))
    if report.failure:
        print(f"error: {report.failure}", file=sys.stderr)
    print(
        f"{report.sent} deliveries replayed to {target.url}: "
        f"{report.sent - report.not_2xx} answered 2xx, {report.not_2xx} not",
        file=sys.stderr,
    )
    return 1 if report.failure or report.not_2xx else 0
