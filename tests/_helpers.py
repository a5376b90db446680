"""Everything the tests share that is not a fixture: one module, in sections.

Fixtures live in `tests/conftest.py` (and nothing is imported from it); the fake Open API
is a server of its own, in `tests/fake_api.py`. Sections, in order:

- Constants: the instant of the samples, the test secrets, deadlines, the checkout.
- Deliveries and signed requests: a `Delivery` as the endpoint logs it, signed headers.
- Waiting: for a condition, or for an awaited probe to return what is expected.
- Reading a data directory: rows of the log read on a connection of their own.
- The app in the test's event loop: the aiohttp test client, a POST, a metric.
- Raw HTTP: requests with bytes aiohttp's client refuses to send.
- `serve` as a process: a free port, its environment, the process, a delivery sender.
- Projections: a harness driving the real log and projector, dumps, the documented samples,
  and random histories for the hypothesis properties.
- Populated logs: the README's example data; two customers named Budi, one forgotten.
- Sync: virtual time, and what the tables should hold for a fake account.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import itertools
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import pytest
from hypothesis import strategies as st

import projections
from app.eventlog.reads import LogReader
from app.eventlog.rows import Delivery
from app.eventlog.store import AppendResult, EventStore
from app.files import make_private_dir
from app.instants import format_instant
from app.projection.feed import record
from app.projection.projector import Projector, connect
from app.sqlite import write_transaction
from app.sync.client import Policy
from app.webhooks.signature import compute_digest, sign
from projections import Touched, customers, orders, products

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence

    from aiohttp import web
    from aiohttp.test_utils import TestClient

    from app.settings import Settings
    from projections import Projection
    from tests.fake_api import Account, Entity

    Client = TestClient[web.Request, web.Application]
    MakeClient = Callable[[Settings], Awaitable[Client]]

T = TypeVar("T")


# ------------------------------------------------------------------------------------------------
# Constants
# ------------------------------------------------------------------------------------------------


# 2024-01-15T10:30:00Z, the `createdAt` of every sample payload.
T0 = 1705314600
SECRET = b"whsec_test_7c1e0a9d4b"
OTHER_SECRET = b"whsec_other_55f0b3e2a1"
# How long a test waits for something that takes milliseconds when all is well.
DEADLINE_SECONDS = 20.0
# Polling interval, not synchronisation: the condition decides.
_POLL_SECONDS = 0.02
# The checkout: commands started as processes run from it.
ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------
# Deliveries and signed requests
# ------------------------------------------------------------------------------------------------


def delivery(
    event_type: str,
    payload: Any,
    *,
    webhook_id: str,
    timestamp: int | None = T0,
    signed_at: int | None = None,
    secret: bytes | None = None,
    signature: str | None = None,
    received_at: str | None = None,
) -> Delivery:
    """One delivery as the endpoint would log it; `payload` bytes are kept as they are.

    With `secret`, it is really signed (its digest then binds its event type in the
    signature memory); otherwise it carries `signature`, or a placeholder that
    verifies nothing. It is signed at `signed_at`, else at its timestamp header, else T0.
    """
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signed = signed_at if signed_at is not None else (T0 if timestamp is None else timestamp)
    digests: tuple[str, ...] = ()
    if secret is not None:
        digest = compute_digest(secret, str(signed), body)
        signature, digests = f"t={signed},v1={digest}", (digest,)
    return Delivery(
        webhook_id=webhook_id,
        event_type=event_type,
        event_timestamp=timestamp,
        signed_at=signed,
        received_at=received_at or format_instant(signed),
        signature=f"t={signed},v1=test" if signature is None else signature,
        payload=body,
        digests=digests,
    )


def signed_headers(
    body: bytes,
    *,
    webhook_id: str | None = None,
    event: str = "order.created",
    signed_at: int | None = None,
    secret: bytes = SECRET,
    event_timestamp: str | None = "1705314600",
    content_type: str = "application/json",
) -> dict[str, str]:
    """The headers BitByBit sends with `body`, signed with `secret` at `signed_at` (now)."""
    headers = {
        "Content-Type": content_type,
        "X-BitByBit-Webhook-Id": webhook_id or f"wh_{uuid.uuid4().hex}",
        "X-BitByBit-Webhook-Event": event,
        "X-BitByBit-Webhook-Signature": sign(
            secret, int(time.time()) if signed_at is None else signed_at, body
        ),
    }
    if event_timestamp is not None:
        headers["X-BitByBit-Webhook-Timestamp"] = event_timestamp
    return headers


# ------------------------------------------------------------------------------------------------
# Waiting
# ------------------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds, failing the test after the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(_POLL_SECONDS)


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    """Await `probe` until `done` accepts what it returned, failing after the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}: last saw {value!r}")
        await asyncio.sleep(_POLL_SECONDS)


