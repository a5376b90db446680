"""One pass fills an empty mirror with the account, column by column; a second adds nothing."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from app.sync import runner
from app.sync.passes import KINDS
from tests._helpers import expected, log_count, projected
from tests.fake_api import Account, Faults, customer, order, product

if TYPE_CHECKING:
    from app.settings import Settings

ALL = list(KINDS.values())


def _fill(account: Account, customers: int, orders: int) -> None:
    for n in range(customers):
        account.customers[f"cust_{n:06d}"] = customer(n, updated=1705314600 + n)
    for n in range(orders):
        account.orders[f"order_{n:06d}"] = order(n)


async def test_first_pass_makes_the_tables_equal_the_account(
    sync_settings: Settings, account: Account, faults: Faults
) -> None:
    """A few thousand entities; orders' notes and customers' address2 filled; no new rows after."""
    _fill(account, 1500, 1500)
    faults.products_list = True
    for n in range(30):
        account.products[f"prod_{n:06d}"] = product(n)
    report = await runner.run_pass(sync_settings, ALL, stream=io.StringIO())
    assert report.ok, report
    assert report.entities["customers"].new == 1500
    assert report.entities["orders"].read == 1500
    want = expected(account, set())
    got = projected(sync_settings.data_dir, list(want))
    for table in want:
        assert got[table] == want[table], table
    rows = log_count(sync_settings.data_dir)
    assert rows == 3030

    again = await runner.run_pass(sync_settings, ALL, stream=io.StringIO())
    assert again.ok
    assert log_count(sync_settings.data_dir) == rows
    assert again.entities["customers"].unchanged == 1500
    assert again.entities["orders"].unchanged == 1500
    assert again.entities["customers"].new == again.entities["customers"].changed == 0
