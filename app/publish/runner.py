"""What runs `publish`: the change feed read from projections.db, applied to PostgreSQL.

`publish --once` catches up and exits; `publish` without it, and `serve` when
`BITBYBIT_PUBLISH_URL` is set (in a child process of its own, like the live projector),
follows the feed, looking for new lines a few times a second, so a change reaches
PostgreSQL well within 2 s of its delivery's 200. PostgreSQL being away never touches
the deliveries: `follow` retries with backoff and records the error in `publish.json`.

After a `forget`, the published tables hold the person's values no more once its lines
are applied, but PostgreSQL keeps old row versions in the tables' files until they are
rewritten: the tables the forget reaches are then rewritten (`VACUUM FULL`), which locks
each against readers for as long as it takes. PostgreSQL's WAL archive and backups are
out of the product's reach.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import structlog

from app.eventlog import erasure
from app.logging_setup import configure_logging
from app.projection.feed import Feed
from app.publish.follow import Target, backoff_delays, follow
from app.publish.lines import Batch, line_from
from app.publish.postgres import Views
from app.settings import Settings
from app.sqlite import connect_read_only
from projections import POSTGRESQL_FUNCTIONS, discover

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

log = structlog.get_logger("app.publish.runner")

# Lines per PostgreSQL transaction: a rebuild's bulk load stays fast and small in memory.
BATCH_LINES = 5000
# Failures in a row `publish --once` retries before it gives up.
ONCE_RETRIES = 3
# How often a follower looks for new lines at the head of the feed.
POLL_SECONDS = 0.2
# The projections whose published tables a forget rewrites (customers, orders, messages).
_FORGET_REACHES = ("customers", "orders", "messages")


def target(url: str, schema: str) -> Target:
    """Where to publish, with the views of SPEC §11 and the function they need there."""
    projections = discover()
    views = Views(
        {view.name: view.sql for p in projections for view in p.TABLE.views},
        (POSTGRESQL_FUNCTIONS,),
    )
    return Target(url, projections, schema, views)


def run(settings: Settings, url: str, schema: str, *, once: bool, stop: threading.Event) -> None:
    """Publish the feed of `settings`' projections.db to `url` (until `stop`, or caught up)."""
    where = target(url, schema)
    log.info("publish_started", target=where.describe(), once=once)
    feed = _feed(settings, where, follow_on=not once, stop=stop)
    if once:
        # Catching up once (a cron job) retries a few times (a restart, a swap waiting on
        # a long query), then gives up, the error recorded for `status`, rather than
        # retrying for ever.
        cursor = follow(where, feed, settings.data_dir, stop=stop, delays=lambda: _tries(stop))
    else:
        cursor = follow(where, feed, settings.data_dir, stop=stop)
    log.info("publish_stopped", target=where.describe(), cursor=cursor)


def _tries(stop: threading.Event) -> Iterator[float]:
    """The backoff's first waits (at most 3.5 s in all), then stop: failures in a row given up."""
    yield from itertools.islice(backoff_delays(), ONCE_RETRIES)
    stop.set()
    yield 0.0


def _feed(
    settings: Settings, where: Target, *, follow_on: bool, stop: threading.Event
) -> Callable[[str | None], Iterator[Batch]]:
    """The batches after a cursor: as many as there are, then (following) new ones."""

    def batches(after: str | None) -> Iterator[Batch]:
        while not settings.projections_path.exists():  # serve is still making it
            if stop.wait(POLL_SECONDS):
                return
        forgets = _Forgets(settings, where)
        conn = connect_read_only(settings.projections_path)
        try:
            reader = Feed(conn, where.projections)
            at_head = False
            while not stop.is_set():
                lines = reader.lines(after, BATCH_LINES)
                if lines or not at_head:
                    at_head = len(lines) < BATCH_LINES
                    yield Batch([line_from(line) for line in lines], at_head=at_head)
                    if lines:
                        after = lines[-1]["cursor"]
                if not at_head:
                    continue
                if forgets.read_again():
                    continue
                if not follow_on:
                    return
                stop.wait(POLL_SECONDS)
        finally:
            conn.close()

    return batches


class _Forgets:
    """Completed forgets, and the published tables rewritten after them.

    A forget completes after its lines are in the feed, so the rewrite for a count waits
    for one more read to the head after the count was taken.
    """

    def __init__(self, settings: Settings, where: Target) -> None:
        self.settings = settings
        self.where = where
        self.counted: int | None = None  # taken before the last read to the head
        self.checked: int | None = None  # the published tables were rewritten for it

    def read_again(self) -> bool:
        """At the head: rewrite for the count taken before this read; whether to read on."""
        if self.counted is not None and self.counted != self.checked:
            _rewrite_after_forgets(self.where, self.counted)
            self.checked = self.counted
        now = _completed_forgets(self.settings)
        if now == self.counted:
            return False
        self.counted = now
        return True


def _completed_forgets(settings: Settings) -> int:
    """How many forgets the log holds as complete (0 while there is no log)."""
    if not settings.events_path.exists():
        return 0
    conn = connect_read_only(settings.events_path)
    try:
        return erasure.count_completed(conn)
    except Exception:  # noqa: BLE001 - a log without the tables yet has no records
        return 0
    finally:
        conn.close()


def _rewrite_after_forgets(where: Target, forgets: int) -> None:
    """Rewrite the published tables forgets reached, leaving no old row version behind."""
    tables = [
        name
        for p in where.projections
        if p.NAME in _FORGET_REACHES
        for name in (
            p.TABLE.name,
            *(c.name for c in p.TABLE.children),
            *([p.TABLE.history.name] if p.TABLE.history else []),
        )
    ]
    started = time.monotonic()
    with where.connect() as publisher:
        rewritten = publisher.rewrite_after_forgets(tables, forgets)
    if rewritten:
        seconds = round(time.monotonic() - started, 3)
        log.info("publish_vacuumed", tables=len(tables), forgets=forgets, seconds=seconds)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m app.publish.runner DATA_DIR`: `serve`'s publishing child.

    The URL comes in the environment (`BITBYBIT_PUBLISH_URL`), never on the command line,
    which every user of the machine can read. SIGTERM, or `serve` closing its stdin,
    ends it after the batch in hand.
    """
    args = sys.argv[1:] if argv is None else argv
    configure_logging(level=os.environ.get("BITBYBIT_LOG_LEVEL") or "info")
    settings = Settings.from_env(os.environ, data_dir=args[0])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    watcher = threading.Thread(target=_stop_at_eof, args=(stop,), daemon=True)
    watcher.start()
    run(settings, settings.publish_url, settings.publish_schema, once=False, stop=stop)
    return 0


def _stop_at_eof(stop: threading.Event) -> None:
    """`serve` closed our stdin (it stopped, or died): stop too."""
    sys.stdin.buffer.read()
    stop.set()


if __name__ == "__main__":
    sys.exit(main())