# ------------------------------------------------------------------------------------------------
# Reading a data directory
# ------------------------------------------------------------------------------------------------


def log_rows(data_dir: Path, query: str) -> list[tuple[Any, ...]]:
    """The rows of `query` on the log in `data_dir`, read on a connection of its own.

    None while there is no log yet: reading must not create the file.
    """
    path = data_dir / "events.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def event_rows(data_dir: Path) -> list[tuple[Any, ...]]:
    """`(position, webhook_id, event_type, payload)` of every logged event, read directly."""
    return log_rows(
        data_dir, "SELECT position, webhook_id, event_type, payload FROM events ORDER BY position"
    )


def conflict_rows(data_dir: Path) -> list[tuple[Any, ...]]:
    """`(webhook_id, logged_position, payload)` of every conflicting duplicate kept aside."""
    return log_rows(
        data_dir,
        "SELECT webhook_id, logged_position, payload FROM conflicting_duplicates ORDER BY id",
    )


def log_count(data_dir: Path) -> int:
    """How many rows the log holds."""
    store = LogReader.open(data_dir / "events.db")
    try:
        return store.count()
    finally:
        store.close()


# ------------------------------------------------------------------------------------------------
# The app in the test's event loop
# ------------------------------------------------------------------------------------------------


async def post(client: Client, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    """POST a delivery; the status and the decoded JSON answer."""
    async with client.post("/webhooks", data=body, headers=headers) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


def metric_sample(text: str, name: str) -> float:
    """The value of one sample line of a Prometheus text exposition."""
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric == name:
            return float(value)
    msg = f"{name} not in /metrics"
    raise AssertionError(msg)


# ------------------------------------------------------------------------------------------------
# Raw HTTP
# ------------------------------------------------------------------------------------------------


HEAD_END = b"\r\n\r\n"


@dataclasses.dataclass(frozen=True)
class RawAnswer:
    """The first response on a connection."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type without parameters."""
        return self.headers.get("content-type", "").partition(";")[0].strip()

    def json(self) -> Any:
        """The decoded body; fails the test if it is not JSON."""
        assert self.content_type == "application/json", (self.status, self.body)
        return json.loads(self.body)


def build_request(
    headers: list[tuple[bytes, bytes]], body: bytes, path: bytes = b"/webhooks"
) -> bytes:
    """A POST with exactly these header lines (no Content-Length unless given) and body."""
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + HEAD_END + body


@dataclasses.dataclass
class _Reader:
    """Bytes read so far, and whether they hold a whole first answer."""

    data: bytes = b""

    def answer(self) -> RawAnswer | None:
        head, sep, rest = self.data.partition(HEAD_END)
        if not sep:
            return None
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            return None
        return RawAnswer(int(status_line.split(" ")[1]), headers, rest[:length])


def exchange(port: int, data: bytes, timeout: float = 10.0) -> RawAnswer | None:
    """Send `data`, and read until the first answer is whole, the peer closes or time is up."""
    reader = _Reader()
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        while (answer := reader.answer()) is None:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return None
            if not chunk:
                return None
            reader.data += chunk
        return answer


async def exchange_async(
    port: int | None, data: bytes, wait: float = 10.0
) -> tuple[RawAnswer | None, bool]:
    """Send `data`; the first answer (None if none came) and whether the server then closed.

    Waits up to `wait` seconds for the server to close the connection after its answer.
    `port` is a test server's, which is None only before it starts.
    """
    assert port is not None
    stream, writer = await asyncio.open_connection("127.0.0.1", port)
    reader = _Reader()
    closed = False
    try:
        writer.write(data)
        async with asyncio.timeout(wait):
            while chunk := await stream.read(65536):
                reader.data += chunk
            closed = True
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        writer.close()
    return reader.answer(), closed


# ------------------------------------------------------------------------------------------------
# `serve` as a process
# ------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def app_env() -> dict[str, str]:
    """The environment a started command runs with: this checkout and the test secret."""
    env = {**os.environ, "BITBYBIT_WEBHOOK_SECRET": SECRET.decode(), "PYTHONPATH": str(ROOT)}
    env.pop("BITBYBIT_WEBHOOK_SECRET_FILE", None)
    return env


class ServeProcess:
    """One `python -m app serve` process, started and waited for until /healthz answers."""

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = data_dir.parent / f"serve-{self.port}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "app", "serve"),
                *("--port", str(self.port), "--data-dir", str(data_dir)),
            ],
            cwd=ROOT,
            env={**app_env(), **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            # A process group of its own, as on a terminal: a test can Ctrl-C all of it.
            start_new_session=True,
        )
        try:
            wait_until(self.healthy, "/healthz")
        except BaseException:
            # The caller gets no object to stop: stopped here, or it would outlive the test.
            self.stop()
            raise

    def healthy(self) -> bool:
        """Whether /healthz answers 200 yet; fails the test if the process died."""
        if self.proc.poll() is not None:
            pytest.fail(f"serve exited with {self.proc.returncode}")
        try:
            status, _ = self.request("GET", "/healthz")
        except OSError:
            return False
        return status == 200

    def caught_up(self) -> bool:
        """/readyz reports every projection at lag 0."""
        status, answer = self.request("GET", "/readyz")
        return status == 200 and all(p["lag"] == 0 for p in answer["projections"])

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request on a fresh connection: the status and the decoded JSON answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE_SECONDS)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def stop(self) -> None:
        """Kill the process if it still runs, and close its log file."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE_SECONDS)
        self.log.close()


# Bounded: the sender stops after this many, whatever happens to the test.
MAX_DELIVERIES = 3000


class DeliverySender(threading.Thread):
    """Posts signed deliveries one after another, remembering each id answered 200."""

    def __init__(self, serve: ServeProcess) -> None:
        super().__init__(daemon=True)
        self.serve = serve
        self.acknowledged: list[str] = []
        self.refused = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        for number in range(MAX_DELIVERIES):
            if self.stop.is_set():
                return
            body = msgspec.json.encode({"id": f"cust_{number}", "email": f"{number}@x.id"})
            headers = signed_headers(body, webhook_id=f"wh_{number}", event="customer.created")
            status, _ = self.serve.request("POST", "/webhooks", body, headers)
            if status == 200:
                with self.lock:
                    self.acknowledged.append(f"wh_{number}")
            else:
                self.refused += 1

    def snapshot(self) -> list[str]:
        """The ids acknowledged so far."""
        with self.lock:
            return list(self.acknowledged)


# ------------------------------------------------------------------------------------------------
# Projections: a harness, dumps, the documented samples
# ------------------------------------------------------------------------------------------------


Row = dict[str, Any]
Dump = dict[str, list[tuple[Any, ...]]]


def iso(seconds: int) -> str:
    """The text the projections write for a Unix time."""
    return format_instant(seconds)


def dump_tables(conn: sqlite3.Connection, mods: Sequence[Projection]) -> Dump:
    """Every table the projections own (user-facing, child, history, state), rows sorted."""
    dump: Dump = {}
    for projection in mods:
        for table in projection.TABLE.table_names:
            width = len(conn.execute(f"PRAGMA table_info({table})").fetchall())
            order = ", ".join(str(i) for i in range(1, width + 1))
            dump[table] = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
    return dump


class Harness:
    """An event log and a projections database in one directory, driven like `serve` does."""

    def __init__(
        self,
        directory: Path,
        mods: Sequence[Projection] | None = None,
        *,
        store: EventStore | None = None,
        synchronous: str = "NORMAL",
    ) -> None:
        # As the product makes it: private, so commands run on it later accept it.
        make_private_dir(directory)
        self.directory = directory
        self.owns_store = store is None
        self.store = store or EventStore.open(directory / "events.db", synchronous=synchronous)
        self.mods = list(mods) if mods is not None else projections.discover()
        self.conn = connect(directory / "projections.db", synchronous=synchronous)
        self.projector = Projector(self.conn, self.store, self.mods)
        self.projector.install_all()
        self._ids = itertools.count(1)

    def close(self) -> None:
        """Close both databases (the log only if this harness opened it)."""
        self.conn.close()
        if self.owns_store:
            self.store.close()

    def next_id(self) -> str:
        """A fresh webhook id, increasing in string order too."""
        return f"wh-{next(self._ids):06d}"

    def append(self, deliveries: Iterable[Delivery]) -> list[AppendResult]:
        """Log deliveries in one batch, without projecting them."""
        return self.store.append(list(deliveries))

    def log(
        self,
        event_type: str,
        payload: Any,
        *,
        webhook_id: str | None = None,
        timestamp: int | None = T0,
        signed_at: int | None = None,
    ) -> Delivery:
        """Log one event (without projecting it) and return the delivery."""
        d = delivery(
            event_type,
            payload,
            webhook_id=webhook_id or self.next_id(),
            timestamp=timestamp,
            signed_at=signed_at,
        )
        self.append([d])
        return d

    def send(
        self,
        event_type: str,
        payload: Any,
        *,
        webhook_id: str | None = None,
        timestamp: int | None = T0,
        signed_at: int | None = None,
    ) -> Delivery:
        """Log one event and project it, as `serve` does right after the commit."""
        d = self.log(
            event_type, payload, webhook_id=webhook_id, timestamp=timestamp, signed_at=signed_at
        )
        self.project()
        return d

    def project(self, batch_size: int = 1000) -> int:
        """Catch every current projection up with the log."""
        return self.projector.catch_up(batch_size)

    def select(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Rows of a query as dicts keyed by column name."""
        cursor = self.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def row(self, table: str, key: str, key_column: str = "id") -> Row | None:
        """One row of a table by its key, or None."""
        rows = self.select(f"SELECT * FROM {table} WHERE {key_column} = ?", (key,))
        assert len(rows) <= 1
        return rows[0] if rows else None

    def children(self, table: str, parent_column: str, key: str) -> list[Row]:
        """The child rows of one parent, in `position` order."""
        return self.select(
            f"SELECT * FROM {table} WHERE {parent_column} = ? ORDER BY position", (key,)
        )

    def dump(self) -> Dump:
        """Every projection table, rows sorted."""
        return dump_tables(self.conn, self.mods)

    def errors(self) -> list[Row]:
        """The recorded projection errors, in position order."""
        return self.select("SELECT * FROM _projection_errors ORDER BY projection, position")

    def checkpoints(self) -> dict[str, int]:
        """Each projection's checkpoint."""
        rows = self.conn.execute("SELECT name, position FROM _projections").fetchall()
        return {str(name): int(position) for name, position in rows}


