"""The live projector's CPU per event over a log, in steps as `serve`'s follower takes them.

`python bench/live_steps.py DATA_DIR` prints `{"events": N, "cpu_seconds": S}`. It imports
`app` from wherever PYTHONPATH points first, so `bench/feed.py` runs it against two
checkouts of the product in the same run.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import msgspec

from app.eventlog.reads import LogReader
from app.projection.follower import LIVE_CACHE_KIB
from app.projection.projector import Projector, connect
from projections import discover

# About what a follower takes per step at a few thousand deliveries a second (its steps
# last at least a quarter second).
STEP_EVENTS = 1500


def main() -> None:
    """Project the whole log of DATA_DIR in live-sized steps; print the CPU it took."""
    data_dir = Path(sys.argv[1])
    store = LogReader.open(data_dir / "events.db")
    conn = connect(data_dir / "projections.db")
    conn.execute(f"PRAGMA cache_size=-{LIVE_CACHE_KIB}")
    projector = Projector(conn, store, discover())
    projector.install_all()
    gc.disable()  # as the follower runs: one collection per step
    gc.freeze()
    events = 0
    started = time.process_time()
    while read := projector.step(STEP_EVENTS):
        events += read
        gc.collect()
    cpu = time.process_time() - started
    print(msgspec.json.encode({"events": events, "cpu_seconds": cpu}).decode())


if __name__ == "__main__":
    main()
