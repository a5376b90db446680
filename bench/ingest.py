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
service, `serve` and its live projector), read from /proc: steadier than req/s on a shared
machine, it is the figure to compare when judging a change.

While the service is under load a background thread polls `/readyz` every 0.25 s for the
projections' lag; after the load stops the script measures how long they take to reach
the head. At the end it checks that the log holds exactly the accepted deliveries.

Targets (issues #2 and #3): service >= 60 % of bare req/s (#2) and >= 45 % with live
projections (#3; `serve` always runs them, so every round is measured that way), service
p99 < 25 ms, no non-2xx, lag during load below one second's worth of events, back to zero
within 2 s. The verdicts are printed; the exit code is 0 unless the benchmark itself could
not run (or with `--check`, unless every target is met).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import math
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING

import msgspec

from app.eventlog.signature import sign

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LUA_SCRIPT = BENCH_DIR / "post.lua"
SECRET = "bench-secret-not-for-production"  # noqa: S105 - a throwaway secret for a local run
MAX_DURATION = 240  # keeps every `t` signed before a round inside the 300 s tolerance
POLL_SECONDS = 0.25
DRAIN_POLL_SECONDS = 0.05
DRAIN_TIMEOUT = 30.0

TARGET_RATIO = 0.60  # issue #2, set before projections existed
TARGET_RATIO_LIVE = 0.45  # issue #3, with live projections, as every round here runs
TARGET_P99_MS = 25.0
TARGET_LAG_SECONDS = 1.0
TARGET_DRAIN_SECONDS = 2.0


# --------------------------------------------------------------------------- deliveries


def _iso(ms: int) -> str:
    """An ISO 8601 UTC instant with milliseconds, as BitByBit writes them."""
    instant = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclasses.dataclass(slots=True)
class _Entities:
    """How many entities of one kind exist, and how many of them were deleted (oldest first)."""

    created: int = 0
    deleted: int = 0

    def pick(self, rng: random.Random) -> int:
        """A live entity, biased towards recent ones (they are the ones still changing)."""
        live = self.created - self.deleted
        return self.created - 1 - min(int(rng.expovariate(1 / 50)), live - 1)


# Event kinds and their share of the traffic.
_MIX: tuple[tuple[str, float], ...] = (
    ("customer", 0.20),
    ("order", 0.30),
    ("product", 0.10),
    ("message.received", 0.15),
    ("message.status.updated", 0.25),
)
_STATUSES = ("sent", "delivered", "read")
_ORDER_STATES = (
    ("active", "unfulfilled", "pending"),
    ("active", "unfulfilled", "paid"),
    ("active", "fulfilled", "paid"),
    ("closed", "fulfilled", "paid"),
)
_NAMES = ("Budi", "Siti", "Agus", "Dewi", "Rina", "Joko", "Putri", "Andi", "Wati", "Eko")
_CITIES = (
    ("Jakarta", "DKI Jakarta", "10110"),
    ("Bandung", "Jawa Barat", "40111"),
    ("Surabaya", "Jawa Timur", "60111"),
    ("Medan", "Sumatera Utara", "20111"),
)
_PRODUCTS = ("Premium T-Shirt", "Hoodie", "Tote Bag", "Cap", "Sneakers", "Batik Shirt")


class DeliveryFactory:
    """Builds realistic, signed deliveries; ids and signatures never repeat within a run.

    Entities are created, updated (mostly recent ones) and now and then deleted, so every
    projection has inserts, upserts and child-row replacements to do. Every body carries a
    per-delivery instant (`updatedAt`, `receivedAt`) or a fresh entity, so no two bodies,
    and hence no two signatures, are alike.
    """

    def __init__(self, seed: int, secret: bytes) -> None:
        self._rng = random.Random(seed)
        self._secret = secret
        self._tag = f"{seed:08x}"
        self._seq = 0
        self._base_ms = int(time.time() * 1000)
        self._kinds = {name: _Entities() for name in ("customer", "order", "product")}
        self._inbound = 0
        self._outbound = 0
        self._mix_names = [name for name, _ in _MIX]
        self._mix_weights = [weight for _, weight in _MIX]
        self._seen_digests: set[str] = set()

    def build(self, count: int, host: str, signed_at: int | None = None) -> list[bytes]:
        """`count` complete HTTP requests, signed now (or at `signed_at`)."""
        signed_at = int(time.time()) if signed_at is None else signed_at
        requests = []
        for kind in self._rng.choices(self._mix_names, self._mix_weights, k=count):
            event_type, body = self._event(kind)
            requests.append(self._request(event_type, body, signed_at, host))
        return requests

    def _request(self, event_type: str, body: bytes, signed_at: int, host: str) -> bytes:
        self._seq += 1
        signature = sign(self._secret, signed_at, body)
        digest = signature.partition("v1=")[2]
        if digest in self._seen_digests:
            raise AssertionError(f"generated a repeated signature for {event_type}")
        self._seen_digests.add(digest)
        head = (
            "POST /webhooks HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            "User-Agent: BitByBit-Webhooks/1.0\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"X-BitByBit-Webhook-Id: wh_{self._tag}_{self._seq:010d}\r\n"
            f"X-BitByBit-Webhook-Event: {event_type}\r\n"
            f"X-BitByBit-Webhook-Timestamp: {signed_at}\r\n"
            f"X-BitByBit-Webhook-Signature: {signature}\r\n"
            "\r\n"
        )
        return head.encode() + body

    def _event(self, kind: str) -> tuple[str, bytes]:
        """One event of `kind`: a creation, an update or a deletion of an entity."""
        now = _iso(self._base_ms + self._seq)
        if kind == "message.received":
            self._inbound += 1
            return kind, msgspec.json.encode(self._received(self._inbound, now))
        if kind == "message.status.updated":
            self._outbound += 1
            number, step = divmod(self._outbound - 1, len(_STATUSES))
            body = {
                "messageId": f"msg_out_{self._tag}_{number}",
                "status": _STATUSES[step],
                "to": f"+62812{number % 10_000_000:07d}",
                "templateName": "order_confirmation",
            }
            return kind, msgspec.json.encode(body)
        entities = self._kinds[kind]
        roll = self._rng.random()
        live = entities.created - entities.deleted
        if live < 20 or roll < 0.35:
            entities.created += 1
            return f"{kind}.created", msgspec.json.encode(
                self._entity(kind, entities.created - 1, now, created=now)
            )
        if kind != "order" and roll > 0.97:
            entities.deleted += 1
            return f"{kind}.deleted", msgspec.json.encode(
                {"id": self._id(kind, entities.deleted - 1)}
            )
        number = entities.pick(self._rng)
        created = _iso(self._base_ms - 86_400_000 + number)
        return f"{kind}.updated", msgspec.json.encode(
            self._entity(kind, number, now, created=created)
        )

    def _id(self, kind: str, number: int) -> str:
        prefix = {"customer": "cust", "order": "order", "product": "prod"}[kind]
        return f"{prefix}_{self._tag}_{number}"

    def _entity(self, kind: str, number: int, now: str, *, created: str) -> dict[str, object]:
        builders: dict[str, Callable[[int, str, str], dict[str, object]]] = {
            "customer": self._customer,
            "order": self._order,
            "product": self._product,
        }
        return builders[kind](number, now, created)

    def _customer(self, number: int, now: str, created: str) -> dict[str, object]:
        rng = self._rng
        first, last = rng.choice(_NAMES), rng.choice(_NAMES)
        city, province, zip_code = rng.choice(_CITIES)
        phone = f"+62813{number % 10_000_000:07d}"
        return {
            "id": self._id("customer", number),
            "email": f"{first.lower()}.{number}@example.com",
            "phoneNumber": phone,
            "firstName": first,
            "lastName": last,
            "imageUrl": None,
            "tags": rng.sample(
                ["vip", "new-customer", "wholesale", "reseller"], k=rng.randint(0, 2)
            ),
            "addresses": [
                {
                    "id": f"addr_{self._tag}_{number}_{i}",
                    "firstName": first,
                    "lastName": last,
                    "phone": phone,
                    "address1": f"Jl. Sudirman No. {rng.randint(1, 200)}",
                    "city": city,
                    "province": province,
                    "country": "ID",
                    "zip": zip_code,
                }
                for i in range(rng.randint(0, 2))
            ],
            "createdAt": created,
            "updatedAt": now,
        }

    def _order(self, number: int, now: str, created: str) -> dict[str, object]:
        rng = self._rng
        customers = self._kinds["customer"]
        customer = customers.pick(rng) if customers.created > customers.deleted else 0
        first, last = rng.choice(_NAMES), rng.choice(_NAMES)
        city, province, zip_code = rng.choice(_CITIES)
        status, fulfillment, financial = rng.choice(_ORDER_STATES)
        lines = [
            (rng.randint(1, 4), rng.choice((25_000, 75_000, 150_000, 320_000)))
            for _ in range(rng.randint(1, 4))
        ]
        items = [
            {
                "id": f"li_{self._tag}_{number}_{i}",
                "quantity": quantity,
                "price": price,
                "title": rng.choice(_PRODUCTS),
            }
            for i, (quantity, price) in enumerate(lines)
        ]
        return {
            "id": self._id("order", number),
            "orderId": f"ORD-{number:07d}",
            "orderNumber": str(1000 + number),
            "status": status,
            "fulfillmentStatus": fulfillment,
            "financialStatus": financial,
            "total": sum(quantity * price for quantity, price in lines),
            "currency": "IDR",
            "customer": {
                "id": self._id("customer", customer),
                "firstName": first,
                "lastName": last,
                "email": f"{first.lower()}.{customer}@example.com",
                "phoneNumber": f"+62813{customer % 10_000_000:07d}",
            },
            "lineItems": items,
            "shippingAddress": {
                "firstName": first,
                "lastName": last,
                "address1": f"Jl. Thamrin No. {rng.randint(1, 200)}",
                "city": city,
                "province": province,
                "country": "ID",
                "zip": zip_code,
            },
            "tags": [],
            "createdAt": created,
            "updatedAt": now,
        }

    def _product(self, number: int, now: str, created: str) -> dict[str, object]:
        rng = self._rng
        name = rng.choice(_PRODUCTS)
        return {
            "id": self._id("product", number),
            "productId": f"PROD-{number:06d}",
            "name": name,
            "description": f"{name}, batch {rng.randint(1, 99)}",
            "media": None,
            "status": rng.choice(("active", "draft", None)),
            "variants": [
                {
                    "id": f"var_{self._tag}_{number}_{i}",
                    "key": size,
                    "price": rng.choice((75_000, 99_000, 125_000)),
                    "inventorySku": f"SKU-{number}-{size}",
                }
                for i, size in enumerate(rng.sample(["S", "M", "L", "XL"], k=rng.randint(1, 3)))
            ],
            "options": [],
            "tags": ["apparel"],
            "types": [],
            "createdAt": created,
            "updatedAt": now,
        }

    def _received(self, number: int, now: str) -> dict[str, object]:
        rng = self._rng
        return {
            "messageId": f"msg_in_{self._tag}_{number}",
            "from": f"+62812{rng.randint(0, 9_999_999):07d}",
            "body": rng.choice(
                (
                    "Hi, I have a question about my order",
                    "Is this still in stock?",
                    "Thanks!",
                    "When will my package arrive?",
                )
            ),
            "source": "WHATSAPP_META",
            "receivedAt": now,
        }


def write_slices(requests: list[bytes], prefix: Path, threads: int) -> None:
    """One file per wrk thread (`prefix.1` ...), each a contiguous, disjoint slice."""
    size = math.ceil(len(requests) / threads)
    for thread in range(threads):
        with Path(f"{prefix}.{thread + 1}").open("wb") as out:
            for request in requests[thread * size : (thread + 1) * size]:
                out.write(b"%d\n" % len(request))
                out.write(request)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Block until `url` answers 200, or fail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=1) as answer,  # noqa: S310 - local http URL
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy within {timeout} s")


@contextlib.contextmanager
def started(
    argv: list[str], url: str, env: dict[str, str], log: IO[bytes]
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server for the duration of the block; SIGTERM (then SIGKILL) it afterwards."""
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, process)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --------------------------------------------------------------------------- CPU


def cpu_seconds(pid: int) -> float:
    """User + system CPU used so far by `pid` and its children, running or ended.

    Measured per request, CPU is steadier than req/s on a shared machine: it is what a
    change to the code moves, while req/s also moves with whatever else runs. A child
    that ended (a restarted projector) is in `pid`'s own cutime/cstime; grandchildren
    that are still running are not counted (the service starts none).
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a process that ended meanwhile
        if stat.parent.name == str(pid):
            total += sum(int(field) for field in fields[11:15]) / ticks
        elif fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


@contextlib.contextmanager
def cpu_used(pid: int) -> Iterator[list[float]]:
    """Collect the CPU seconds `pid` (and its children) spent in the block, in a list of one."""
    used: list[float] = []
    before = cpu_seconds(pid)
    try:
        yield used
    finally:
        used.append(cpu_seconds(pid) - before)


def per_request_us(seconds: float, requests: int) -> float:
    """CPU microseconds per answered request."""
    return seconds * 1e6 / requests if requests else math.nan


# --------------------------------------------------------------------------- wrk


@dataclasses.dataclass(frozen=True, slots=True)
class WrkResult:
    """What `post.lua`'s `done()` reported for one run."""

    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    accepted: int
    duplicate: int
    wrapped: int
    sent: int
    socket_errors: int
    statuses: str


def parse_wrk(output: str) -> WrkResult:
    """Read the `BENCH key=value ...` line printed by `post.lua`."""
    line = next((x for x in output.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH line:\n{output}")
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    return WrkResult(
        requests=int(fields["requests"]),
        rps=float(fields["rps"]),
        p50_ms=int(fields["p50_us"]) / 1000,
        p90_ms=int(fields["p90_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000,
        max_ms=int(fields["max_us"]) / 1000,
        non2xx=int(fields["non2xx"]),
        accepted=int(fields["accepted"]),
        duplicate=int(fields["duplicate"]),
        wrapped=int(fields["wrapped"]),
        sent=int(fields["sent"]),
        socket_errors=sum(
            int(fields[k]) for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        statuses=fields["statuses"],
    )


def run_wrk(url: str, prefix: Path, args: argparse.Namespace, duration: float) -> WrkResult:
    """One wrk run against `url` with the request files under `prefix`."""
    command = [
        args.wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration:g}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(prefix),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=duration + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return parse_wrk(done.stdout)


# --------------------------------------------------------------------------- projection lag


class _Projection(msgspec.Struct):
    name: str
    lag: int
    errors: int


class _Ready(msgspec.Struct):
    projections: list[_Projection]


def read_lag(url: str) -> tuple[int, int] | None:
    """(largest lag, total projection errors) from `/readyz`, or None if it did not answer."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - local http URL
            ready = msgspec.json.decode(answer.read(), type=_Ready)
    except (OSError, msgspec.DecodeError):
        return None
    return (
        max((p.lag for p in ready.projections), default=0),
        sum(p.errors for p in ready.projections),
    )


class LagMonitor(threading.Thread):
    """Polls `/readyz` every `interval` seconds while the load runs; keeps the largest lag."""

    def __init__(self, url: str, interval: float = POLL_SECONDS) -> None:
        super().__init__(name="readyz-poller", daemon=True)
        self._url = url
        self._interval = interval
        self._stop_event = threading.Event()
        self.samples: list[int] = []
        self.failures = 0

    def run(self) -> None:
        """Sample until `stop()`."""
        while not self._stop_event.is_set():
            reading = read_lag(self._url)
            if reading is None:
                self.failures += 1
            else:
                self.samples.append(reading[0])
            self._stop_event.wait(self._interval)

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop_event.set()
        self.join()

    @property
    def max_lag(self) -> int:
        """The largest lag seen, in events."""
        return max(self.samples, default=0)


def time_to_drain(url: str, started_at: float) -> tuple[float, int]:
    """Seconds from `started_at` until every projection's lag is 0; and the error count."""
    deadline = started_at + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        reading = read_lag(url)
        if reading is not None and reading[0] == 0:
            return time.monotonic() - started_at, reading[1]
        time.sleep(DRAIN_POLL_SECONDS)
    return math.inf, -1


# --------------------------------------------------------------------------- the run


@dataclasses.dataclass(slots=True)
class ServiceRound:
    """One service round: wrk's figures and the projections' lag."""

    wrk: WrkResult
    cpu_us: float  # the service's processes (serve and its live projector), per request
    max_lag: int
    lag_samples: int
    drain_seconds: float
    projection_errors: int
    generated: int
    generate_seconds: float


@dataclasses.dataclass(slots=True)
class Totals:
    """What the service answered over the whole run, to check the log against."""

    accepted: int = 0
    duplicate: int = 0
    unanswered: int = 0
    rounds: list[ServiceRound] = dataclasses.field(default_factory=list)
    bare: list[WrkResult] = dataclasses.field(default_factory=list)
    bare_cpu_us: list[float] = dataclasses.field(default_factory=list)

    def add(self, result: WrkResult) -> None:
        """Count one service run's answers (and the requests wrk left unanswered at its end)."""
        self.accepted += result.accepted
        self.duplicate += result.duplicate
        self.unanswered += result.sent - result.requests


@dataclasses.dataclass(frozen=True, slots=True)
class _Setup:
    """What every service round needs."""

    factory: DeliveryFactory
    base: str
    workdir: Path
    args: argparse.Namespace
    pid: int


def _service_round(setup: _Setup, *, duration: float, name: str) -> ServiceRound:
    """Sign fresh deliveries, load the service with them, watch the projections' lag."""
    factory, base, workdir, args = setup.factory, setup.base, setup.workdir, setup.args
    count = max(1000, math.ceil(duration * args.max_rate))
    began = time.perf_counter()
    prefix = workdir / f"requests-{name}"
    write_slices(factory.build(count, "127.0.0.1"), prefix, args.threads)
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
        per_request_us(cpu[0], result.requests),
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
    factory = DeliveryFactory(args.seed, SECRET.encode())
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
                print(f"round {number} service: {_row_text(result.wrk)}", flush=True)
                # The bare handler ignores ids and signatures: the same requests do.
                with cpu_used(bare_server.pid) as cpu:
                    bare = run_wrk(
                        f"{bare_base}/webhooks", workdir / f"requests-round{number}", args,
                        args.duration,
                    )  # fmt: skip
                totals.bare.append(bare)
                totals.bare_cpu_us.append(per_request_us(cpu[0], bare.requests))
                print(f"round {number} bare:    {_row_text(bare)}", flush=True)
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=60)
                print(f"profile written to {args.profile}", flush=True)
        logged = _count_logged(data_dir / "events.db")
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


def _count_logged(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        count: int = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    return count


# --------------------------------------------------------------------------- the report


def _row_text(result: WrkResult) -> str:
    return (
        f"{result.rps:9.0f} req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
        f"non-2xx {result.non2xx}"
    )


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(totals: Totals, args: argparse.Namespace) -> bool:
    """Print the table and the verdicts; True when every target is met."""
    print()
    print(
        f"{args.connections} connections, {args.threads} wrk threads, "
        f"{args.duration:g} s per run, {args.rounds} rounds (A = service, B = bare)"
    )
    header = (
        f"{'round':>5} {'side':<8} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'non-2xx':>8} {'requests':>9} {'cpu us':>7} {'max lag':>8} "
        f"{'drain s':>8}"
    )
    print(header)
    print("-" * len(header))
    rows = zip(totals.rounds, totals.bare, totals.bare_cpu_us, strict=True)
    for number, (svc, bare, bare_cpu) in enumerate(rows, 1):
        w = svc.wrk
        print(
            f"{number:>5} {'service':<8} {w.rps:>9.0f} {w.p50_ms:>8.2f} {w.p90_ms:>8.2f} "
            f"{w.p99_ms:>8.2f} {w.max_ms:>8.1f} {w.non2xx:>8} {w.requests:>9} "
            f"{svc.cpu_us:>7.0f} {svc.max_lag:>8} {svc.drain_seconds:>8.2f}"
        )
        print(
            f"{number:>5} {'bare':<8} {bare.rps:>9.0f} {bare.p50_ms:>8.2f} {bare.p90_ms:>8.2f} "
            f"{bare.p99_ms:>8.2f} {bare.max_ms:>8.1f} {bare.non2xx:>8} {bare.requests:>9} "
            f"{bare_cpu:>7.0f} {'-':>8} {'-':>8}"
        )
    service_rps = statistics.median(r.wrk.rps for r in totals.rounds)
    bare_rps = statistics.median(b.rps for b in totals.bare)
    ratio = service_rps / bare_rps if bare_rps else 0.0
    worst_p99 = max(r.wrk.p99_ms for r in totals.rounds)
    non2xx = sum(r.wrk.non2xx + r.wrk.socket_errors for r in totals.rounds)
    max_lag = max(r.max_lag for r in totals.rounds)
    lag_seconds = max(r.max_lag / r.wrk.rps if r.wrk.rps else math.inf for r in totals.rounds)
    drain = max(r.drain_seconds for r in totals.rounds)
    errors = max(r.projection_errors for r in totals.rounds)
    wrapped = sum(r.wrk.wrapped for r in totals.rounds)
    statuses = {r.wrk.statuses for r in totals.rounds} - {"-"}
    status_text = f" (statuses {', '.join(sorted(statuses))})" if statuses else ""
    checks = [
        *(
            (
                ratio >= target,
                (
                    f"median req/s: service {service_rps:.0f} / bare {bare_rps:.0f} = "
                    f"{ratio:.1%} (target >= {target:.0%}, {which})"
                ),
            )
            for target, which in (
                (TARGET_RATIO, "issue #2"),
                (TARGET_RATIO_LIVE, "issue #3, with live projections"),
            )
        ),
        (
            worst_p99 < TARGET_P99_MS,
            f"service p99 (worst round): {worst_p99:.2f} ms (target < {TARGET_P99_MS:g} ms)",
        ),
        (non2xx == 0, f"service non-2xx + socket errors: {non2xx}{status_text}"),
        (
            lag_seconds < TARGET_LAG_SECONDS,
            (
                f"max projection lag during load: {max_lag} events = {lag_seconds:.2f} s of "
                f"events at the round's rate (target < {TARGET_LAG_SECONDS:g} s)"
            ),
        ),
        (
            drain <= TARGET_DRAIN_SECONDS,
            (
                f"lag back to 0 after load stopped: {drain:.2f} s "
                f"(target <= {TARGET_DRAIN_SECONDS:g} s)"
            ),
        ),
        (errors == 0, f"projection errors: {errors}"),
        (wrapped == 0, f"request files exhausted: {wrapped} times (raise --max-rate if > 0)"),
    ]
    print()
    for ok, text in checks:
        print(f"  [{_verdict(ok):>6}] {text}")
    service_cpu = statistics.median(r.cpu_us for r in totals.rounds)
    bare_cpu = statistics.median(totals.bare_cpu_us)
    times = f" = {service_cpu / bare_cpu:.2f}x" if bare_cpu else ""
    print(
        f"  CPU per request (medians, not a target): service {service_cpu:.0f} us (serve and "
        f"its live projector, until caught up) / bare {bare_cpu:.0f} us{times}"
    )
    print(
        f"  generated {sum(r.generated for r in totals.rounds)} signed deliveries in "
        f"{sum(r.generate_seconds for r in totals.rounds):.1f} s; readyz samples per round: "
        f"{', '.join(str(r.lag_samples) for r in totals.rounds)}"
    )
    return all(ok for ok, _ in checks)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; every one has a default."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="A B pairs to run (default 2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds per side")
    parser.add_argument(
        "--max-rate",
        type=float,
        default=8000.0,
        help="deliveries signed per second of a service run (default 8000); wrk reports "
        "`wrapped` if the service went faster and ids had to repeat",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--wrk", default="wrk", help="the wrk binary")
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
