"""`rebuild`: equals live projection, `check` finds differences, locking, staleness, crashes.

Last, end to end: `rebuild` while `serve` takes deliveries, both as real processes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import projections
import projections.customers
import projections.orders
from app.eventlog.store import EventStore
from app.projection import rebuild as rebuild_module
from app.projection.projector import Projector, connect
from app.projection.rebuild import RebuildError, check, exclusive, rebuild, select
from app.settings import Settings
from app.webhooks.signature import sign
from tests._helpers import (
    DEADLINE_SECONDS,
    ROOT,
    SECRET,
    T0,
    ServeProcess,
    app_env,
    delivery,
    dump_tables,
    processes_mentioning,
    sample,
    wait_until,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from app.eventlog.rows import Delivery
    from projections import Change, Event


Dump = dict[str, list[tuple[Any, ...]]]


class Live:
    """A data directory driven as `serve` drives it: log appends, then small live batches."""

    def __init__(self, data_dir: Path, batch_size: int = 3) -> None:
        self.settings = Settings(data_dir=data_dir)
        self.store = EventStore.open(self.settings.events_path, synchronous="OFF")
        self.conn = connect(self.settings.projections_path, synchronous="OFF")
        self.projector = Projector(self.conn, self.store, projections.discover())
        self.projector.install_all()
        self.batch_size = batch_size
        self._ids = 0

    def close(self) -> None:
        """Close both databases."""
        self.conn.close()
        self.store.close()

    def log(self, deliveries: Sequence[Delivery]) -> None:
        """Log deliveries without projecting them."""
        self.store.append(list(deliveries))

    def send(self, event_type: str, payload: Any, timestamp: int | None = T0) -> None:
        """Log one event and project it, as `serve` does after the commit."""
        self._ids += 1
        self.log(
            [delivery(event_type, payload, webhook_id=f"wh-{self._ids:06d}", timestamp=timestamp)]
        )
        self.project()

    def project(self) -> int:
        """Catch the live projector up in small batches."""
        return self.projector.catch_up(self.batch_size)

    def dump(self) -> Dump:
        """Every projection table and the recorded errors and warnings, rows sorted."""
        dump = dump_tables(self.conn, projections.discover())
        dump["_projection_errors"] = self.conn.execute(
            "SELECT projection, position, webhook_id, event_type FROM _projection_errors "
            "ORDER BY 1, 2"
        ).fetchall()
        dump["_projection_warnings"] = self.conn.execute(
            "SELECT * FROM _projection_warnings ORDER BY 1, 2"
        ).fetchall()
        return dump

    def versions(self) -> dict[str, tuple[int, int]]:
        """Each projection's (built version, checkpoint)."""
        rows = self.conn.execute("SELECT name, version, position FROM _projections")
        return {name: (version, position) for name, version, position in rows}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    harness = Live(tmp_path / "data")
    yield harness
    harness.close()


# --- generated histories ---------------------------------------------------------------

CUSTOMERS = ["cust_1", "cust_2"]
ORDERS = ["order_1", "order_2"]
PRODUCTS = ["prod_1", "prod_2"]
MESSAGES = ["msg_1", "msg_2"]
UPDATED_AT = st.sampled_from(
    [
        "2024-01-15T10:30:00.000Z",
        "2024-01-16T08:00:00.000Z",
        "2024-01-16T08:00:00+07:00",
        "2024-01-17T09:00:00",
        "not a date",
        None,
    ]
)
TIMESTAMPS = st.one_of(st.none(), st.integers(T0 - 100, T0 + 100))
MAYBE = st.sampled_from(["keep", "drop", "null"])


def _vary(payload: dict[str, Any], draw: st.DrawFn, fields: Sequence[str]) -> dict[str, Any]:
    for field in fields:
        choice = draw(MAYBE)
        if choice == "drop":
            payload.pop(field, None)
        elif choice == "null":
            payload[field] = None
    return payload


