"""Soak: sustained signed load on `serve` with live projections, watching RSS and fds.

    .venv/bin/python bench/soak.py --minutes 10

wrk (`apt-get install wrk`) posts pre-signed deliveries through bench/post.lua, as the
ingest benchmark does; once they run out it starts over, and the repeats come back as
duplicates (200 too). Every few seconds it samples the resident memory and open file
descriptors of `serve` and of its projector. The target (issue 13): both flat after the
warm-up, RSS growing under 10% between minute 2 and the end; no non-2xx answer; every
delivery answered `accepted` is in the log. The signatures are made before the run, so
the service runs with a tolerance longer than the soak.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

from ingest import SECRET  # bench/ingest.py and its modules, beside this script
from processes import free_port, started
from signed_requests import SignedRequests, write_slices
from wrk import WrkResult, run_wrk

WARM_UP_SECONDS = 120
TARGET_GROWTH = 0.10
# About the rate `serve` takes on the 2-core machine: signatures spread one second apart
# per this many deliveries, as live ones are, rather than all made in the same second
# (the replay check keeps each recent second's digests in memory).
PER_SECOND = 2500


def _deliveries(count: int, host: str) -> list[bytes]:
    factory = SignedRequests(count, 1, SECRET.encode())
    start = int(time.time())
    requests: list[bytes] = []
    for second in range(0, count, PER_SECOND):
        requests += factory.build(
            min(PER_SECOND, count - second), host, start + second // PER_SECOND
        )
    return requests


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The parent pid is the second field after the parenthesised command name.
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _sample(pid: int) -> tuple[float, int]:
    """(RSS in MiB, open file descriptors) of `pid`."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:")
    return rss_kib / 1024, sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def _summary(name: str, samples: list[tuple[float, float, int]]) -> bool:
    """Print one process's figures after the warm-up; whether RSS stayed within target."""
    late = [s for s in samples if s[0] >= WARM_UP_SECONDS] or samples
    first, last = late[0][1], late[-1][1]
    growth = (last - first) / first
    rss = [s[1] for s in late]
    fds = [s[2] for s in late]
    print(
        f"{name}: RSS {first:.1f} -> {last:.1f} MiB ({growth:+.1%}; min {min(rss):.1f}, "
        f"max {max(rss):.1f}), fds {min(fds)}-{max(fds)}, {len(late)} samples after "
        f"{WARM_UP_SECONDS} s"
    )
    return growth < TARGET_GROWTH


def main() -> int:
    """Run the soak and print its figures; exit 1 if a target was missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10, help="length of the load (10)")
    parser.add_argument("--deliveries", type=int, default=200_000, help="distinct (200000)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--every", type=float, default=5, help="seconds between samples (5)")
    args = parser.parse_args()
    args.threads, args.wrk = 2, "wrk"  # what ingest.run_wrk reads
    seconds = args.minutes * 60
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    port = free_port()
    write_slices(_deliveries(args.deliveries, f"127.0.0.1:{port}"), workdir / "requests",
                 args.threads)  # fmt: skip
    env = {**os.environ, "BITBYBIT_WEBHOOK_SECRET": SECRET}
    env["BITBYBIT_TOLERANCE_SECONDS"] = str(int(seconds) + 3600)
    argv = [sys.executable, "-m", "app", "serve", "--port", str(port), "--data-dir",
            str(workdir / "data")]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    samples: dict[str, list[tuple[float, float, int]]] = {"serve": [], "projector": []}
    print(f"work dir {workdir}; {args.minutes:g} min of load", flush=True)
    with (
        (workdir / "service.log").open("wb") as log,
        started(argv, f"{base}/healthz", env, log) as serve,
    ):
        (projector,) = _children(serve.pid)
        result: list[WrkResult] = []
        load = threading.Thread(
            target=lambda: result.append(
                run_wrk(f"{base}/webhooks", workdir / "requests", args, seconds)
            )
        )
        began = time.monotonic()
        load.start()
        while load.is_alive():
            elapsed = time.monotonic() - began
            for name, pid in (("serve", serve.pid), ("projector", projector)):
                samples[name].append((elapsed, *_sample(pid)))
            load.join(args.every)
    (wrk,) = result
    conn = sqlite3.connect(workdir / "data" / "events.db")
    ((logged,),) = conn.execute("SELECT count(*) FROM events").fetchall()
    conn.close()
    print(
        f"wrk: {wrk.sent} sent, {wrk.rps:.0f} req/s, p99 {wrk.p99_ms:.1f} ms, "
        f"accepted {wrk.accepted}, duplicate {wrk.duplicate}, non-2xx {wrk.non2xx} "
        f"({wrk.statuses}), socket errors {wrk.socket_errors}; events in the log {logged}"
    )
    flat = [_summary(name, rows) for name, rows in samples.items()]
    ok = all(flat) and wrk.non2xx == 0 and logged >= wrk.accepted
    print("verdict:", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
