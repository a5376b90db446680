"""What the projection tables should hold for a fake account, and what they do hold."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import projections
from app.eventlog.reads import LogReader
from app.projection.projector import Projector, connect
from projections import customers, orders, products

if TYPE_CHECKING:
    from pathlib import Path

    from tests.sync.fake_api import Account, Entity

Rows = dict[str, list[tuple[Any, ...]]]
_NESTED = {"customer_": "customer", "shipping_": "shippingAddress"}


def camel(name: str) -> str:
    """`phone_number` -> `phoneNumber`, the API's spelling of a column."""
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _cell(value: Any) -> Any:
    # Lists are JSON text; snapshot bodies are kept with sorted keys.
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return value


def _column(entity: Entity, name: str) -> Any:
    for prefix, field in _NESTED.items():
        if name.startswith(prefix) and field in entity:
            nested = entity[field]
            return None if nested is None else nested.get(camel(name[len(prefix) :]))
    return _cell(entity.get(camel(name)))


def _rows(module: Any, entities: dict[str, Entity], deleted: set[str] | None = None) -> Rows:
    table = module.TABLE
    rows = []
    child_rows: dict[str, list[tuple[Any, ...]]] = {c.name: [] for c in table.children}
    for key, entity in sorted(entities.items()):
        values = [
            (key in (deleted or set())) if name == "deleted_at" else _column(entity, name)
            for name, _ in table.columns
        ]
        rows.append((key, *values))
        for child in table.children:
            items = entity.get(camel(child.register)) or []
            for position, item in enumerate(items):
                cells = [_cell(item.get(camel(name))) for name, _ in child.columns]
                child_rows[child.name].append((key, position, *cells))
    return {table.name: rows, **{name: sorted(r) for name, r in child_rows.items()}}


def expected(account: Account, deleted: set[str] | None = None) -> Rows:
    """Every user-facing table as the account's state says; `deleted_at` as True/False."""
    return {
        **_rows(customers, account.customers, deleted),
        **_rows(orders, account.orders),
        **_rows(products, account.products, deleted),
    }


def projected(data_dir: Path, names: list[str], projections_path: Path | None = None) -> Rows:
    """The tables after projecting the log; `deleted_at` as True/False.

    Into `projections_path`, by default the data directory's, where earlier calls left off.
    """
    store = LogReader.open(data_dir / "events.db")
    conn = connect(projections_path or data_dir / "projections.db")
    try:
        projector = Projector(conn, store, projections.discover())
        projector.install_all()
        projector.catch_up()
        result: Rows = {}
        for name in names:
            rows = conn.execute(f"SELECT * FROM {name} ORDER BY 1, 2").fetchall()
            columns = [d[0] for d in conn.execute(f"SELECT * FROM {name} LIMIT 0").description]
            if "deleted_at" in columns:
                at = columns.index("deleted_at")
                rows = [(*r[:at], r[at] is not None, *r[at + 1 :]) for r in rows]
            result[name] = rows
        return result
    finally:
        conn.close()
        store.close()


def log_count(data_dir: Path) -> int:
    """How many rows the log holds."""
    store = LogReader.open(data_dir / "events.db")
    try:
        return store.count()
    finally:
        store.close()