def rebuilt(directory: Path, store: EventStore, batch_size: int = 1000) -> Dump:
    """The tables a from-scratch projection of `store`'s whole log gives."""
    fresh = Harness(directory, store=store)
    try:
        fresh.project(batch_size)
        return fresh.dump()
    finally:
        fresh.close()


def replayed(harness: Harness) -> Dump:
    """The tables after applying the whole log a second time on top of itself."""
    harness.conn.execute("UPDATE _projections SET position = 0")
    harness.project()
    return harness.dump()


# The sample payloads of the sender's documentation, verbatim
# (/work/shared/reference/bitbybit-webhook-events.md).
_SAMPLES: dict[str, dict[str, Any]] = {
    "customer.created": {
        "id": "cust_abc123",
        "email": "john@example.com",
        "phoneNumber": "+6281234567890",
        "firstName": "John",
        "lastName": "Doe",
        "imageUrl": None,
        "tags": ["new-customer"],
        "addresses": [
            {
                "id": "addr_xyz",
                "firstName": "John",
                "lastName": "Doe",
                "phone": "+6281234567890",
                "address1": "Jl. Sudirman No. 1",
                "city": "Jakarta",
                "province": "DKI Jakarta",
                "country": "ID",
                "zip": "10110",
            }
        ],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z",
    },
    "customer.updated": {
        "id": "cust_abc123",
        "email": "john.updated@example.com",
        "phoneNumber": "+6281234567890",
        "firstName": "John",
        "lastName": "Doe",
        "imageUrl": None,
        "tags": ["vip"],
        "addresses": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-16T08:00:00.000Z",
    },
    "customer.deleted": {"id": "cust_abc123"},
    "order.created": {
        "id": "order_def456",
        "orderId": "ORD-001",
        "orderNumber": "1001",
        "status": "active",
        "fulfillmentStatus": "unfulfilled",
        "financialStatus": "pending",
        "total": 150000,
        "currency": None,
        "customer": {
            "id": "cust_abc123",
            "firstName": "John",
            "lastName": "Doe",
            "email": "john@example.com",
            "phoneNumber": "+6281234567890",
        },
        "lineItems": [{"id": "li_001", "quantity": 2, "price": 75000, "title": "Premium T-Shirt"}],
        "shippingAddress": {
            "firstName": "John",
            "lastName": "Doe",
            "address1": "Jl. Sudirman No. 1",
            "city": "Jakarta",
            "province": "DKI Jakarta",
            "country": "ID",
            "zip": "10110",
        },
        "tags": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z",
    },
    "order.updated": {
        "id": "order_def456",
        "orderId": "ORD-001",
        "status": "active",
        "fulfillmentStatus": "fulfilled",
        "financialStatus": "paid",
        "total": 150000,
        "customer": {"id": "cust_abc123", "firstName": "John", "lastName": "Doe"},
        "lineItems": [],
        "tags": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-16T14:00:00.000Z",
    },
    "product.created": {
        "id": "prod_ghi789",
        "productId": "PROD-001",
        "name": "Premium T-Shirt",
        "description": "High-quality cotton t-shirt",
        "media": None,
        "status": None,
        "variants": [
            {"id": "var_001", "key": "Default", "price": 75000, "inventorySku": "TSH-001"}
        ],
        "options": [],
        "tags": ["apparel"],
        "types": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z",
    },
    "product.updated": {
        "id": "prod_ghi789",
        "productId": "PROD-001",
        "name": "Premium T-Shirt (Updated)",
        "description": "Updated description",
        "variants": [],
        "options": [],
        "tags": [],
        "types": [],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-17T09:00:00.000Z",
    },
    "product.deleted": {"id": "prod_ghi789"},
    "message.received": {
        "messageId": "msg_jkl012",
        "from": "+6281234567890",
        "body": "Hi, I have a question about my order",
        "source": "WHATSAPP_META",
        "receivedAt": "2024-01-15T10:30:00.000Z",
    },
    "message.status.updated": {
        "messageId": "msg_mno345",
        "status": "sent",
        "to": "+6281234567890",
        "templateName": "order_confirmation",
    },
}


