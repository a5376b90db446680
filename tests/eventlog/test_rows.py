"""The row shapes: one Struct names the log's columns, and a delivery writes them in order."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from app.eventlog.rows import ROW_COLUMNS, Delivery, StoredEvent
from app.eventlog.schema import open_log

if TYPE_CHECKING:
    from pathlib import Path


def test_a_delivery_writes_the_row_columns_in_order() -> None:
    """`Delivery.row()` gives exactly the values of ROW_COLUMNS, in that order."""
    assert Delivery.__struct_fields__[: len(ROW_COLUMNS)] == ROW_COLUMNS
    delivery = Delivery("w", "t", 1, 2, "r", "s", b"p", ("d",))
    assert delivery.row() == ("w", "t", 1, 2, "r", "s", b"p")


def test_the_struct_names_the_table_columns(tmp_path: Path) -> None:
    """The events table has exactly StoredEvent's columns, in order."""
    open_log(tmp_path / "events.db").close()
    with sqlite3.connect(tmp_path / "events.db") as conn:
        columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(events)"))
    assert columns == StoredEvent.__struct_fields__
