"""Deletions: only a 404 NOT_FOUND of the entity's own GET after a complete walk."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from app.sync import runner
from app.sync.passes import KINDS
from tests._helpers import VirtualTime, log_rows, projected
from tests.fake_api import customer, order, product

if TYPE_CHECKING:
    from app.settings import Settings
    from app.sync.state import Report
    from tests.fake_api import Account, Faults

ALL = list(KINDS.values())


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
