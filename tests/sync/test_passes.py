"""Sync passes: what one pass brings in, and what it deletes.

A first pass fills an empty mirror with the account, column by column; a second adds
nothing. Deletions: only a 404 NOT_FOUND of the entity's own GET after a complete walk.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from app.sync import runner
from app.sync.passes import KINDS
from tests._helpers import VirtualTime, expected, log_count, log_rows, projected
from tests.fake_api import Account, Faults, customer, order, product

if TYPE_CHECKING:
    from app.settings import Settings
    from app.sync.state import Report
    from tests.fake_api import Account, Faults


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


# ---- Deletions: only a 404 NOT_FOUND of the entity's own GET after a complete walk.


async def _sync(settings: Settings) -> Report:
    return await runner.run_pass(
        settings, ALL, stream=io.StringIO(), policy=VirtualTime().policy(attempts=3)
    )


def _deleted(settings: Settings, table: str) -> dict[str, bool]:
    rows = projected(settings.data_dir, [table])[table]
    return {row[0]: row[-1] for row in rows}


async def test_removed_customer_is_deleted_but_one_hidden_by_503_is_not(
    sync_settings: Settings, account: Account, faults: Faults
) -> None:
    """Two customers leave the list; the one whose GET says 404 is gone, the 503 one stays."""
    for n in range(5):
        account.customers[f"cust_{n:06d}"] = customer(n)
    account.orders["order_000001"] = order(1)
    assert (await _sync(sync_settings)).ok
    del account.customers["cust_000001"]
    hidden = account.customers.pop("cust_000002")
    faults.entity_status["cust_000002"] = 503

    report = await _sync(sync_settings)
    assert report.entities["customers"].gone == 1
    assert report.entities["customers"].problems == 1
    assert not report.ok
    deleted = _deleted(sync_settings, "customers")
    assert deleted["cust_000001"] is True
    assert deleted["cust_000002"] is False
    gone_at = log_rows(
        sync_settings.data_dir, "SELECT signature FROM events WHERE event_type = 'customer.gone'"
    )
    assert gone_at == [("",)]

    # Back in the list: a snapshot, and deletion stays final for the other.
    account.customers["cust_000002"] = hidden
    faults.entity_status.clear()
    assert (await _sync(sync_settings)).ok
    assert _deleted(sync_settings, "customers")["cust_000001"] is True


async def test_products_without_a_list_are_fetched_by_known_id(
    sync_settings: Settings, account: Account
) -> None:
    """No GET /products: every product id the log knows is read; a 404 one is gone."""
    from tests._helpers import Harness, sample  # noqa: PLC0415

    harness = Harness(sync_settings.data_dir)
    for n in range(3):
        harness.log("product.created", {**sample("product.created"), "id": f"prod_{n:06d}"})
    harness.close()
    account.products["prod_000000"] = product(0, name="Renamed")
    account.products["prod_000001"] = product(1)

    report = await _sync(sync_settings)
    products = report.entities["products"]
    assert "no product list" in products.notes[0]
    assert (products.read, products.gone, products.changed) == (2, 1, 2)
    rows = projected(sync_settings.data_dir, ["products"])["products"]
    assert [(r[0], r[2], r[-1]) for r in rows] == [
        ("prod_000000", "Renamed", False),
        ("prod_000001", "Product 1", False),
        ("prod_000002", "Premium T-Shirt", True),
    ]


async def test_404_for_everything_deletes_nothing(
    sync_settings: Settings, account: Account
) -> None:
    """Known products, none found anywhere (a wrong URL could do that): no deletion."""
    from tests._helpers import Harness, sample  # noqa: PLC0415

    harness = Harness(sync_settings.data_dir)
    harness.log("product.created", {**sample("product.created"), "id": "prod_000009"})
    harness.close()
    account.customers["cust_000001"] = customer(1)
    report = await _sync(sync_settings)
    assert report.entities["products"].gone == 0
    assert report.entities["products"].problems == 1
    assert _deleted(sync_settings, "products") == {"prod_000009": False}
