"""Sync benchmark: a full pass over 100,000 customers and 100,000 orders, then a second.

`.venv/bin/python bench/sync.py [--customers 100000] [--orders 100000]`

The fake Open API runs in a process of its own (so its CPU is not counted), built from
the test fake's entities, with every page encoded in advance and no rate limit (it
announces a huge `RateLimit-Limit`). The pass runs in this process, into a fresh data
directory. Printed: entities/s of the first pass (every entity new) and of the second
(nothing changed, so nothing is appended), and the CPU time per entity of each (user +
system, all threads of this process), which a loaded machine distorts less than wall
time. Target: at least 5,000 entities/s on a first pass, so that a real pass is bound by
the API's 100 requests a minute (10,000 entities a minute), never by us.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.settings import Settings
from app.sync import runner
from app.sync.passes import CUSTOMERS, ORDERS

ROOT = Path(__file__).resolve().parent.parent
PAGE = 100


def serve_fake(port: int, customers: int, orders: int) -> None:
    """The fake API with every page encoded in advance."""
    from aiohttp import web  # noqa: PLC0415 - only the fake's process needs it

    sys.path.insert(0, str(ROOT))
    from tests.sync.fake_api import BASE_PATH, customer, order  # noqa: PLC0415

    def pages(entities: list[dict[str, object]]) -> list[bytes]:
        total = len(entities)
        return [
            json.dumps(
                {
                    "data": entities[start : start + PAGE],
                    "meta": {
                        "page": start // PAGE + 1,
                        "limit": PAGE,
                        "total": total,
                        "hasNextPage": start + PAGE < total,
                    },
                }
            ).encode()
            for start in range(0, total, PAGE)
        ]

    bodies = {
        "customers": pages(
            [customer(n, updated=1705314600 + customers - n) for n in range(customers)]
        ),
        "orders": pages([order(n) for n in range(orders)]),
    }
    limits = {
        "RateLimit-Limit": "1000000000",
        "RateLimit-Remaining": "1000000000",
        "RateLimit-Reset": "60",
    }

    async def listing(request: web.Request) -> web.Response:
        resource_pages = bodies.get(request.match_info["resource"])
        if resource_pages is None:
            return web.json_response({"error": {"code": "NOT_FOUND", "message": "no"}}, status=404)
        number = int(request.query.get("page", "1"))
        body = resource_pages[number - 1] if number <= len(resource_pages) else b'{"data":[]}'
        return web.Response(body=body, content_type="application/json", headers=limits)

    app = web.Application()
    app.router.add_get(BASE_PATH + "/{resource}", listing)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


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
    parser.add_argument("--serve-fake", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fake:
        serve_fake(args.serve_fake, args.customers, args.orders)
        return 0
    sys.path.insert(0, str(ROOT))
    from tests._helpers import wait_until  # noqa: PLC0415
    from tests._serve import free_port  # noqa: PLC0415

    port = free_port()
    fake = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve-fake",
            str(port),
            "--customers",
            str(args.customers),
            "--orders",
            str(args.orders),
        ],
    )
    try:
        wait_until(lambda: _listening(port), "the fake Open API")
        with tempfile.TemporaryDirectory() as directory:
            settings = Settings(
                data_dir=Path(directory),
                api_key="bench",
                api_url=f"http://127.0.0.1:{port}/customer/open/v1",
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
