"""HTTP ingest benchmark: the real `serve` against a bare aiohttp handler, driven by wrk.

Run from the repository root:

    .venv/bin/python bench/ingest.py --duration 10 --rounds 2 --connections 64

It starts `python -m app serve` on a fresh data directory (live projections included) and
`bench/bare_handler.py`, then runs wrk against them in turn, A B A B (service, bare, ...).
Before every service round it signs a fresh set of deliveries (unique webhook ids and
signatures across the whole run, `t` = now so it is well within the tolerance) and writes
one file per wrk thread; `bench/post.lua` loads its thread's slice and reports req/s,
latency percentiles and non-2xx answers from wrk's `done()` hook.

Each run also reports the CPU time per request of the server's processes (for the
service, `serve` and its live projector, per accepted delivery; the projector's share
separately), read from /proc: steadier than req/s on a shared machine, it is the figure
to compare when judging a change. After the rounds, `python -m app rebuild` runs over the
run's own log, as the yardstick of the live projector's CPU per event.

While the service is under load a background thread polls `/readyz` every 0.25 s for the
projections' lag; after the load stops the script measures how long they take to reach
the head. At the end it checks that the log holds exactly the accepted deliveries.

Targets (issues #2 and #3): service >= 60 % of bare req/s (#2) and >= 45 % with live
projections (#3; `serve` always runs them, so every round is measured that way), service
p99 < 25 ms, no non-2xx, lag during load below one second's worth of events, back to zero
within 2 s; and issue #17's CPU ratios: the live projector's CPU per event at most 1.5x
the rebuild's, the service's CPU per accepted delivery at most 2.5x the bare handler's
per request, and its p99 at most 2.5x bare's. The verdicts are printed; the exit code is
0 unless the benchmark itself could not run (or with `--check`, unless every target is
met).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Modules beside this script.
from ingest_report import ServiceRound, Totals, report, row_text
from lag import LagMonitor, time_to_drain
from processes import ROOT, cpu_used, free_port, per_request_us, started
from signed_requests import SignedRequests, write_slices
from wrk import run_wrk

BENCH_DIR = Path(__file__).resolve().parent
SECRET = "bench-secret-not-for-production"  # noqa: S105 - a throwaway secret for a local run
MAX_DURATION = 240  # keeps every `t` signed before a round inside the 300 s tolerance


def requests_for(duration: float, args: argparse.Namespace) -> int:
    """Deliveries to sign for `duration` seconds of load: more than the service can take."""
    rate: float = args.max_rate
    return max(1000, math.ceil(duration * rate))


def sign_round(
    factory: SignedRequests, prefix: Path, args: argparse.Namespace, duration: float
) -> int:
    """Sign a round's deliveries into wrk's files under `prefix`; return how many."""
    count = requests_for(duration, args)
    write_slices(factory.build(count, "127.0.0.1"), prefix, args.threads)
    return count


@dataclasses.dataclass(frozen=True, slots=True)
class _Setup:
    """What every service round needs."""

    factory: SignedRequests
    base: str
    workdir: Path
    args: argparse.Namespace
    pid: int


def _service_round(setup: _Setup, *, duration: float, name: str) -> ServiceRound:
    """Sign fresh deliveries, load the service with them, watch the projections' lag."""
    factory, base, workdir, args = setup.factory, setup.base, setup.workdir, setup.args
    began = time.perf_counter()
    prefix = workdir / f"requests-{name}"
    count = sign_round(factory, prefix, args, duration)
    generate_seconds = time.perf_counter() - began
    # The CPU window closes once the projections have caught up, so the projector's work
    # for this round's deliveries is all in it.
    with cpu_used(setup.pid) as cpu:
        monitor = LagMonitor(f"{base}/readyz")
        monitor.start()
        try:
            result = run_wrk(f"{base}/webhooks", prefix, args, duration)
        finally:
            load_stopped = time.monotonic()
            monitor.stop()
        drain, errors = time_to_drain(f"{base}/readyz", load_stopped)
    return ServiceRound(
        result,
        per_request_us(cpu[0] + cpu[1], result.accepted),
        per_request_us(cpu[1], result.accepted),
        monitor.max_lag,
        len(monitor.samples),
        drain,
        errors,
        count,
        generate_seconds,
    )


