"""Every fixture of the suite, and the hypothesis profile; nothing here is imported.

Plain helpers (classes, functions, constants) are in `tests/_helpers.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hypothesis
import pytest

from app.http.main import create_app
from app.settings import Settings
from tests._helpers import SECRET, Harness, ServeProcess
from tests._postgres import PostgresServer, running_server
from tests.fake_api import BASE_PATH, KEY, Account, FakeApi, Faults

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from pytest_aiohttp import AiohttpClient, AiohttpServer

    from tests._helpers import Client, MakeClient

# Deterministic property tests: the same examples on every run and every machine.
hypothesis.settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=50, print_blob=True
)
hypothesis.settings.load_profile("ci")


# ---- The app: settings in a temporary directory, aiohttp's test client on them, and
# `serve` as processes.


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


@pytest.fixture
def servers() -> Iterator[list[ServeProcess]]:
    """`serve` processes a test starts, all stopped at its end whatever happens."""
    started: list[ServeProcess] = []
    yield started
    for server in started:
        server.stop()


# ---- Projections: a fresh log and projections database per test.


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.close()


# ---- Sync: the fake Open API on loopback, and settings that point `sync` at it.


@pytest.fixture
def account() -> Account:
    return Account()


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
async def api_url(aiohttp_server: AiohttpServer, account: Account, faults: Faults) -> str:
    server = await aiohttp_server(FakeApi(account, faults).app())
    return str(server.make_url(BASE_PATH))


@pytest.fixture
def sync_settings(tmp_path: Path, api_url: str) -> Settings:
    return Settings(secrets=(SECRET,), data_dir=tmp_path / "data", api_key=KEY, api_url=api_url)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run, started on first use (about a second)."""
    with running_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """Its connection URL, with the password that must never reach a log line."""
    return postgres_server.url
