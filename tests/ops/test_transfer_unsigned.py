"""Export and import carry the unsigned rows `sync` writes; `--verify` calls them unsigned."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from app.eventlog.store import EventStore
from app.ops import transfer
from app.sync.passes import CUSTOMERS, snapshot
from tests._helpers import SECRET, delivery, event_rows, signed_headers

if TYPE_CHECKING:
    from pathlib import Path


def test_unsigned_snapshots_survive_export_and_verified_import(tmp_path: Path) -> None:
    """A snapshot and a signed delivery: both imported; the snapshot counted as unsigned."""
    source = tmp_path / "a" / "events.db"
    store = EventStore.open(source)
    body = b'{"id": "order_1", "status": "active"}'
    signature = signed_headers(body, signed_at=1705314600)["X-BitByBit-Webhook-Signature"]
    signed = msgspec.structs.replace(
        delivery("order.created", body, webhook_id="wh_1", timestamp=1705314600),
        signature=signature,
    )
    _, snap = snapshot(CUSTOMERS, b'{"id": "cust_1", "email": "a@example.com"}', 1705400000.5)
    store.append([signed, snap])
    store.close()
    exported = tmp_path / "log.jsonl"
    assert transfer.export_to(source, str(exported)) == 2

    target = tmp_path / "b"
    target.mkdir()
    report = transfer.import_file(target / "events.db", exported, secrets=[SECRET])
    assert (report.added, report.unsigned, report.refused) == (2, 1, [])
    rows = event_rows(target)
    assert [(r[1], r[2]) for r in rows] == [
        ("wh_1", "order.created"),
        (snap.webhook_id, "customer.snapshot"),
    ]
    again = transfer.import_file(target / "events.db", exported, secrets=[SECRET])
    assert (again.added, again.present) == (0, 2)
