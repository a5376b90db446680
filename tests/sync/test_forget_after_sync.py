"""Forget covers what sync brought in: snapshots, and a later pass about the same person."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from app import cli
from app.ops.forget import sweep_once
from app.sync import runner
from app.sync.passes import KINDS
from projections import discover
from tests._helpers import log_count
from tests.fake_api import Account, customer, order

if TYPE_CHECKING:
    from pathlib import Path

    from app.settings import Settings

FORGOTTEN = 3
# Distinct to the forgotten customer: no other customer's value contains them.
PERSONAL = (b"person3@example.com", b"+628120000003", b'Jl. Sudirman 3"', b'First3"')


def _all_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


def _cli(settings: Settings, *argv: str) -> int:
    return cli.main([*argv, "--data-dir", str(settings.data_dir)], environ={})


async def test_snapshots_are_forgotten_and_stay_forgotten_after_the_next_pass(
    sync_settings: Settings, account: Account
) -> None:
    """No byte of the person is left after forget, nor after a later pass and the sweep."""
    for n in range(12):
        account.customers[f"cust_{n:06d}"] = customer(n)
        account.orders[f"order_{n:06d}"] = order(n)
    kinds = [KINDS["customers"], KINDS["orders"]]
    assert (await runner.run_pass(sync_settings, kinds, stream=io.StringIO())).ok
    assert _cli(sync_settings, "rebuild") == 0
    everything = _all_bytes(sync_settings.data_dir)
    assert all(value in everything for value in PERSONAL)

    assert _cli(sync_settings, "forget", "--customer", f"cust_{FORGOTTEN:06d}", "--yes") == 0
    after = _all_bytes(sync_settings.data_dir)
    assert [v for v in PERSONAL if v in after] == []
    assert b"person4@example.com" in after  # the others are untouched

    # The account still holds the person: the next pass reads them again.
    rows = log_count(sync_settings.data_dir)
    report = await runner.run_pass(sync_settings, kinds, stream=io.StringIO())
    assert report.ok, [(k, v.problems_seen) for k, v in report.entities.items()]
    sweep_once(sync_settings, discover())
    again = _all_bytes(sync_settings.data_dir)
    assert [v for v in PERSONAL if v in again] == []
    assert log_count(sync_settings.data_dir) >= rows