@st.composite
def events(draw: st.DrawFn) -> tuple[str, Any, int | None]:
    """One delivery of any of the ten event types about a few shared entities."""
    kind = draw(
        st.sampled_from(
            [
                "customer.created",
                "customer.updated",
                "customer.deleted",
                "order.created",
                "order.updated",
                "product.created",
                "product.updated",
                "product.deleted",
                "message.received",
                "message.status.updated",
                "bad",
            ]
        )
    )
    timestamp = draw(TIMESTAMPS)
    tag = draw(st.sampled_from(["a", "b", "c"]))
    payload: Any
    if kind == "bad":
        # An event a projection cannot apply: recorded as an error, identically.
        return draw(st.sampled_from(["order.updated", "customer.created"])), b"{", timestamp
    if kind.endswith(".deleted"):
        pool = CUSTOMERS if kind.startswith("customer") else PRODUCTS
        return kind, {"id": draw(st.sampled_from(pool))}, timestamp
    if kind.startswith("customer"):
        payload = sample(kind, id=draw(st.sampled_from(CUSTOMERS)), email=f"{tag}@example.com")
        payload["tags"] = draw(st.sampled_from([[], [tag], ["x", tag]]))
        if draw(st.booleans()):
            payload["addresses"] = []
        _vary(payload, draw, ["email", "firstName", "addresses", "updatedAt"])
    elif kind.startswith("order"):
        payload = sample(kind, id=draw(st.sampled_from(ORDERS)), status=tag)
        if kind == "order.updated" and draw(st.booleans()):
            payload["lineItems"] = [{"id": tag, "quantity": 1, "price": 9.5, "title": tag}]
        _vary(payload, draw, ["status", "customer", "shippingAddress", "lineItems", "total"])
    elif kind.startswith("product"):
        payload = sample(kind, id=draw(st.sampled_from(PRODUCTS)), name=tag)
        # Sometimes the Open API's shape: applied by the shape rule, a warning, identically.
        payload.update(draw(st.sampled_from([{}, {"media": f"https://cdn.example.com/{tag}.jpg"}])))
        _vary(payload, draw, ["name", "variants", "tags", "media"])
    elif kind == "message.received":
        payload = sample(kind, messageId=draw(st.sampled_from(MESSAGES)), body=tag)
        _vary(payload, draw, ["body", "from"])
    else:
        status = draw(st.sampled_from(["pending", "sent", "delivered", "read", "failed", "odd"]))
        payload = sample(kind, messageId=draw(st.sampled_from(MESSAGES)), status=status)
        _vary(payload, draw, ["to", "templateName"])
    if "updatedAt" in payload:
        payload["updatedAt"] = draw(UPDATED_AT)
    return kind, payload, timestamp


@given(history=st.lists(events(), min_size=1, max_size=25), batch=st.integers(1, 4))
def test_rebuild_equals_live_projection(
    history: list[tuple[str, Any, int | None]], batch: int
) -> None:
    """Live projection in small batches and a full rebuild give the same tables."""
    with tempfile.TemporaryDirectory() as directory:
        harness = Live(Path(directory), batch_size=batch)
        try:
            for event_type, payload, timestamp in history:
                harness.send(event_type, payload, timestamp)
            live_tables = harness.dump()
            out = io.StringIO()
            assert check(harness.settings, projections.discover(), stream=out) == 0, out.getvalue()
            summaries = rebuild(harness.settings, projections.discover(), stream=io.StringIO())
            assert harness.dump() == live_tables
            assert {s.name for s in summaries} == {p.NAME for p in projections.discover()}
            head = harness.store.head()
            assert {p for _, p in harness.versions().values()} == {head}
            # The live projector carries on from the rebuilt checkpoint: nothing to apply.
            assert harness.project() == 0
            assert harness.dump() == live_tables
        finally:
            harness.close()


def test_rebuild_summary_counts(live: Live) -> None:
    live.send("customer.created", sample("customer.created"))
    live.send("order.created", sample("order.created"))
    live.send("order.updated", b"not json")
    summaries = {s.name: s for s in rebuild(live.settings, projections.discover(), io.StringIO())}
    assert summaries["customers"].events == 1
    assert summaries["customers"].rows == 2  # the customer and one address
    assert summaries["orders"].events == 2
    assert summaries["orders"].errors == 1
    assert summaries["messages"].events == 0
    assert all(s.seconds > 0 for s in summaries.values())


