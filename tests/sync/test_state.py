"""A killed pass resumes where it stopped; two syncs at once: the second refuses."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import TYPE_CHECKING

from app.cli import main
from app.settings import Settings
from app.sync.state import exclusive
from tests._helpers import ROOT, app_env, expected, log_count, projected
from tests.fake_api import KEY, customer, order

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

    from tests.fake_api import Account, Faults

DEADLINE_SECONDS = 60


async def _sync_process(settings: Settings, *flags: str) -> asyncio.subprocess.Process:
    env = {**app_env(), "BITBYBIT_API_KEY": KEY, "BITBYBIT_API_URL": settings.api_url}
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "app", "sync", "--data-dir", str(settings.data_dir), *flags),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def test_killed_pass_resumes_and_equals_an_uninterrupted_one(
    sync_settings: Settings, account: Account, faults: Faults
) -> None:
    """SIGKILL while orders page 4 is asked for; the rerun goes on from there."""
    for n in range(450):
        account.customers[f"cust_{n:06d}"] = customer(n)
    for n in range(900):
        account.orders[f"order_{n:06d}"] = order(n)
    running: list[asyncio.subprocess.Process] = []

    def kill_at_orders_page_4(resource: str, page: int) -> None:
        if (resource, page) == ("orders", 4) and running:
            running.pop().send_signal(signal.SIGKILL)

    account.on_page = kill_at_orders_page_4
    first = await _sync_process(sync_settings)
    running.append(first)
    assert await asyncio.wait_for(first.wait(), DEADLINE_SECONDS) == -signal.SIGKILL
    account.on_page = None
    asked_before = len(faults.paths)

    second = await _sync_process(sync_settings, "--json")
    out, _ = await asyncio.wait_for(second.communicate(), DEADLINE_SECONDS)
    assert second.returncode == 0, out
    report = json.loads(out)
    assert report["resumed"] is True
    asked = faults.paths[asked_before:]
    # Customers were done: the rerun starts at the orders page it had not committed.
    assert not any(p.startswith("/customer/open/v1/customers") for p in asked)
    assert asked[0].startswith("/customer/open/v1/orders?page=")
    assert asked[0] != "/customer/open/v1/orders?page=1&limit=100"
    assert report["entities"]["orders"]["new"] + report["entities"]["orders"]["unchanged"] >= 1

    want = expected(account, set())
    assert projected(sync_settings.data_dir, list(want)) == want
    assert log_count(sync_settings.data_dir) == 450 + 900


def test_a_second_sync_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """While one sync holds the data directory, another exits 2 saying so."""
    environ = {"BITBYBIT_API_KEY": KEY, "BITBYBIT_API_URL": "http://127.0.0.1:9/v1"}
    with exclusive(Settings(data_dir=tmp_path)):
        code = main(["sync", "--data-dir", str(tmp_path)], environ)
    assert code == 2
    assert "another sync is running" in capsys.readouterr().err


def test_sync_without_a_key_says_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No key: exit 2, naming BITBYBIT_API_KEY."""
    assert main(["sync", "--data-dir", str(tmp_path)], {}) == 2
    assert "BITBYBIT_API_KEY" in capsys.readouterr().err
