"""`sync --check`: which base URL and header answered, each endpoint's status; no writes."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from app.sync import check, runner
from tests._helpers import VirtualTime

if TYPE_CHECKING:
    from app.settings import Settings
    from tests.fake_api import Faults


async def test_check_reports_each_endpoint_and_writes_nothing(sync_settings: Settings) -> None:
    """Customers and orders 200, products 404 (no list): ok, the configured pair works."""
    report = await runner.run_check(sync_settings, VirtualTime().policy(attempts=1))
    answered = {p.endpoint: p.answer.status for p in report.probes}
    assert answered == {"try": 200, "customers": 200, "orders": 200, "products": 404}
    assert report.ok
    assert report.working == (sync_settings.api_url, "x-api-key")
    text = check.render(report, sync_settings)
    assert "no product list" in text
    assert "message statuses cannot be read" in text
    assert not sync_settings.data_dir.exists()


async def test_check_finds_the_documented_other_header(
    sync_settings: Settings, faults: Faults
) -> None:
    """The API wants x-bitbybit-key: the check finds it and says what to set."""
    faults.header = "x-bitbybit-key"
    report = await runner.run_check(sync_settings, VirtualTime().policy(attempts=1))
    assert report.working == (sync_settings.api_url, "x-bitbybit-key")
    assert "BITBYBIT_API_KEY_HEADER=x-bitbybit-key" in check.render(report, sync_settings)


async def test_check_with_a_wrong_key_fails(sync_settings: Settings) -> None:
    """Every pair refused: not ok, nothing working, each refusal listed."""
    wrong = dataclasses.replace(sync_settings, api_key="bbb_live_wrong")
    report = await runner.run_check(wrong, VirtualTime().policy(attempts=1))
    assert not report.ok
    assert report.working is None
    assert all(p.answer.status in {0, 401, 404} for p in report.probes)
    assert "bbb_live_wrong" not in check.render(report, wrong)
