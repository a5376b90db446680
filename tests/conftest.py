"""Shared fixtures: a signing secret, settings in a temporary directory, signed requests."""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import TYPE_CHECKING, Any

import hypothesis
import pytest

from app.eventlog.signature import sign
from app.http.main import create_app
from app.settings import Settings
from tests._postgres import PostgresServer, running_server

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path

    from aiohttp import web
    from aiohttp.test_utils import TestClient
    from pytest_aiohttp import AiohttpClient

    Client = TestClient[web.Request, web.Application]
    MakeClient = Callable[[Settings], Awaitable[Client]]

# Deterministic property tests: the same examples on every run and every machine.
hypothesis.settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=50, print_blob=True
)
hypothesis.settings.load_profile("ci")

SECRET = b"whsec_test_7c1e0a9d4b"
OTHER_SECRET = b"whsec_other_55f0b3e2a1"


def signed_headers(
    body: bytes,
    *,
    webhook_id: str | None = None,
    event: str = "order.created",
    signed_at: int | None = None,
    secret: bytes = SECRET,
    event_timestamp: str | None = "1705314600",
    content_type: str = "application/json",
) -> dict[str, str]:
    """The headers BitByBit sends with `body`, signed with `secret` at `signed_at` (now)."""
    headers = {
        "Content-Type": content_type,
        "X-BitByBit-Webhook-Id": webhook_id or f"wh_{uuid.uuid4().hex}",
        "X-BitByBit-Webhook-Event": event,
        "X-BitByBit-Webhook-Signature": sign(
            secret, int(time.time()) if signed_at is None else signed_at, body
        ),
    }
    if event_timestamp is not None:
        headers["X-BitByBit-Webhook-Timestamp"] = event_timestamp
    return headers


def log_rows(data_dir: Path, query: str) -> list[tuple[Any, ...]]:
    """The rows of `query` on the log in `data_dir`, read on a connection of its own.

    None while there is no log yet: reading must not create the file.
    """
    path = data_dir / "events.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def event_rows(data_dir: Path) -> list[tuple[Any, ...]]:
    """`(position, webhook_id, event_type, payload)` of every logged event, read directly."""
    return log_rows(
        data_dir, "SELECT position, webhook_id, event_type, payload FROM events ORDER BY position"
    )


def conflict_rows(data_dir: Path) -> list[tuple[Any, ...]]:
    """`(webhook_id, logged_position, payload)` of every conflicting duplicate kept aside."""
    return log_rows(
        data_dir,
        "SELECT webhook_id, logged_position, payload FROM conflicting_duplicates ORDER BY id",
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(secrets=(SECRET,), data_dir=tmp_path)


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient) -> MakeClient:
    async def make(settings: Settings) -> Client:
        return await aiohttp_client(create_app(settings))

    return make


@pytest.fixture
async def client(make_client: MakeClient, settings: Settings) -> Client:
    return await make_client(settings)


def metric_sample(text: str, name: str) -> float:
    """The value of one sample line of a Prometheus text exposition."""
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric == name:
            return float(value)
    msg = f"{name} not in /metrics"
    raise AssertionError(msg)


async def post(client: Client, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    """POST a delivery; the status and the decoded JSON answer."""
    async with client.post("/webhooks", data=body, headers=headers) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run, started on first use (about a second)."""
    with running_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """Its connection URL, with the password that must never reach a log line."""
    return postgres_server.url
