"""`serve --sync-every`: passes run in the background while deliveries keep arriving."""

from __future__ import annotations

import http.client
import json
import sqlite3
from typing import TYPE_CHECKING

from app.ops.status import collect
from app.settings import Settings
from tests._helpers import (
    DEADLINE_SECONDS,
    SECRET,
    ServeProcess,
    metric_sample,
    signed_headers,
    wait_until,
)
from tests.fake_api import KEY, Account, Faults, ServedFake, customer, order

if TYPE_CHECKING:
    from pathlib import Path


def _passes(data_dir: Path) -> int:
    path = data_dir / "sync.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM runs WHERE ok = 1").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def test_scheduled_passes_run_while_deliveries_arrive(tmp_path: Path) -> None:
    """A pass every second; forty deliveries meanwhile all 200; status and /metrics show it."""
    account = Account()
    for n in range(300):
        account.customers[f"cust_{n:06d}"] = customer(n)
        account.orders[f"order_{n:06d}"] = order(n)
    data_dir = tmp_path / "data"
    with ServedFake(account, Faults()) as url:
        env = {"BITBYBIT_API_KEY": KEY, "BITBYBIT_API_URL": url, "BITBYBIT_SYNC_EVERY": "1s"}
        serve = ServeProcess(data_dir, env)
        try:
            answers = []
            for n in range(40):
                body = json.dumps(order(n)).encode()
                answers.append(serve.request("POST", "/webhooks", body, signed_headers(body))[0])
            wait_until(lambda: _passes(data_dir) >= 2, "two scheduled sync passes")
            conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=DEADLINE_SECONDS)
            conn.request("GET", "/metrics")
            metrics = conn.getresponse().read().decode()
            conn.close()
        finally:
            serve.stop()
    assert answers == [200] * 40
    status = collect(Settings(secrets=(SECRET,), data_dir=data_dir))
    assert status["sync"]["ok"] is True  # type: ignore[index]
    assert status["sync"]["finished_at"]  # type: ignore[index]
    assert status["log"]["last_delivery_at"]  # type: ignore[index]
    assert metric_sample(metrics, "bitbybit_sync_last_ok") == 1.0
    assert metric_sample(metrics, 'bitbybit_sync_entities{entity="orders",outcome="read"}') == 300
    assert metric_sample(metrics, "bitbybit_last_delivery_timestamp_seconds") > 0