def run(args: argparse.Namespace) -> Totals:
    """Start both servers and run the rounds; return everything measured."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    totals = Totals()
    service_port, bare_port = free_port(), free_port()
    service_base = f"http://127.0.0.1:{service_port}"
    bare_base = f"http://127.0.0.1:{bare_port}"
    env = dict(os.environ)
    env["BITBYBIT_WEBHOOK_SECRET"] = SECRET
    env.pop("BITBYBIT_WEBHOOK_SECRET_FILE", None)
    env.pop("BITBYBIT_DATA_DIR", None)
    data_dir = workdir / "data"
    service_argv = [
        sys.executable, "-m", "app", "serve", "--port", str(service_port),
        "--data-dir", str(data_dir),
    ]  # fmt: skip
    bare_argv = [sys.executable, str(BENCH_DIR / "bare_handler.py"), "--port", str(bare_port)]
    per_round = requests_for(args.duration, args)
    warmup = requests_for(args.warmup, args) if args.warmup > 0 else 0
    factory = SignedRequests(warmup + args.rounds * per_round, args.seed, SECRET.encode())
    print(f"work dir {workdir} (service log: service.log)", flush=True)
    try:
        with (
            (workdir / "service.log").open("wb") as service_log,
            (workdir / "bare.log").open("wb") as bare_log,
            started(service_argv, f"{service_base}/healthz", env, service_log) as service,
            started(bare_argv, f"{bare_base}/healthz", env, bare_log) as bare_server,
        ):
            setup = _Setup(factory, service_base, workdir, args, service.pid)
            profiler = _start_profiler(args, service.pid)
            if args.warmup > 0:
                warm = _service_round(setup, duration=args.warmup, name="warmup")
                totals.add(warm.wrk)
                run_wrk(f"{bare_base}/webhooks", workdir / "requests-warmup", args, args.warmup)
                print("warm-up done", flush=True)
            for number in range(1, args.rounds + 1):
                result = _service_round(setup, duration=args.duration, name=f"round{number}")
                totals.rounds.append(result)
                totals.add(result.wrk)
                print(f"round {number} service: {row_text(result.wrk)}", flush=True)
                # The bare handler ignores ids and signatures: the same requests do.
                with cpu_used(bare_server.pid) as cpu:
                    bare = run_wrk(
                        f"{bare_base}/webhooks", workdir / f"requests-round{number}", args,
                        args.duration,
                    )  # fmt: skip
                totals.bare.append(bare)
                totals.bare_cpu_us.append(per_request_us(sum(cpu), bare.requests))
                print(f"round {number} bare:    {row_text(bare)}", flush=True)
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=60)
                print(f"profile written to {args.profile}", flush=True)
        logged = _count_logged(data_dir / "events.db")
        totals.rebuild_cpu_us = _rebuild_cpu_us(data_dir, env, logged)
        # wrk stops with up to one request per connection in flight: the service may well
        # have committed those, but nobody read the answer.
        consistent = totals.accepted <= logged <= totals.accepted + totals.unanswered
        print(
            f"log holds {logged} events; the service answered accepted {totals.accepted}, "
            f"duplicate {totals.duplicate}; {totals.unanswered} requests were in flight when "
            "wrk stopped" + ("" if consistent else "  <-- MISMATCH"),
            flush=True,
        )
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return totals


def _start_profiler(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes] | None:
    """Attach py-spy to the service for the whole run, if `--profile` asks for it."""
    if args.profile is None:
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    profile_format = "speedscope" if str(args.profile).endswith(".json") else "raw"
    if str(args.profile).endswith(".svg"):
        profile_format = "flamegraph"
    command = [
        py_spy, "record", "--pid", str(pid), "--rate", "200", "--threads",
        "--format", profile_format, "--output", str(args.profile),
    ]  # fmt: skip
    if args.profile_gil:
        command.append("--gil")
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _rebuild_cpu_us(data_dir: Path, env: dict[str, str], events: int) -> float:
    """CPU microseconds per event of `python -m app rebuild` over the run's own log.

    The yardstick of the live projector's CPU per event, measured on the same machine
    in the same run: the command and every process it starts, from start to exit.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "-m", "app", "rebuild", "--data-dir", str(data_dir)],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return per_request_us(seconds, events)


def _count_logged(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        count: int = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    return count


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """The options of the load wrk makes (the publish benchmark makes the same)."""
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--max-rate",
        type=float,
        default=8000.0,
        help="deliveries signed per second of a service run (default 8000); wrk reports "
        "`wrapped` if the service went faster and ids had to repeat",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--wrk", default="wrk", help="the wrk binary")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; every one has a default."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="A B pairs to run (default 2)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds per side")
    add_load_options(parser)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record the service with py-spy into this file (.svg flame graph, .json "
        "speedscope, anything else collapsed stacks)",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (py-spy --gil)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every target is met")
    return parser


def main() -> int:
    """Parse the options, run the benchmark, print the report."""
    args = build_parser().parse_args()
    if not 0 < args.duration <= MAX_DURATION:
        build_parser().error(f"--duration must be in (0, {MAX_DURATION}] s (signature tolerance)")
    if args.rounds < 1 or args.threads < 1 or args.connections < args.threads:
        build_parser().error("need at least one round, one thread and a connection per thread")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    try:
        totals = run(args)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    all_met = report(totals, args)
    return 1 if args.check and not all_met else 0


if __name__ == "__main__":
    sys.exit(main())
