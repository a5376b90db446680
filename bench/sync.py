"""Sync benchmark: a full pass over 100,000 customers and 100,000 orders, then a second.

`.venv/bin/python bench/sync.py [--customers 100000] [--orders 100000]`

The fake Open API (`bench/open_api.py`) runs in a process of its own (so its CPU is not
counted), with every page encoded in advance and no rate limit (it announces a huge
`RateLimit-Limit`). The pass runs in this process, into a fresh data directory. Printed:
entities/s of the first pass (every entity new) and of the second (nothing changed, so
nothing is appended), and the CPU time per entity of each (user + system, all threads of
this process), which a loaded machine distorts less than wall time. Target: at least
5,000 entities/s on a first pass, so that a real pass is bound by the API's 100 requests
a minute (10,000 entities a minute), never by us.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from open_api import BASE_PATH  # bench/open_api.py, beside this script
from processes import ROOT, free_port, wait_healthy

from app.settings import Settings
from app.sync import runner
from app.sync.passes import CUSTOMERS, ORDERS


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _one_pass(settings: Settings) -> tuple[float, float, int]:
    started, cpu = time.perf_counter(), _cpu()
    report = asyncio.run(
        runner.run_pass(settings, [CUSTOMERS, ORDERS], stream=io.StringIO(), log_lines=False)
    )
    seconds, cpu_seconds = time.perf_counter() - started, _cpu() - cpu
    if not report.ok:
        raise SystemExit(f"the pass failed: {report.stopped}")
    return seconds, cpu_seconds, sum(k.read for k in report.entities.values())


def main(argv: list[str] | None = None) -> int:
    """Start the fake, run two passes, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="default 100000")
    parser.add_argument("--orders", type=int, default=100_000, help="default 100000")
    args = parser.parse_args(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}{BASE_PATH}"
    fake = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "open_api.py"),
            "--port",
            str(port),
            "--customers",
            str(args.customers),
            "--orders",
            str(args.orders),
        ],
    )
    try:
        wait_healthy(f"{url}/customers?page=1", fake)
        with tempfile.TemporaryDirectory() as directory:
            settings = Settings(
                data_dir=Path(directory),
                api_key="bench",
                api_url=url,
            )
            for name in ("first pass (all new)", "second pass (unchanged)"):
                seconds, cpu_seconds, entities = _one_pass(settings)
                print(
                    f"{name}: {entities} entities in {seconds:.1f} s = "
                    f"{entities / seconds:,.0f} entities/s; CPU {cpu_seconds:.1f} s = "
                    f"{cpu_seconds / entities * 1e6:.0f} µs per entity"
                )
    finally:
        fake.terminate()
        fake.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