def test_summary_counts_events_taken_in_the_switch(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events logged while the build ran are applied in the switch, and counted there."""
    live.send("customer.created", sample("customer.created"))
    live.send("customer.updated", sample("customer.updated"))
    # The build sees a head of 1, as if the update arrived while it ran.
    monkeypatch.setattr(EventStore, "head", lambda _self: 1)
    summaries = {s.name: s for s in rebuild(live.settings, projections.discover(), io.StringIO())}
    assert summaries["customers"].events == 2
    assert live.conn.execute("SELECT email FROM customers").fetchall() == [
        ("john.updated@example.com",)
    ]


# --- check ---------------------------------------------------------------------------------


def test_check_finds_a_corrupted_row_and_changes_nothing(live: Live) -> None:
    live.send("customer.created", sample("customer.created"))
    live.send("customer.created", sample("customer.created", id="cust_2"))
    live.send("order.created", sample("order.created"))
    assert check(live.settings, projections.discover(), stream=io.StringIO()) == 0
    live.conn.execute("UPDATE customers SET email = 'tampered@example.com' WHERE id = 'cust_2'")
    before = live.dump()
    files_before = sorted(p.name for p in live.settings.data_dir.iterdir())
    out = io.StringIO()
    differences = check(live.settings, projections.discover(), stream=out)
    assert differences > 0
    assert "tampered@example.com" in out.getvalue()
    assert "customers" in out.getvalue()
    assert live.dump() == before
    assert sorted(p.name for p in live.settings.data_dir.iterdir()) == files_before
    # Only the named projection is compared.
    assert check(live.settings, select(projections.discover(), ["orders"]), io.StringIO()) == 0


def test_check_after_rebuild_repairs_the_row(live: Live) -> None:
    live.send("customer.created", sample("customer.created"))
    live.conn.execute("UPDATE customers SET email = 'x'")
    rebuild(live.settings, select(projections.discover(), ["customers"]), io.StringIO())
    assert check(live.settings, projections.discover(), io.StringIO()) == 0
    assert live.conn.execute("SELECT email FROM customers").fetchone() == ("john@example.com",)


# --- selection and locking -----------------------------------------------------------------


def test_unknown_projection_names_the_known_ones() -> None:
    with pytest.raises(RebuildError) as raised:
        select(projections.discover(), ["customers", "nope"])
    message = str(raised.value)
    assert "nope" in message
    for name in ("customers", "messages", "orders", "products"):
        assert name in message


def test_select_keeps_the_named_ones_once() -> None:
    chosen = select(projections.discover(), ["orders", "customers", "orders"])
    assert [p.NAME for p in chosen] == ["orders", "customers"]
    assert len(select(projections.discover(), [])) == len(projections.discover())


def test_a_second_rebuild_refuses(live: Live) -> None:
    live.send("customer.created", sample("customer.created"))
    before = live.dump()
    with exclusive(live.settings):
        with pytest.raises(RebuildError, match="another rebuild"):
            rebuild(live.settings, projections.discover(), io.StringIO())
        with pytest.raises(RebuildError, match="another rebuild"):
            check(live.settings, projections.discover(), io.StringIO())
    assert live.dump() == before
    rebuild(live.settings, projections.discover(), io.StringIO())  # the lock is released


# --- staleness -----------------------------------------------------------------------------


def test_stale_projection_is_left_alone_until_rebuilt(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    live.send("customer.created", sample("customer.created"))
    built_with = projections.customers.VERSION
    monkeypatch.setattr(projections.customers, "VERSION", built_with + 1)
    # A `serve` started with the new code: customers is stale and left alone.
    runner = Projector(live.conn, live.store, projections.discover())
    runner.install_all()
    live.log([delivery("customer.updated", sample("customer.updated"), webhook_id="wh-u1")])
    live.log([delivery("order.created", sample("order.created"), webhook_id="wh-o1")])
    runner.catch_up(2)
    stale = {s.name: s.stale for s in runner.statuses()}
    assert stale == {"customers": True, "messages": False, "orders": False, "products": False}
    assert live.conn.execute("SELECT email FROM customers").fetchall() == [("john@example.com",)]
    assert live.conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (1,)
    assert live.versions()["customers"] == (built_with, 1)

    rebuild(live.settings, select(projections.discover(), ["customers"]), io.StringIO())
    assert not any(s.stale for s in runner.statuses())
    assert live.versions()["customers"] == (built_with + 1, 3)
    assert live.conn.execute("SELECT email FROM customers").fetchall() == [
        ("john.updated@example.com",)
    ]
    # The same (still running) projector applies new events to it again.
    newer = sample("customer.updated", email="newest@example.com")
    newer["updatedAt"] = "2024-02-01T00:00:00.000Z"
    live.log([delivery("customer.updated", newer, webhook_id="wh-u2")])
    assert runner.catch_up(2) == 1
    assert live.conn.execute("SELECT email FROM customers").fetchall() == [("newest@example.com",)]
    assert check(live.settings, projections.discover(), io.StringIO()) == 0


# --- interrupted rebuilds ------------------------------------------------------------------


class Interrupted(BaseException):
    """Stands for a kill in the middle of a build: nothing catches it."""


def _raising_after(original: Any, calls: int) -> Any:
    seen = 0

    def apply(event: Event) -> list[Change]:
        nonlocal seen
        seen += 1
        if seen > calls:
            raise Interrupted
        result: list[Change] = original(event)
        return result

    return apply


def _fill(live: Live, count: int) -> None:
    deliveries = []
    for i in range(count):
        deliveries.append(
            delivery(
                "order.created",
                sample("order.created", id=f"order_{i % 50}", status=f"s{i}"),
                webhook_id=f"wh-o{i:05d}",
            )
        )
        deliveries.append(
            delivery(
                "customer.updated",
                sample("customer.updated", id=f"cust_{i % 30}"),
                webhook_id=f"wh-c{i:05d}",
            )
        )
    live.log(deliveries)
    live.project()


def test_interrupted_rebuild_leaves_old_tables_and_can_run_again(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rebuild_module, "BATCH", 50)
    _fill(live, 300)
    live.conn.execute("UPDATE orders SET status = 'old tables' WHERE id = 'order_1'")
    before = live.dump()
    with monkeypatch.context() as patch:
        patch.setattr(projections.orders, "apply", _raising_after(projections.orders.apply, 120))
        with pytest.raises(Interrupted):
            rebuild(live.settings, projections.discover(), io.StringIO())
    assert live.dump() == before
    assert not list(live.settings.data_dir.glob("rebuild-scratch*"))
    # The old tables are still live: new events are applied to them.
    live.log(
        [delivery("order.updated", sample("order.updated", id="order_2"), webhook_id="wh-late")]
    )
    assert live.project() == 1
    monkeypatch.undo()
    rebuild(live.settings, projections.discover(), io.StringIO())
    assert check(live.settings, projections.discover(), io.StringIO()) == 0
    assert live.conn.execute("SELECT status FROM orders WHERE id = 'order_1'").fetchone() != (
        "old tables",
    )


KILLED_REBUILD = """
import os, signal, sys
from pathlib import Path
import projections
import projections.orders
from app.projection import rebuild
from app.settings import Settings

original = projections.orders.apply
seen = 0
def apply(event):
    global seen
    seen += 1
    if seen > 120:
        # The orders are folded in a worker process: kill the whole rebuild, parent too.
        os.killpg(os.getpgrp(), signal.SIGKILL)
    return original(event)
projections.orders.apply = apply
rebuild.BATCH = 50
rebuild.rebuild(Settings(data_dir=Path(sys.argv[1])), projections.discover())
"""


def test_killed_rebuild_leaves_old_tables_and_can_run_again(live: Live) -> None:
    _fill(live, 300)
    before = live.dump()
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_REBUILD), str(live.settings.data_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        check=False,
        timeout=60,
        start_new_session=True,
    )
    assert killed.returncode == -9, killed.stderr.decode()
    assert live.dump() == before
    # Usable: the live projector carries on, and a new rebuild succeeds.
    live.log(
        [delivery("order.updated", sample("order.updated", id="order_2"), webhook_id="wh-late")]
    )
    assert live.project() == 1
    expected = live.dump()
    done = subprocess.run(
        [sys.executable, "-m", "app", "rebuild", "--data-dir", str(live.settings.data_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"orders: 301 events read" in done.stdout
    assert live.dump() == expected
    assert check(live.settings, projections.discover(), io.StringIO()) == 0


def test_rebuild_while_the_live_projector_holds_its_connection(live: Live) -> None:
    """The switch drops and recreates tables under an open connection's cached schema."""
    _fill(live, 20)
    rebuild(live.settings, projections.discover(), io.StringIO())
    live.send("order.updated", sample("order.updated", id="order_3", status="after"))
    row = live.conn.execute("SELECT status FROM orders WHERE id = 'order_3'").fetchone()
    assert row is not None
    assert check(live.settings, projections.discover(), io.StringIO()) == 0
    # Only one projection's tables in another database are touched by a rebuild of it.
    other = sqlite3.connect(live.settings.projections_path)
    try:
        names = {r[0] for r in other.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        other.close()
    expected: set[str] = set()
    for projection in projections.discover():
        expected.update(projection.TABLE.table_names)
    assert expected <= names


def test_check_reports_a_live_table_with_other_columns(live: Live) -> None:
    """`check` counts a live table whose columns differ as a difference, not a crash."""
    live.conn.execute("ALTER TABLE customers ADD COLUMN extra TEXT")
    out = io.StringIO()
    assert check(live.settings, projections.discover(), out) >= 1
    assert "customers: cannot compare" in out.getvalue()


# ---- `rebuild` while `serve` takes deliveries from several threads, both as real
# processes.


THREADS = 4
PER_THREAD = 150
# Each sender's webhook ids start this far apart, so however long it sends, none repeats.
THREAD_STRIDE = 1_000_000
PRELOAD = 400


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path / "data")
    try:
        yield server
    finally:
        server.stop()


def _delivery(n: int) -> tuple[bytes, dict[str, str]]:
    """The n-th delivery: a mix of every event type about a few hundred entities."""
    kinds = [
        ("customer.created", {"id": f"cust_{n % 40}", "email": f"c{n}@example.com"}),
        ("customer.updated", {"id": f"cust_{n % 40}", "email": f"u{n}@example.com"}),
        ("order.created", {"id": f"order_{n % 60}", "status": f"s{n}"}),
        ("order.updated", {"id": f"order_{n % 60}", "status": f"u{n}"}),
        ("product.created", {"id": f"prod_{n % 20}", "name": f"p{n}"}),
        ("product.updated", {"id": f"prod_{n % 20}", "name": f"q{n}"}),
        ("message.received", {"messageId": f"msg_in_{n}"}),
        ("message.status.updated", {"messageId": f"msg_{n % 50}", "status": "delivered"}),
        ("customer.deleted", {"id": f"cust_{n % 97}"}),
        ("product.deleted", {"id": f"prod_{n % 89}"}),
    ]
    event_type, changes = kinds[n % len(kinds)]
    payload = sample(event_type, **changes)
    if "updatedAt" in payload:
        payload["updatedAt"] = f"2024-02-{1 + n % 28:02d}T{n % 24:02d}:00:00.000Z"
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-BitByBit-Webhook-Id": f"wh_e2e_{n:06d}",
        "X-BitByBit-Webhook-Event": event_type,
        "X-BitByBit-Webhook-Timestamp": str(1_706_000_000 + (n * 7919) % 100_000),
        "X-BitByBit-Webhook-Signature": sign(SECRET, int(time.time()), body),
    }
    return body, headers


