"""`forget` while `serve` takes deliveries, both as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from app.webhooks.signature import sign
from tests._helpers import (
    ALICE,
    BOB,
    DEADLINE_SECONDS,
    FORGOTTEN,
    ROOT,
    SECRET,
    ServeProcess,
    app_env,
    forms,
    log_rows,
    populate_people,
    wait_until,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

THREADS = 3
PER_THREAD = 60


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    populate_people(tmp_path / "data")
    server = ServeProcess(tmp_path / "data")
    try:
        yield server
    finally:
        server.stop()


def _send(server: ServeProcess, n: int) -> tuple[int, float]:
    body = json.dumps({"id": f"order_x{n}", "status": "active", "total": n}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-BitByBit-Webhook-Id": f"wh_forget_e2e_{n:05d}",
        "X-BitByBit-Webhook-Event": "order.created",
        "X-BitByBit-Webhook-Timestamp": "1706000000",
        "X-BitByBit-Webhook-Signature": sign(SECRET, int(time.time()), body),
    }
    started = time.monotonic()
    status, _ = server.request("POST", "/webhooks", body, headers)
    return status, time.monotonic() - started


def test_forget_while_serving_fails_no_delivery_and_leaves_no_byte(
    serve: ServeProcess, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    answers: list[tuple[int, float]] = []
    lock = threading.Lock()

    def sender(first: int) -> None:
        for n in range(first, first + PER_THREAD):
            answer = _send(serve, n)
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=sender, args=(t * PER_THREAD,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(answers) >= 10, "the first deliveries")
    done = subprocess.run(
        [sys.executable, "-m", "app", "forget", "--customer", FORGOTTEN, "--yes",
         "--data-dir", str(data_dir)],
        cwd=ROOT, env=app_env(), capture_output=True, check=False, timeout=DEADLINE_SECONDS,
    )  # fmt: skip
    for thread in threads:
        thread.join(DEADLINE_SECONDS)

    assert done.returncode == 0, done.stderr.decode()
    assert [status for status, _ in answers] == [200] * THREADS * PER_THREAD
    logged = log_rows(data_dir, "SELECT COUNT(*) FROM events WHERE webhook_id LIKE 'wh_forget%'")
    assert logged == [(THREADS * PER_THREAD,)]
    wait_until(serve.caught_up, "the live projector to catch up")
    everything = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
    assert [v for v in (ALICE["email"], ALICE["street"], ALICE["message_in"]) if
            any(form in everything for form in forms(v))] == []  # fmt: skip
    assert BOB["email"].encode() in everything
