"""The live projector's own process: follows the log and applies it to the projections.

`serve` starts it and writes a byte to its stdin after every commit. It runs apart from
the endpoint so that projecting never competes with request handling for the GIL; it
also polls once a second, for events appended by another process or a rebuild's new
checkpoint, and exits when its stdin closes (serve stopped or died).
"""

from __future__ import annotations

import gc
import os
import select
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from app.eventlog.reads import LogReader
from app.logging_setup import configure_logging
from app.projection import feed, projector
from app.settings import Settings
from projections import discover

if TYPE_CHECKING:
    from collections.abc import Sequence

log = structlog.get_logger("app.projection.follower")

# A follower that fell behind (a burst, or a machine too busy to give it a core) catches
# up in steps of up to this many events: one commit, and one rewrite of each entity's
# row, state and index entries, for more of its events (about a fifth less CPU per event
# than steps of 2,000).
LIVE_BATCH = 8000
POLL_SECONDS = 1.0
# Under load, events reach the tables within about this long after their commit. Each
# step costs a commit and rewrites every entity it touches: steps of a quarter second
# (about 1,500 events at 6k deliveries/s) cost a third less CPU per event than steps of
# a tenth, and keep the lag well under the second the contract allows.
MIN_STEP_SECONDS = 0.25
# The live tables' pages that a step's lookups and upserts touch stay in memory, rather
# than being read back from the OS at every step (SQLite's default cache is 2 MiB).
LIVE_CACHE_KIB = 65_536
NICENESS = 10


# The exit status that tells `serve` the file was replaced (a rebuild moved it aside):
# open the new one and start another follower on it.
REPLACED = 3


def follow(data_dir: Path, wake_fd: int) -> int:
    """Apply new events until `wake_fd` reaches end of file (0), or the file is replaced."""
    settings = Settings(data_dir=data_dir)
    store = LogReader.open(settings.events_path)
    conn = projector.connect(settings.projections_path)
    opened = _identity(settings.projections_path)
    conn.execute(f"PRAGMA cache_size=-{LIVE_CACHE_KIB}")
    runner = projector.Projector(conn, store, discover())
    # A step's changes are many small containers, none in a reference cycle: collecting
    # once per step instead of at every few hundred allocations halves the fold's cost,
    # and freezing what exists now keeps each collection to the step's own objects.
    gc.disable()
    gc.freeze()
    try:
        while True:
            began = time.monotonic()
            if _identity(settings.projections_path) != opened:
                # A connection follows its file through a rename: it would go on writing
                # the copy moved aside, never the tables that are queried.
                log.info("projections_replaced", detail="following the new projections.db")
                return REPLACED
            try:
                while runner.step(LIVE_BATCH):
                    gc.collect()
                # Caught up: the moment to compact the change feed's notes, when due.
                feed.compact_if_due(conn)
            except Exception:
                # A locked or failing projections.db must not stop projecting for good:
                # the log keeps everything and the next wake-up tries again.
                log.exception("projector_failed")
            gc.collect()  # also what a failed step left: a traceback is a reference cycle
            if not _wait_for_news(wake_fd, not_before=began + MIN_STEP_SECONDS):
                return 0
    finally:
        conn.close()
        store.close()


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file `path` names now (device, inode); None when there is none."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino


def _wait_for_news(wake_fd: int, not_before: float) -> bool:
    """Wait for a wake-up (or the poll interval), and at least until `not_before`.

    Every commit of the log wakes the follower; stepping at each one would project
    batches of a few events and pay a transaction per handful. Waiting out the rest of
    `MIN_STEP_SECONDS` lets a busy log's commits gather into one step. False at EOF.
    """
    timeout = POLL_SECONDS
    while True:
        ready, _, _ = select.select([wake_fd], [], [], timeout)
        if ready and not os.read(wake_fd, 65536):
            return False
        timeout = not_before - time.monotonic()
        if timeout <= 0:
            return True


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m app.projection.follower DATA_DIR`, started by `serve` with a pipe on stdin."""
    args = sys.argv[1:] if argv is None else argv
    # Projecting can wait; deliveries cannot. Under load the endpoint gets the cores
    # first, and the follower catches up with whatever time is left.
    os.nice(NICENESS)
    # `serve` hands on its log level (flag or environment) in the environment.
    configure_logging(level=os.environ.get("BITBYBIT_LOG_LEVEL") or Settings().log_level)
    return follow(Path(args[0]), sys.stdin.fileno())


if __name__ == "__main__":
    sys.exit(main())