def _app(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=app_env(),
        capture_output=True,
        check=False,
        timeout=60,
    )


def test_rebuild_while_serving_loses_nothing(serve: ServeProcess, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    statuses: list[int] = []
    lock = threading.Lock()
    rebuilt_event = threading.Event()

    def send(n: int) -> None:
        body, headers = _delivery(n)
        status, _ = serve.request("POST", "/webhooks", body, headers)
        with lock:
            statuses.append(status)

    def send_until_rebuilt(first: int) -> None:
        """At least PER_THREAD deliveries, and on until the rebuild is over."""
        n = first
        while n < first + PER_THREAD or not rebuilt_event.is_set():
            send(n)
            n += 1

    for n in range(PRELOAD):
        send(n)
    threads = [
        threading.Thread(target=send_until_rebuilt, args=(PRELOAD + t * THREAD_STRIDE,))
        for t in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    with lock:
        sent_before = len(statuses)
    rebuilt = _app("rebuild", "--data-dir", str(data_dir))
    with lock:
        sent_during = len(statuses) - sent_before
    rebuilt_event.set()
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS)
    assert rebuilt.returncode == 0, rebuilt.stderr.decode()
    assert b"events read" in rebuilt.stdout
    assert sent_during > 0, "the rebuild did not overlap the deliveries"
    assert len(statuses) >= PRELOAD + THREADS * PER_THREAD
    assert set(statuses) == {200}

    wait_until(serve.caught_up, "every projection at lag 0")
    checked = _app("rebuild", "--check", "--data-dir", str(data_dir))
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    status = json.loads(_app("status", "--json", "--data-dir", str(data_dir)).stdout)
    assert status["log"]["events"] == len(statuses)
    assert all(not p["stale"] and p["lag"] == 0 for p in status["projections"])


# --- a rebuild killed from outside ----------------------------------------------------------

_KILLABLE_ORDERS = 12_000
_base_logs: dict[str, Path] = {}


def _killable_log(factory: pytest.TempPathFactory) -> Path:
    """A data directory whose rebuild takes a second or so, made once and copied per example."""
    if "base" not in _base_logs:
        harness = Live(factory.mktemp("killable") / "data")
        try:
            harness.log(
                [
                    delivery(
                        "order.created",
                        sample("order.created", id=f"order_{i}", customer={"id": f"cust_{i % 9}"}),
                        webhook_id=f"wh-o{i:06d}",
                    )
                    for i in range(_KILLABLE_ORDERS)
                ]
            )
            harness.send("customer.created", sample("customer.created", id="cust_1"))
        finally:
            harness.close()
        _base_logs["base"] = harness.settings.data_dir
    copy = factory.mktemp("killed") / "data"
    shutil.copytree(_base_logs["base"], copy)
    copy.chmod(0o700)
    return copy


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        check=False,
        timeout=120,
    )


