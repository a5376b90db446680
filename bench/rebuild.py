"""Rebuild benchmark: a full `rebuild` against the dumbest one-table replay of the same log.

`.venv/bin/python bench/rebuild.py [--events 1000000] [--rounds 2]`

1. Generates a log of N realistic deliveries (bench/generate.py) through
   `EventStore.append`, cached between runs under --cache-dir, keyed by N.
2. Measures, alternating a, b, a, b, ... each in a subprocess of its own so that its peak
   RSS is its own:
   (a) the naive ceiling: read every event in position order, decode it with
       `msgspec.json.decode`, upsert it as one row of a plain 10-column table with
       `executemany` in batches of 1,000;
   (b) `app.projection.rebuild.rebuild` of every projection into a fresh data directory.
3. Prints events/s of both, the ratio b/a (target >= 1.0) and the rebuild's peak RSS
   (target < 1 GiB): its main process's, plus its worker processes' bounded by the
   largest one's peak (RUSAGE_CHILDREN reports the largest, not the sum).
"""

from __future__ import annotations

import argparse
import io
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from generate import generate  # bench/generate.py, beside this script

from app.eventlog.store import EventStore
from app.projection import projector as projector_module
from app.projection import rebuild as rebuild_module
from app.settings import Settings
from projections import discover

NAIVE_BATCH = 1_000
GIB = 1 << 30

NAIVE_DDL = """
CREATE TABLE IF NOT EXISTS replay (
    id TEXT PRIMARY KEY,
    event_type TEXT,
    position INTEGER,
    webhook_id TEXT,
    event_timestamp INTEGER,
    updated_at TEXT,
    status TEXT,
    name TEXT,
    email TEXT,
    body TEXT
)
"""
NAIVE_UPSERT = (
    "INSERT INTO replay VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "event_type = excluded.event_type, position = excluded.position, "
    "webhook_id = excluded.webhook_id, event_timestamp = excluded.event_timestamp, "
    "updated_at = excluded.updated_at, status = excluded.status, name = excluded.name, "
    "email = excluded.email, body = excluded.body"
)


class Result(msgspec.Struct):
    """One measurement, as a child process reports it."""

    kind: str
    events: int
    seconds: float
    peak_rss: int
    rows: int = 0
    # rebuild only: the largest worker process's peak, and how many workers there were.
    worker_peak_rss: int = 0
    workers: int = 0

    @property
    def total_rss_bound(self) -> int:
        """The process's peak plus every worker at the largest worker's peak."""
        return self.peak_rss + self.workers * self.worker_peak_rss


