"""The live projector's own process: follows the log and applies it to the projections.

`serve` starts it and writes a byte to its stdin after every commit. It runs apart from
the endpoint so that projecting never competes with request handling for the GIL; it
also polls once a second, for events appended by another process or a rebuild's new
checkpoint, and exits when its stdin closes (serve stopped or died).
"""

from __future__ import annotations

import os
import select
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from app import projector
from app.logs import configure_logging
from app.store import EventStore
from projections import discover

if TYPE_CHECKING:
    from collections.abc import Sequence

log = structlog.get_logger("app.follow")

LIVE_BATCH = 2000
POLL_SECONDS = 1.0


def follow(data_dir: Path, wake_fd: int) -> None:
    """Apply new events until `wake_fd` reaches end of file."""
    store = EventStore.open(data_dir / "events.db")
    conn = projector.connect(data_dir / "projections.db")
    runner = projector.Projector(conn, store, discover())
    try:
        while True:
            try:
                while runner.step(LIVE_BATCH):
                    pass
            except Exception:
                # A locked or failing projections.db must not stop projecting for good:
                # the log keeps everything and the next wake-up tries again.
                log.exception("projector_failed")
            ready, _, _ = select.select([wake_fd], [], [], POLL_SECONDS)
            if ready and not os.read(wake_fd, 65536):
                return
    finally:
        conn.close()
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m app.follow DATA_DIR`, started by `serve` with a pipe on stdin."""
    args = sys.argv[1:] if argv is None else argv
    configure_logging()
    follow(Path(args[0]), sys.stdin.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