def sample(event_type: str, **changes: Any) -> dict[str, Any]:
    """A fresh copy of the documented sample payload of `event_type`, with `changes`."""
    payload: dict[str, Any] = json.loads(json.dumps(_SAMPLES[event_type]))
    payload.update(changes)
    return payload


# ------------------------------------------------------------------------------------------------
# Projections: random histories over every projection, for hypothesis properties
# ------------------------------------------------------------------------------------------------

# A few ids of every entity kind, random subsets of fields, `updatedAt` and timestamp
# headers from small sets so that ties are frequent, explicit nulls, empty lists in
# updates, deletes, and message statuses known and unknown.

Payload = dict[str, Any]

UPDATED_AT = st.sampled_from(
    [
        None,
        "2024-01-15T10:30:00.000Z",
        "2024-01-15T17:30:00+07:00",  # the same instant as the one above
        "2024-01-16T08:00:00Z",
        "2024-01-16T08:00:00.000001Z",
        "not a time",
    ]
)
TIMESTAMP = st.sampled_from([None, T0, T0 + 1, T0 + 3600])
SIGNED_AT = st.sampled_from([T0, T0 + 7])
TEXT = st.sampled_from(["a", "b", "c"]) | st.none()
AMOUNT = st.sampled_from([0, 2, 150000, 75000.5]) | st.none()
PLAIN_LIST = st.lists(st.sampled_from(["x", "y", "z"]), max_size=3) | st.none()
STATUS = st.sampled_from(["pending", "queued", "sent", "delivered", "read", "failed", "weird"])


