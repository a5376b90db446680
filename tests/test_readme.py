"""The README's example queries run against a populated database and answer correctly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app.projection import projector
from tests._populated import populate

if TYPE_CHECKING:
    import sqlite3

README = Path(__file__).resolve().parent.parent / "README.md"


def _queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


@pytest.fixture
def database(tmp_path: Path) -> sqlite3.Connection:
    populate(tmp_path)
    return projector.connect(tmp_path / "projections.db")


def test_readme_has_the_promised_queries() -> None:
    """The README shows the five example queries."""
    assert len(_queries()) == 5


def test_orders_per_status(database: sqlite3.Connection) -> None:
    """Orders are counted per status, most frequent first."""
    rows = database.execute(_queries()[0]).fetchall()
    assert rows[0] == ("active", 2)
    assert sorted(rows) == [("active", 2), ("cancelled", 1), ("completed", 1)]


def test_revenue_per_customer(database: sqlite3.Connection) -> None:
    """Revenue adds up each customer's orders that were not cancelled."""
    rows = database.execute(_queries()[1]).fetchall()
    assert [(r[0], r[3]) for r in rows] == [("cust_abc123", 150), ("cust_b", 30)]


def test_message_funnel(database: sqlite3.Connection) -> None:
    """Outbound messages are counted per status; inbound ones are left out."""
    rows = database.execute(_queries()[2]).fetchall()
    assert rows == [("read", 2), ("sent", 1)]


def test_vip_customers(database: sqlite3.Connection) -> None:
    """Only customers tagged vip that are not deleted are listed."""
    rows = database.execute(_queries()[3]).fetchall()
    assert rows == [("cust_abc123", "a@x.id", None, None)]


def test_line_items_of_a_customer(database: sqlite3.Connection) -> None:
    """One customer's line items come with their order numbers, in order."""
    rows = database.execute(_queries()[4]).fetchall()
    assert rows == [("0001", "Shirt", 1, 100), ("0002", "Shirt", 1, 50)]
