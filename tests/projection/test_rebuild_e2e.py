"""`rebuild` while `serve` takes deliveries from several threads, both as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from app.webhooks.signature import sign
from tests._helpers import DEADLINE_SECONDS, ROOT, SECRET, ServeProcess, app_env, sample, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

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
