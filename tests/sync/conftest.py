"""The fake Open API on loopback, and settings that point `sync` at it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from app.settings import Settings
from tests.conftest import SECRET
from tests.sync.fake_api import BASE_PATH, KEY, Account, FakeApi, Faults

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_aiohttp import AiohttpServer


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