def _peak_rss() -> int:
    """The peak resident set size in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _text(value: object) -> object:
    return value if value is None or isinstance(value, str | int | float) else str(value)


def measure_naive(log_path: Path, work: Path) -> Result:
    """(a): one decoded event -> one upserted row, in position order."""
    store = EventStore.open(log_path)
    # The same connection settings as the rebuild's scratch database.
    conn = projector_module.connect(work / "naive.db", synchronous="OFF")
    conn.execute("PRAGMA cache_size=-262144")
    conn.execute(NAIVE_DDL)
    decode = msgspec.json.decode
    started = time.perf_counter()
    events = 0
    after = 0
    while batch := store.read(after, NAIVE_BATCH):
        rows = []
        for event in batch:
            body: dict[str, Any] = decode(event.payload)
            rows.append(
                (
                    body.get("id") or body.get("messageId"),
                    event.event_type,
                    event.position,
                    event.webhook_id,
                    event.event_timestamp,
                    _text(body.get("updatedAt")),
                    _text(body.get("status")),
                    _text(body.get("name") or body.get("firstName")),
                    _text(body.get("email")),
                    _text(body.get("body") or body.get("description")),
                )
            )
        conn.execute("BEGIN")
        conn.executemany(NAIVE_UPSERT, rows)
        conn.execute("COMMIT")
        events += len(batch)
        after = batch[-1].position
    seconds = time.perf_counter() - started
    table_rows = conn.execute("SELECT COUNT(*) FROM replay").fetchone()[0]
    conn.close()
    store.close()
    return Result("naive", events, seconds, _peak_rss(), table_rows)


def measure_rebuild(log_path: Path, work: Path) -> Result:
    """(b): `rebuild` of every projection into a fresh projections.db."""
    _link(log_path, work / "events.db")
    settings = Settings(data_dir=work)
    started = time.perf_counter()
    summaries = rebuild_module.rebuild(settings, discover(), stream=io.StringIO())
    seconds = time.perf_counter() - started
    events = EventStore.open(settings.events_path)
    total = events.count()
    events.close()
    # Workers are waited for, so RUSAGE_CHILDREN holds the largest one's peak.
    return Result(
        "rebuild",
        total,
        seconds,
        _peak_rss(),
        sum(s.rows for s in summaries),
        worker_peak_rss=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        workers=len(summaries),
    )


def _link(source: Path, target: Path) -> None:
    """The cached log in a fresh data directory: a hard link (read only), else a copy."""
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copyfile(source, target)


def cached_log(cache_dir: Path, events: int) -> Path:
    """The generated log of `events` deliveries, generated on first use."""
    path = cache_dir / f"events-{events}.db"
    if not path.exists():
        print(f"generating {events:,} deliveries into {path} ...", flush=True)
        started = time.perf_counter()
        partial = path.with_suffix(".partial")
        for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
            leftover.unlink(missing_ok=True)
        generate(partial, events)
        partial.rename(path)
        print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def run_child(kind: str, log_path: Path, cache_dir: Path) -> Result:
    """Measure `kind` in a fresh interpreter; its peak RSS is the measurement's alone."""
    completed = subprocess.run(
        [
            sys.executable,
            __file__,
            "--measure",
            kind,
            "--log",
            str(log_path),
            "--cache-dir",
            str(cache_dir),
        ],
        check=True,
        capture_output=True,
    )
    return msgspec.json.decode(completed.stdout.splitlines()[-1], type=Result)


def child(kind: str, log_path: Path, cache_dir: Path) -> None:
    """The body of one measurement subprocess: print one JSON `Result`."""
    work = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=cache_dir))
    try:
        result = (measure_naive if kind == "naive" else measure_rebuild)(log_path, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")


def _rate(result: Result) -> float:
    return result.events / result.seconds


def main() -> None:
    """Generate (or reuse) the log, alternate the measurements, print the figures."""
    parser = argparse.ArgumentParser(description="Benchmark `rebuild` against a naive replay.")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2, help="a/b pairs to run (default 2)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "bitbybit-rebuild-bench",
        help="where generated logs are kept between runs",
    )
    parser.add_argument("--measure", choices=("naive", "rebuild"), help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        child(args.measure, args.log, args.cache_dir)
        return
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    log_path = cached_log(args.cache_dir, args.events)
    naive: list[Result] = []
    rebuilt: list[Result] = []
    for round_ in range(1, args.rounds + 1):
        for kind, results in (("naive", naive), ("rebuild", rebuilt)):
            result = run_child(kind, log_path, args.cache_dir)
            results.append(result)
            print(
                f"round {round_} {'(a) naive  ' if kind == 'naive' else '(b) rebuild'}: "
                f"{result.events:,} events in {result.seconds:.2f} s = "
                f"{_rate(result):,.0f} events/s, {result.rows:,} rows, "
                f"peak RSS {result.peak_rss / 2**20:,.0f} MiB"
                + (
                    f" + {result.workers} workers of at most "
                    f"{result.worker_peak_rss / 2**20:,.0f} MiB each"
                    if result.workers
                    else ""
                ),
                flush=True,
            )
    best_a = max(_rate(r) for r in naive)
    best_b = max(_rate(r) for r in rebuilt)
    pairs = [_rate(b) / _rate(a) for a, b in zip(naive, rebuilt, strict=True)]
    peak = max(r.total_rss_bound for r in rebuilt)
    print(f"(a) naive one-table replay: best {best_a:,.0f} events/s")
    print(f"(b) rebuild, all projections: best {best_b:,.0f} events/s")
    print(
        f"ratio b/a: best-vs-best {best_b / best_a:.2f}, per round "
        f"{', '.join(f'{p:.2f}' for p in pairs)} (target >= 1.0)"
    )
    print(
        f"rebuild peak RSS, all processes together at most: {peak / 2**20:,.0f} MiB "
        f"(target < {GIB / 2**20:,.0f} MiB)"
    )


if __name__ == "__main__":
    main()
