"""The README's example queries run against a populated database and answer correctly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app.projection import projector
from tests import _account
from tests._populated import append_and_project

if TYPE_CHECKING:
    import sqlite3

README = Path(__file__).resolve().parent.parent / "README.md"


def _queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


@pytest.fixture
def database(tmp_path: Path) -> sqlite3.Connection:
    append_and_project(tmp_path, _account.deliveries())
    return projector.connect(tmp_path / "projections.db")


def test_readme_has_the_promised_queries() -> None:
    """The README shows the five example queries."""
    assert len(_queries()) == 5


def test_sales_per_day(database: sqlite3.Connection) -> None:
    """Each UTC day and currency, newest first, as the account's hand-computed rows."""
    rows = database.execute(_queries()[0]).fetchall()
    assert len(rows) == len(_account.SALES_BY_DAY)
    assert rows[0] == ("2024-03-05", "IDR", 0, 0, 0)


def test_revenue_per_customer(database: sqlite3.Connection) -> None:
    """Paid revenue per customer and currency, largest first within a currency."""
    rows = database.execute(_queries()[1]).fetchall()
    assert [(r[0], r[4], r[6]) for r in rows] == [
        ("cust_citra", None, 35000),
        ("cust_ana", "IDR", 201000),
        ("cust_ghost", "IDR", 12000),
        ("cust_budi", "USD", 19.99),
    ]


def test_whatsapp_funnel(database: sqlite3.Connection) -> None:
    """One row per template, with every stage its messages reached."""
    rows = database.execute(_queries()[2]).fetchall()
    assert sorted(rows, key=lambda r: str(r[0])) == sorted(
        _account.MESSAGE_FUNNEL, key=lambda r: str(r[0])
    )


def test_orders_per_status(database: sqlite3.Connection) -> None:
    """Orders are counted per status, most frequent first."""
    rows = database.execute(_queries()[3]).fetchall()
    assert rows[0] == ("active", 7)
    assert sorted(rows, key=str) == sorted(_account.ORDERS_BY_STATUS, key=str)


def test_vip_customers(database: sqlite3.Connection) -> None:
    """Only customers tagged vip that are not deleted are listed."""
    rows = database.execute(_queries()[4]).fetchall()
    assert rows == [("cust_ana", "ana@example.id", "Ana", "Putri")]
