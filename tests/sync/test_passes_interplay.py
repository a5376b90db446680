"""Webhooks and syncs together: whatever arrives, in whatever order, a final sync heals.

A simulated account changes over time; the webhooks of its changes arrive shuffled,
duplicated, and some never; syncs run at random moments. After a final sync the tables
equal the account's final state (for what the API returns), and equal a rebuild.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from app.eventlog.rows import Delivery
from app.eventlog.store import EventStore
from app.instants import format_instant
from app.settings import Settings
from app.sync import runner
from app.sync.passes import CUSTOMERS, ORDERS
from tests._helpers import SECRET, VirtualTime, expected, projected
from tests.fake_api import BASE_PATH, KEY, Account, FakeApi, Faults, customer, iso, order

T0 = 1705314600
CUSTOMER_IDS = ["cust_000001", "cust_000002", "cust_000003"]
ORDER_IDS = ["order_000001", "order_000002"]
TABLES = ["customers", "customer_addresses", "orders", "order_line_items"]

# One step of the simulation: change an entity, delete a customer, deliver a pending
# webhook (by index), or sync.
CHANGE = st.tuples(
    st.just("change"),
    st.sampled_from(CUSTOMER_IDS + ORDER_IDS),
    st.sampled_from(["a", "b", None]),  # a field's new value
    st.integers(0, 2),  # how many list items the entity now has
    st.booleans(),  # whether the webhook shows its lists as "not included" ([])
)
STEP = (
    CHANGE
    | st.tuples(st.just("delete"), st.sampled_from(CUSTOMER_IDS))
    | st.tuples(st.just("deliver"), st.integers(0, 30), st.booleans())
    | st.tuples(st.just("sync"))
)


@dataclasses.dataclass
class Simulation:
    """The account, the webhooks not yet delivered, and the deleted ids."""

    account: Account
    pending: list[Delivery] = dataclasses.field(default_factory=list)
    deleted: set[str] = dataclasses.field(default_factory=set)
    clock: int = T0
    webhooks: int = 0

    def webhook(self, event_type: str, payload: dict[str, Any]) -> None:
        """A webhook of the change just made, pending delivery."""
        self.webhooks += 1
        body = json.dumps(payload).encode()
        self.pending.append(
            Delivery(
                webhook_id=f"wh_{self.webhooks:04d}",
                event_type=event_type,
                event_timestamp=self.clock,
                signed_at=self.clock,
                received_at=format_instant(self.clock),
                signature=f"t={self.clock},v1=test",
                payload=body,
                digests=(),
            )
        )

    def change(self, key: str, value: str | None, items: int, hide_lists: bool) -> None:
        """Create or update an entity (never one deleted: deletion is final)."""
        if key in self.deleted:
            return
        self.clock += 1
        customers = key.startswith("cust")
        table = self.account.customers if customers else self.account.orders
        created = key not in table
        n = int(key.rsplit("_", 1)[1])
        if customers:
            entity = customer(n, updated=self.clock, firstName=value)
            entity["addresses"] = entity["addresses"][:1] * items
            entity["tags"] = [value] if value else []
        else:
            entity = order(n, updated=self.clock, notes=value, status=value or "active")
            entity["lineItems"] = entity["lineItems"][:1] * items
        entity["createdAt"] = table.get(key, entity)["createdAt"] if not created else iso(T0)
        table[key] = entity
        kind = "customer" if customers else "order"
        payload = dict(entity)
        if hide_lists and not created:
            # What the sender's update payloads do: lists it leaves out look empty.
            for field in ("addresses", "lineItems", "tags"):
                if field in payload:
                    payload[field] = []
        payload.pop("notes", None)  # webhook bodies have no notes
        self.webhook(f"{kind}.{'created' if created else 'updated'}", payload)

    def delete(self, key: str) -> None:
        """Delete a customer, as BitByBit would, with its webhook."""
        if key not in self.account.customers:
            return
        self.clock += 1
        del self.account.customers[key]
        self.deleted.add(key)
        self.webhook("customer.deleted", {"id": key})


async def _sync(settings: Settings) -> None:
    await runner.run_pass(
        settings,
        [CUSTOMERS, ORDERS],
        stream=io.StringIO(),
        policy=VirtualTime().policy(),
        log_lines=False,
    )


async def _run(steps: list[tuple[Any, ...]], lost: list[bool], directory: Path) -> None:
    simulation = Simulation(Account())
    app_runner = web.AppRunner(FakeApi(simulation.account, Faults()).app())
    await app_runner.setup()
    site = web.TCPSite(app_runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
    data_dir = directory / "data"
    settings = Settings(
        secrets=(SECRET,),
        data_dir=data_dir,
        api_key=KEY,
        api_url=f"http://127.0.0.1:{port}{BASE_PATH}",
    )
    store = EventStore.open(data_dir / "events.db", synchronous="OFF")
    try:
        for step in steps:
            match step:
                case ("change", key, value, items, hide):
                    simulation.change(key, value, items, hide)
                case ("delete", key):
                    simulation.delete(key)
                case ("deliver", index, twice) if simulation.pending:
                    delivery = simulation.pending.pop(index % len(simulation.pending))
                    store.append([delivery, delivery] if twice else [delivery])
                    projected(data_dir, TABLES)  # the live projection follows
                case ("sync",):
                    await _sync(settings)
                    projected(data_dir, TABLES)
        # The rest arrive late, in reverse order, or never.
        late = [d for d, gone in zip(simulation.pending, lost, strict=False) if not gone]
        store.append(late[::-1])
        await _sync(settings)
    finally:
        store.close()
        await app_runner.cleanup()

    live = projected(data_dir, TABLES)
    rebuilt = projected(data_dir, TABLES, directory / "rebuilt.db")
    assert live == rebuilt
    want = {
        table: rows
        for table, rows in expected(simulation.account, set()).items()
        if table in TABLES
    }
    kept = {
        table: [r for r in rows if r[0] not in simulation.deleted] for table, rows in live.items()
    }
    assert kept == want
    deleted_rows = [r for r in live["customers"] if r[0] in simulation.deleted]
    assert all(r[-1] is True for r in deleted_rows)


@settings(max_examples=25)
@given(
    steps=st.lists(STEP, min_size=1, max_size=14),
    lost=st.lists(st.booleans(), max_size=30),
)
def test_final_sync_makes_the_tables_the_accounts_whatever_arrived(
    steps: list[tuple[Any, ...]], lost: list[bool]
) -> None:
    """Shuffled, duplicated and lost webhooks, syncs at random moments: a final sync heals."""
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_run(steps, lost, Path(directory)))
