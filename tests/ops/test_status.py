"""`status`: what it reports of the log and the projections, reading only."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from app import cli
from app.eventlog.rows import Delivery
from app.eventlog.store import EventStore
from tests._helpers import append_and_project

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("projections_db", ["missing", "empty file"])
def test_status_counts_events_no_projection_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], projections_db: str
) -> None:
    """An authentic event of an unknown type is kept and counted by `status --json`.

    Before `serve` has made projections.db, `status` reports them unfilled, making nothing.
    """
    store = EventStore.open(tmp_path / "events.db")
    store.append(
        [
            Delivery("wh_1", "invoice.created", None, 1, "x", "t=1,v1=x", b"{}", ()),
            Delivery("wh_2", "customer.deleted", None, 1, "x", "t=1,v1=y", b'{"id":"c"}', ()),
        ]
    )
    store.close()
    if projections_db == "empty file":  # as `serve` leaves it for a moment while creating it
        (tmp_path / "projections.db").touch()
    assert cli.main(["status", "--json", "--data-dir", str(tmp_path)], environ={}) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["log"] == {
        "events": 2,
        "head": 2,
        "last_delivery_at": "x",  # the received_at of the newest signed row
        "unknown_type_events": 1,
        "forget_records": 0,
        "forget_pending": 0,
    }
    assert report["sync"] == {"finished_at": None, "ok": None}
    # Reading only: no projections.db is made, and every projection is still to be filled.
    assert (tmp_path / "projections.db").exists() == (projections_db == "empty file")
    assert {(p["position"], p["lag"], p["stale"]) for p in report["projections"]} == {(0, 2, False)}


def test_status_counts_projection_warnings_apart_from_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A product whose `media` is a string is applied, and counted as a warning, not an error."""
    product = b'{"id": "p1", "name": "Shirt", "media": "https://cdn.example.com/p1.jpg"}'
    append_and_project(
        tmp_path, [Delivery("wh_1", "product.snapshot", None, 1, "x", "", product, ())]
    )
    capsys.readouterr()  # the projector's own log line
    assert cli.main(["status", "--json", "--data-dir", str(tmp_path)], environ={}) == 0
    report = json.loads(capsys.readouterr().out)
    counts = {p["name"]: (p["errors"], p["warnings"]) for p in report["projections"]}
    assert counts == {"customers": (0, 0), "messages": (0, 0), "orders": (0, 0), "products": (0, 1)}
    # The SPEC's keys are all still there.
    assert {"name", "version", "position", "lag", "errors", "stale"} <= set(
        report["projections"][0]
    )
