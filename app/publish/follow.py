"""Following the feed: batches applied as they come, PostgreSQL's failures retried.

Progress is readable without PostgreSQL: `follow` records the last committed cursor and
the last error in `publish.json` in the data directory, for `status` and `/metrics` (the
lag is the number of feed lines after that cursor).
"""

from __future__ import annotations

import dataclasses
import random
import threading
from typing import TYPE_CHECKING

import psycopg
import structlog

from app.publish.postgres import DEFAULT_SCHEMA, Publisher, Views
from app.publish.state import now, read_status, write_status
from app.publish.url import describe_error, describe_target

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from pathlib import Path

    from app.publish.lines import Batch
    from projections import Projection


log = structlog.get_logger("app.publish.follow")


def backoff_delays(first: float = 0.5, cap: float = 30.0) -> Iterator[float]:
    """Exponential backoff with full jitter: many publishers never retry in step."""
    attempt = 0
    while True:
        yield random.uniform(0, min(cap, first * 2**attempt))  # noqa: S311 - not security
        attempt += 1


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Where to publish: the URL (kept out of `repr`, so printing a target leaks nothing)."""

    url: str = dataclasses.field(repr=False)
    projections: Sequence[Projection]
    schema: str = DEFAULT_SCHEMA
    views: Views | None = None

    def connect(self) -> Publisher:
        """A publisher on a new connection."""
        return Publisher.connect(self.url, self.projections, schema=self.schema, views=self.views)

    def describe(self) -> str:
        """`host:port/database schema`, safe to log."""
        return f"{describe_target(self.url)} schema {self.schema}"


def follow(
    target: Target,
    feed: Callable[[str | None], Iterable[Batch]],
    data_dir: Path,
    *,
    stop: threading.Event | None = None,
    delays: Callable[[], Iterator[float]] = backoff_delays,
) -> str | None:
    """Publish the batches `feed(after_cursor)` yields until it ends or `stop` is set.

    The feed is read again from the cursor PostgreSQL holds after every reconnection,
    so a failure anywhere costs time, never a line. PostgreSQL errors (unreachable,
    restarted, refusing) are retried with backoff, waiting on `stop` so that a stop
    request ends the wait, and recorded, redacted, in `publish.json`; any other error
    is a bug and propagates. Returns the last committed cursor.
    """
    stop = stop or threading.Event()
    described = target.describe()
    status = read_status(data_dir)
    status.target = described
    waits = delays()
    cursor = status.cursor
    while not stop.is_set():
        try:
            with target.connect() as publisher:
                cursor = publisher.cursor
                for batch in feed(cursor):
                    cursor = publisher.apply(batch.lines, at_head=batch.at_head).cursor
                    if status.error:
                        log.info("publish_resumed", target=described, cursor=cursor)
                    if status.error or status.cursor != cursor:
                        status.cursor, status.committed_at = cursor, now()
                        status.error = status.error_at = None
                        write_status(data_dir, status)
                    waits = delays()
                    if stop.is_set():
                        break
        except psycopg.Error as error:
            message = describe_error(error, target.url)
            status.error, status.error_at = message, now()
            status.errors += 1
            write_status(data_dir, status)
            wait = next(waits)
            log.warning("publish_failed", target=described, error=message, retry_in=round(wait, 2))
            stop.wait(wait)
        else:
            status.cursor, status.error, status.error_at = cursor, None, None
            write_status(data_dir, status)
            break
    return cursor