@hypothesis_settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delay=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0)))
def test_a_rebuild_killed_at_any_moment_leaves_no_process_and_no_lock(
    tmp_path_factory: pytest.TempPathFactory, delay: float | None
) -> None:
    """SIGKILL of the rebuild alone (not its group): its workers go too, the lock is free.

    Killed at once (`delay` None), or `delay` seconds after its workers were forked.
    """
    data_dir = _killable_log(tmp_path_factory)
    rebuilding = subprocess.Popen(
        [sys.executable, "-m", "app", "rebuild", "--data-dir", str(data_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if delay is not None:
            wait_until(lambda: len(processes_mentioning(str(data_dir))) > 1, "the workers")
            time.sleep(delay)  # the moment of the kill, which hypothesis varies: not a wait
        rebuilding.kill()
        rebuilding.wait(timeout=10)
        wait_until(
            lambda: not processes_mentioning(str(data_dir)), "the killed rebuild's workers to go"
        )
        again = _cli("rebuild", "--data-dir", str(data_dir))
        assert again.returncode == 0, again.stderr.decode()
        assert b"orders: " in again.stdout
        assert not list(data_dir.glob("rebuild-scratch*"))
        forgot = _cli("forget", "--customer", "cust_1", "--yes", "--data-dir", str(data_dir))
        assert forgot.returncode == 0, forgot.stderr.decode()
        assert not processes_mentioning(str(data_dir))
    finally:
        # Whatever failed above, nothing of this example outlives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(rebuilding.pid, signal.SIGKILL)
        for pid in processes_mentioning(str(data_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_killed_rebuilds_scratch_files_are_removed_by_the_next_rebuild(live: Live) -> None:
    """Scratch files hold personal data: whatever a killed rebuild left, the next removes."""
    live.send("customer.created", sample("customer.created"))
    leftovers = [live.settings.scratch_path(suffix) for suffix in ("-customers", "-gone", "")]
    for leftover in leftovers:
        leftover.write_bytes(b"john@example.com")
    rebuild(live.settings, select(projections.discover(), ["orders"]), io.StringIO())
    assert not list(live.settings.data_dir.glob("rebuild-scratch*"))


def test_a_record_lock_is_not_held_by_a_forked_child(live: Live) -> None:
    """A child forked while the rebuild lock is held (a worker) does not hold it after."""
    with exclusive(live.settings):
        child = os.fork()
        if child == 0:  # pragma: no cover - the child only waits to be killed
            signal.pause()
            os._exit(0)
    try:
        with exclusive(live.settings):
            pass  # taken while the child still has every descriptor of the parent
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
