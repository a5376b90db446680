"""`serve`'s live projections, seen from outside: tables, /metrics, staleness at start-up."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import msgspec
from structlog.testing import capture_logs

from app import cli
from app.eventlog.store import EventStore
from app.projection import projector
from projections import customers, discover
from tests._helpers import eventually, metric_sample, post, sample, signed_headers

if TYPE_CHECKING:
    import pytest

    from app.settings import Settings
    from tests._helpers import Client, MakeClient

# SPEC §6: a query a moment after a 200 sees the event, "well under a second". Half a
# second also tells the commit's nudge apart from the follower's once-a-second poll.
VISIBLE_WITHIN_SECONDS = 0.5


async def deliver(client: Client, event_type: str, payload: dict[str, Any]) -> int:
    """POST one signed delivery; the log position it was accepted at."""
    body = msgspec.json.encode(payload)
    status, answer = await post(client, body, signed_headers(body, event=event_type))
    assert status == 200, answer
    position: int = answer["position"]
    return position


async def readyz_projections(client: Client) -> list[dict[str, Any]]:
    async with client.get("/readyz") as resp:
        projections: list[dict[str, Any]] = (await resp.json())["projections"]
        return projections


async def caught_up(client: Client, head: int) -> list[dict[str, Any]]:
    """Wait (with a deadline) until every current projection has applied `head`."""

    def done(projections: list[dict[str, Any]]) -> bool:
        current = [p for p in projections if not p["stale"]]
        return bool(current) and all(p["position"] >= head for p in current)

    return await eventually(
        lambda: readyz_projections(client), done, f"projections to reach {head}"
    )


def customer_emails(settings: Settings) -> list[str]:
    conn = sqlite3.connect(f"file:{settings.projections_path}?mode=ro", uri=True)
    try:
        return [email for (email,) in conn.execute("SELECT email FROM customers ORDER BY id")]
    finally:
        conn.close()


async def test_projection_gauges_report_position_lag_and_errors(client: Client) -> None:
    """/metrics: every projection at the head, and the unusable event counted once."""
    await deliver(client, "customer.created", sample("customer.created"))
    head = await deliver(client, "customer.created", {"email": "no-id@example.com"})
    await caught_up(client, head)
    async with client.get("/metrics") as resp:
        text = await resp.text()
    for projection in discover():
        label = f'{{projection="{projection.NAME}"}}'
        assert metric_sample(text, f"bitbybit_projection_position{label}") == head
        assert metric_sample(text, f"bitbybit_projection_lag{label}") == 0
        expected_errors = 1 if projection is customers else 0
        assert metric_sample(text, f"bitbybit_projection_errors{label}") == expected_errors


async def test_a_delivery_is_queryable_well_under_a_second(
    client: Client, settings: Settings
) -> None:
    """Once the projector runs, an accepted event reaches its table within a second."""
    await caught_up(client, await deliver(client, "customer.created", sample("customer.created")))
    payload = sample("customer.created", id="cust_fresh", email="fresh@example.com")
    await deliver(client, "customer.created", payload)
    answered = time.monotonic()
    while "fresh@example.com" not in customer_emails(settings):
        assert time.monotonic() - answered < VISIBLE_WITHIN_SECONDS
        await asyncio.sleep(0.01)  # polling interval: the condition decides
    assert time.monotonic() - answered < VISIBLE_WITHIN_SECONDS


async def test_stale_projection_is_logged_reported_and_left_alone(
    make_client: MakeClient, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tables built by another VERSION: a warning at start-up, `stale` everywhere, no writes.

    The stored version is changed rather than the code's: the live projector is a process
    of its own, which a monkeypatch here would not reach.
    """
    store = EventStore.open(settings.events_path)
    conn = projector.connect(settings.projections_path)
    projector.Projector(conn, store, discover()).install_all()
    conn.execute("UPDATE _projections SET version = version - 1 WHERE name = 'customers'")
    conn.close()
    store.close()

    with capture_logs() as logs:
        client = await make_client(settings)
        head = await deliver(client, "customer.created", sample("customer.created"))
        projections = await caught_up(client, head)
    assert [e["projection"] for e in logs if e["event"] == "projection_stale"] == ["customers"]
    stale = {p["name"]: p["stale"] for p in projections}
    assert stale == {p.NAME: p is customers for p in discover()}
    assert customer_emails(settings) == []  # its old tables stay as they were

    assert cli.main(["status", "--json", "--data-dir", str(settings.data_dir)], environ={}) == 0
    report = json.loads(capsys.readouterr().out)
    assert {p["name"]: p["stale"] for p in report["projections"]} == stale
    assert cli.main(["status", "--data-dir", str(settings.data_dir)], environ={}) == 0
    [customers_line] = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("customers")
    ]
    assert customers_line.endswith("STALE: run rebuild")