def _object(*fields: str, leaf: st.SearchStrategy[Any] = TEXT) -> st.SearchStrategy[Payload]:
    return st.fixed_dictionaries({}, optional=dict.fromkeys(fields, leaf))


def _objects(item: st.SearchStrategy[Payload]) -> st.SearchStrategy[list[Payload] | None]:
    return st.lists(item, max_size=3) | st.none()


def _entity(
    kind: str, ids: list[str], fields: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[tuple[str, Payload]]:
    body = st.fixed_dictionaries(
        {"id": st.sampled_from(ids)},
        optional={**fields, "createdAt": UPDATED_AT, "updatedAt": UPDATED_AT},
    )
    changed = st.tuples(st.sampled_from([f"{kind}.created", f"{kind}.updated"]), body)
    deleted = st.tuples(
        st.just(f"{kind}.deleted"), st.fixed_dictionaries({"id": st.sampled_from(ids)})
    )
    return changed | deleted if kind != "order" else changed


CUSTOMER = _entity(
    "customer",
    ["c1", "c2"],
    {
        "email": TEXT,
        "phoneNumber": TEXT,
        "firstName": TEXT,
        "imageUrl": TEXT,
        "tags": PLAIN_LIST,
        "addresses": _objects(_object("id", "city", "address2", "zip")),
    },
)
ORDER = _entity(
    "order",
    ["o1", "o2"],
    {
        "orderNumber": TEXT,
        "status": TEXT,
        "financialStatus": TEXT,
        "total": AMOUNT,
        "currency": TEXT,
        "customer": _object("id", "firstName", "email") | st.none(),
        "shippingAddress": _object("city", "zip", "phone") | st.none(),
        "lineItems": _objects(_object("id", "title") | _object("quantity", "price", leaf=AMOUNT)),
        "tags": PLAIN_LIST,
    },
)
PRODUCT = _entity(
    "product",
    ["p1", "p2"],
    {
        "name": TEXT,
        "status": TEXT,
        "media": _objects(_object("url", "alt")),
        "variants": _objects(_object("id", "key", "inventorySku") | _object("price", leaf=AMOUNT)),
        "options": PLAIN_LIST,
        "tags": PLAIN_LIST,
        "types": PLAIN_LIST,
    },
)
MESSAGE_ID = st.sampled_from(["m1", "m2"])
MESSAGE = st.tuples(
    st.just("message.received"),
    st.fixed_dictionaries(
        {"messageId": MESSAGE_ID},
        optional={"from": TEXT, "body": TEXT, "source": TEXT, "receivedAt": UPDATED_AT},
    ),
) | st.tuples(
    st.just("message.status.updated"),
    st.fixed_dictionaries(
        {"messageId": MESSAGE_ID},
        optional={"status": STATUS | st.none(), "to": TEXT, "templateName": TEXT},
    ),
)
EVENT = st.tuples(CUSTOMER | ORDER | PRODUCT | MESSAGE, TIMESTAMP, SIGNED_AT)


@st.composite
def histories(draw: st.DrawFn, max_size: int = 40) -> list[Delivery]:
    """Distinct events, each with its own webhook id (the log's dedup key)."""
    events = draw(st.lists(EVENT, min_size=1, max_size=max_size))
    return [
        delivery(event_type, payload, webhook_id=f"wh-{n:03d}", timestamp=ts, signed_at=signed)
        for n, ((event_type, payload), ts, signed) in enumerate(events)
    ]


def stray_order(conn: sqlite3.Connection) -> None:
    """A row an earlier version of the code wrote, which a rebuild drops (and says so)."""
    with write_transaction(conn):
        conn.execute("INSERT OR REPLACE INTO orders (id, status) VALUES ('stray', 'old')")
        record(conn, orders, Touched(entities={"stray": 0}))


def remake_projections(directory: Path) -> Harness:
    """projections.db deleted (as a user may, or moved aside as damaged), made anew."""
    for suffix in ("", "-wal", "-shm"):
        (directory / f"projections.db{suffix}").unlink(missing_ok=True)
    harness = Harness(directory)
    harness.project()
    return harness


# ------------------------------------------------------------------------------------------------
# Populated logs: the README's example data
# ------------------------------------------------------------------------------------------------


def _delivery(number: int, event_type: str, payload: dict[str, object]) -> Delivery:
    return delivery(
        event_type,
        msgspec.json.encode(payload),
        webhook_id=f"evt_{number:04d}",
        timestamp=1_705_000_000 + number,
        received_at="2024-01-15T10:30:00.000Z",
        signature=f"t=1705000000,v1={number:064x}",
    )


def _order(order_id: str, customer: str, status: str, total: int) -> dict[str, object]:
    return {
        "id": order_id,
        "orderNumber": order_id[-4:],
        "status": status,
        "total": total,
        "customer": {"id": customer, "firstName": customer.title(), "lastName": "X"},
        "lineItems": [{"id": f"li_{order_id}", "title": "Shirt", "quantity": 1, "price": total}],
        "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z",
    }


def populate_examples(data_dir: Path) -> None:
    """A log of the README's example data in `data_dir`, projected into projections.db."""
    events: list[tuple[str, dict[str, object]]] = [
        ("customer.created", {"id": "cust_abc123", "email": "a@x.id", "tags": ["vip"]}),
        ("customer.created", {"id": "cust_b", "email": "b@x.id", "tags": ["new"]}),
        ("customer.created", {"id": "cust_c", "email": "c@x.id", "tags": ["vip", "new"]}),
        ("customer.deleted", {"id": "cust_c"}),
        ("order.created", _order("order_0001", "cust_abc123", "active", 100)),
        ("order.created", _order("order_0002", "cust_abc123", "active", 50)),
        ("order.created", _order("order_0003", "cust_b", "cancelled", 70)),
        ("order.created", _order("order_0004", "cust_b", "completed", 30)),
        ("message.status.updated", {"messageId": "m1", "status": "sent", "to": "+62"}),
        ("message.status.updated", {"messageId": "m2", "status": "read", "to": "+62"}),
        ("message.status.updated", {"messageId": "m3", "status": "read", "to": "+62"}),
        ("message.received", {"messageId": "m4", "from": "+62", "body": "hi"}),
    ]
    append_and_project(
        data_dir, [_delivery(n, kind, body) for n, (kind, body) in enumerate(events)]
    )


def append_and_project(data_dir: Path, deliveries: Sequence[Delivery]) -> None:
    """Append `deliveries` to the log in `data_dir` and bring every projection up to date."""
    store = EventStore.open(data_dir / "events.db")
    store.append(deliveries)
    conn = connect(data_dir / "projections.db")
    runner = Projector(conn, store, projections.discover())
    runner.install_all()
    runner.catch_up()
    conn.close()
    store.close()


# ------------------------------------------------------------------------------------------------
# Populated logs: two customers named Budi, one of whom is forgotten
# ------------------------------------------------------------------------------------------------


FORGOTTEN = "cust_alice"
KEPT = "cust_bob"
SHARED_NAME = "Budi"
# Distinctive values of the forgotten person, as they are written in the bodies.
ALICE = {
    "email": "alice.forgotten@example.com",
    "conflict_email": "alice.conflict@example.com",
    "phone": "+62 811-1111-2222",
    "address_phone": "081199998888",
    "last_name": "Sëntosörahasia",
    "image": "https://img.example/alice-secret.png",
    "street": "Jl. Melati Rahasia No. 7",
    "snapshot_street": "Blok Rahasia Snapshot 12",
    "shipping_street": "Jl. Kenanga Tersembunyi 3",
    "shipping_phone": "+6281277776666",
    "closure_street": "Jl. Closure Only 9",
    "message_in": "my secret question about parcel",
    "later_email": "alice.came.back@example.com",
}
BOB = {
    "email": "bob.keeps@example.com",
    "phone": "+6282233334444",
    "street": "Jl. Mawar Tetap 5",
    "message_in": "hello from bob, keep me",
}


def _address(street: str, phone: str, last_name: str) -> dict[str, Any]:
    return {
        "id": f"addr_{street[-2:].strip()}",
        "firstName": SHARED_NAME,
        "lastName": last_name,
        "phone": phone,
        "address1": street,
        "city": "Jakarta",
        "province": "DKI Jakarta",
        "country": "ID",
        "zip": "10110",
    }


def budi_customer(customer_id: str, values: dict[str, str], **extra: Any) -> dict[str, Any]:
    """A customer body with `values`' email, phone and street."""
    last_name = values.get("last_name", "Tetap")
    body = {
        "id": customer_id,
        "email": values["email"],
        "phoneNumber": values["phone"],
        "firstName": SHARED_NAME,
        "lastName": last_name,
        "imageUrl": values.get("image"),
        "tags": ["vip"],
        "addresses": [_address(values["street"], values.get("address_phone", ""), last_name)],
        "createdAt": iso(T0),
        "updatedAt": iso(T0),
    }
    return body | extra


def budi_order(order_id: str, customer_id: str, values: dict[str, str]) -> dict[str, Any]:
    """An order of `customer_id` with its embedded customer and shipping address."""
    return {
        "id": order_id,
        "orderId": f"ORD-{order_id}",
        "orderNumber": "1001",
        "status": "active",
        "financialStatus": "paid",
        "total": 150000.50,
        "currency": "IDR",
        "customer": {
            "id": customer_id,
            "firstName": SHARED_NAME,
            "lastName": values.get("last_name", "Tetap"),
            "email": values["email"],
            "phoneNumber": values["phone"],
        },
        "lineItems": [{"id": "li_1", "title": "Kaos", "quantity": 2, "price": 75000.25}],
        "shippingAddress": _address(
            values.get("shipping_street", values["street"]),
            values.get("shipping_phone", values["phone"]),
            values.get("last_name", "Tetap"),
        ),
        "tags": ["gift"],
        "createdAt": iso(T0),
        "updatedAt": iso(T0),
    }


def snapshot(event_type: str, body: dict[str, Any], webhook_id: str) -> Delivery:
    """A snapshot row as the sync stores it: unsigned, without a timestamp header."""
    signed = delivery(event_type, body, webhook_id=webhook_id)
    return msgspec.structs.replace(signed, signature="", event_timestamp=None)


def populate_people(directory: Path) -> None:
    """Two customers named Budi, their orders and messages, a snapshot and a conflict."""
    h = Harness(directory)
    try:
        alice = budi_customer(FORGOTTEN, ALICE)
        h.log("customer.created", alice, webhook_id="wh-alice-created")
        h.log("customer.updated", alice | {"updatedAt": iso(T0 + 60)}, timestamp=T0 + 60)
        h.log("customer.created", budi_customer(KEPT, BOB))
        h.log("order.created", budi_order("order_a1", FORGOTTEN, ALICE))
        h.log("order.created", budi_order("order_b1", KEPT, BOB))
        # No `customer` in it: found as an event of their order all the same.
        h.log(
            "order.updated",
            {
                "id": "order_a1",
                "status": "completed",
                "shippingAddress": {"address1": ALICE["closure_street"]},
                "updatedAt": iso(T0 + 120),
            },
            timestamp=T0 + 120,
        )
        h.log("message.received", {"messageId": "msg_a_in", "from": "+6281111112222",
                                   "body": ALICE["message_in"], "source": "WHATSAPP"})  # fmt: skip
        h.log("message.status.updated", {"messageId": "msg_a_out", "status": "sent",
                                         "to": "+62 811 9999 8888"})  # fmt: skip
        h.log("message.received", {"messageId": "msg_b_in", "from": BOB["phone"],
                                   "body": BOB["message_in"], "source": "WHATSAPP"})  # fmt: skip
        snap = budi_customer(FORGOTTEN, ALICE | {"street": ALICE["snapshot_street"]})
        h.append([snapshot("customer.snapshot", snap, "snap-cust-alice")])
        h.append([snapshot("order.snapshot", budi_order("order_a1", FORGOTTEN, ALICE), "snap-ord")])
        # The same webhook id with another body: kept aside as a conflicting duplicate.
        conflict = alice | {"email": ALICE["conflict_email"]}
        h.log("customer.created", conflict, webhook_id="wh-alice-created")
        h.project()
    finally:
        h.close()


def forms(value: str) -> list[bytes]:
    """The byte forms a value can be stored in: UTF-8, and JSON-escaped."""
    return list({value.encode(), json.dumps(value).encode()[1:-1]})


# ------------------------------------------------------------------------------------------------
# Sync: virtual time
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class VirtualTime:
    """A clock that only moves when something sleeps; every sleep is recorded."""

    now: float = 1000.0
    sleeps: list[float] = dataclasses.field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def policy(self, attempts: int = 6) -> Policy:
        """A policy on this clock with the largest jitter, so waits are predictable."""
        return Policy(attempts=attempts, sleep=self.sleep, clock=self.clock, jitter=lambda: 1.0)


# ------------------------------------------------------------------------------------------------
# Sync: what the tables should hold for a fake account
# ------------------------------------------------------------------------------------------------


Rows = dict[str, list[tuple[Any, ...]]]
_NESTED = {"customer_": "customer", "shipping_": "shippingAddress"}


def camel(name: str) -> str:
    """`phone_number` -> `phoneNumber`, the API's spelling of a column."""
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _cell(value: Any) -> Any:
    # Lists are JSON text; snapshot bodies are kept with sorted keys.
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return value


def _column(entity: Entity, name: str) -> Any:
    for prefix, field in _NESTED.items():
        if name.startswith(prefix) and field in entity:
            nested = entity[field]
            return None if nested is None else nested.get(camel(name[len(prefix) :]))
    return _cell(entity.get(camel(name)))


def _rows(module: Any, entities: dict[str, Entity], deleted: set[str] | None = None) -> Rows:
    table = module.TABLE
    rows = []
    child_rows: dict[str, list[tuple[Any, ...]]] = {c.name: [] for c in table.children}
    for key, entity in sorted(entities.items()):
        values = [
            (key in (deleted or set())) if name == "deleted_at" else _column(entity, name)
            for name, _ in table.columns
        ]
        rows.append((key, *values))
        for child in table.children:
            items = entity.get(camel(child.register)) or []
            for position, item in enumerate(items):
                cells = [_cell(item.get(camel(name))) for name, _ in child.columns]
                child_rows[child.name].append((key, position, *cells))
    return {table.name: rows, **{name: sorted(r) for name, r in child_rows.items()}}


def expected(account: Account, deleted: set[str] | None = None) -> Rows:
    """Every user-facing table as the account's state says; `deleted_at` as True/False."""
    return {
        **_rows(customers, account.customers, deleted),
        **_rows(orders, account.orders),
        **_rows(products, account.products, deleted),
    }


def projected(data_dir: Path, names: list[str], projections_path: Path | None = None) -> Rows:
    """The tables after projecting the log; `deleted_at` as True/False.

    Into `projections_path`, by default the data directory's, where earlier calls left off.
    """
    store = LogReader.open(data_dir / "events.db")
    conn = connect(projections_path or data_dir / "projections.db")
    try:
        projector = Projector(conn, store, projections.discover())
        projector.install_all()
        projector.catch_up()
        result: Rows = {}
        for name in names:
            rows = conn.execute(f"SELECT * FROM {name} ORDER BY 1, 2").fetchall()
            columns = [d[0] for d in conn.execute(f"SELECT * FROM {name} LIMIT 0").description]
            if "deleted_at" in columns:
                at = columns.index("deleted_at")
                rows = [(*r[:at], r[at] is not None, *r[at + 1 :]) for r in rows]
            result[name] = rows
        return result
    finally:
        conn.close()
        store.close()


# Another process that takes a database's write lock, says so, and keeps it until its
# standard input closes.
_HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@contextlib.contextmanager
def held_write_lock(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds `BEGIN IMMEDIATE` on `path` for the block (an import, a forget)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "locked":
            pytest.fail("the lock holder did not take the write lock")
        yield holder
    finally:
        release_lock(holder)


def release_lock(holder: subprocess.Popen[str]) -> None:
    """Let the holder's lock go (closing its input) and wait for it to end."""
    if holder.stdin is not None and not holder.stdin.closed:
        holder.stdin.close()
    try:
        holder.wait(DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        holder.kill()
        holder.wait()
    if holder.stdout is not None:
        holder.stdout.close()


def processes_mentioning(text: str) -> list[int]:
    """The ids of the live processes whose command line contains `text` (from `/proc`).

    A forked worker keeps its parent's command line, so a data directory's path finds a
    command and every worker it forked, even once they are reparented. Zombies, which
    hold nothing and have an empty command line, are not counted.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found
