"""Write a generated log (bench/deliveries.py) for benchmarks, through `EventStore.append`.

`python bench/generate.py --events 100000 --out /tmp/events.db`
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from deliveries import Generated, Generator  # bench/deliveries.py, beside this script

from app.eventlog.rows import Delivery
from app.eventlog.store import EventStore
from app.instants import format_instant

APPEND_BATCH = 5_000


def stored(generated: Generated) -> Delivery:
    """A generated delivery as the log keeps it, signed a second after its event."""
    signed_at = generated.when + 1
    return Delivery(
        webhook_id=generated.webhook_id,
        event_type=generated.event_type,
        event_timestamp=generated.when,
        signed_at=signed_at,
        received_at=format_instant(signed_at),
        signature=f"t={signed_at},v1={generated.fake_digest}",
        payload=generated.body,
        digests=(),
    )


def generate(path: Path, events: int) -> None:
    """Write a log of `events` deliveries to `path` (which must not exist yet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    store = EventStore.open(path, synchronous="OFF")
    try:
        for chunk in Generator(events).deliveries():
            deliveries = [stored(generated) for generated in chunk]
            for start in range(0, len(deliveries), APPEND_BATCH):
                store.append(deliveries[start : start + APPEND_BATCH])
    finally:
        store.close()


def main() -> None:
    """Command line: `--events N --out PATH`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    generate(args.out, args.events)
    print(f"{args.events:,} events in {time.perf_counter() - started:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
