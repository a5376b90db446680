"""The Open API client: paging envelopes, the rate limit, retries and refusals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
import pytest

from app.sync.client import (
    AccessDeniedError,
    ApiError,
    ApiUnavailableError,
    Endpoint,
    OpenApiClient,
    RateLimiter,
)
from tests._helpers import VirtualTime
from tests.fake_api import HEADER, KEY, customer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.fake_api import Account, Faults


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _client(
    session: aiohttp.ClientSession, api_url: str, time: VirtualTime, key: str = KEY
) -> OpenApiClient:
    return OpenApiClient(session, Endpoint(api_url, HEADER, key), time.policy())


async def test_pages_carry_each_entity_and_the_meta(
    session: aiohttp.ClientSession, api_url: str, account: Account
) -> None:
    """Page 1 of 250 customers: 100 entities, a next page, the total."""
    for n in range(250):
        account.customers[f"cust_{n:06d}"] = customer(n)
    client = _client(session, api_url, VirtualTime())
    first, last = await client.page("customers", 1), await client.page("customers", 3)
    assert (len(first.items), first.has_next, first.total) == (100, True, 250)
    assert (len(last.items), last.has_next) == (50, False)


async def test_a_429_waits_for_the_reset_then_succeeds(
    session: aiohttp.ClientSession, api_url: str, account: Account, faults: Faults
) -> None:
    """429 with RateLimit-Reset 7: the retry is sent 7 s later (virtual), not before."""
    account.customers["cust_000001"] = customer(1)
    faults.next_statuses = [429]
    faults.reset_seconds = 7
    time = VirtualTime()
    started = time.now
    body = await _client(session, api_url, time).entity("customers", "cust_000001")
    assert body is not None
    assert time.now - started == pytest.approx(7.0)
    assert faults.requests == 2


async def test_503s_back_off_exponentially_with_jitter_capped(
    session: aiohttp.ClientSession, api_url: str, account: Account, faults: Faults
) -> None:
    """Three 503s then 200: waits of at most 1, 2, 4 s (full jitter at its maximum here)."""
    account.customers["cust_000001"] = customer(1)
    faults.next_statuses = [503, 503, 503]
    time = VirtualTime()
    assert await _client(session, api_url, time).entity("customers", "cust_000001") is not None
    assert time.sleeps == [1.0, 2.0, 4.0]


async def test_attempts_are_bounded(
    session: aiohttp.ClientSession, api_url: str, faults: Faults
) -> None:
    """Nothing but 503: six attempts, then an error saying how to resume."""
    faults.next_statuses = [503] * 10
    time = VirtualTime()
    with pytest.raises(ApiUnavailableError, match="run sync again"):
        await _client(session, api_url, time).page("customers", 1)
    assert faults.requests == 6
    assert max(time.sleeps) <= 60


async def test_connection_errors_are_retried_then_reported(
    session: aiohttp.ClientSession,
) -> None:
    """A port nobody listens on: retried, then `ApiUnavailableError` (never a crash)."""
    from tests._helpers import free_port  # noqa: PLC0415

    time = VirtualTime()
    client = _client(session, f"http://127.0.0.1:{free_port()}/v1", time)
    with pytest.raises(ApiUnavailableError, match="no answer"):
        await client.page("customers", 1)
    assert len(time.sleeps) == 5


async def test_401_names_the_key_variables_and_never_the_key(
    session: aiohttp.ClientSession, api_url: str
) -> None:
    """A wrong key: at once (one request), a message naming what to set."""
    with pytest.raises(AccessDeniedError) as refused:
        await _client(session, api_url, VirtualTime(), key="bbb_live_wrong").page("customers", 1)
    text = str(refused.value)
    for name in ("BITBYBIT_API_KEY", "BITBYBIT_API_KEY_HEADER", "BITBYBIT_API_URL"):
        assert name in text
    assert "bbb_live_wrong" not in text


async def test_403_names_the_missing_scope(
    session: aiohttp.ClientSession, api_url: str, faults: Faults
) -> None:
    """A key without orders READ: 403 INSUFFICIENT_SCOPE says which scope to grant."""
    faults.scopes = frozenset({"customers"})
    with pytest.raises(AccessDeniedError, match="READ scope on orders"):
        await _client(session, api_url, VirtualTime()).page("orders", 1)
    assert faults.requests == 1


async def test_absent_entity_is_none_other_404_is_an_error(
    session: aiohttp.ClientSession, api_url: str
) -> None:
    """404 NOT_FOUND of an entity is None; a route that does not exist is not "gone"."""
    client = _client(session, api_url, VirtualTime())
    assert await client.entity("customers", "cust_nobody") is None
    wrong = _client(session, api_url.replace("/open/v1", "/nothing"), VirtualTime())
    with pytest.raises(ApiError, match="404"):
        await wrong.entity("customers", "cust_nobody")


async def test_limiter_keeps_to_100_a_minute() -> None:
    """250 requests at the default limit take two full windows of virtual time."""
    time = VirtualTime()
    limiter = RateLimiter(clock=time.clock, sleep=time.sleep)
    started = time.now
    for _ in range(250):
        await limiter.acquire()
    assert time.now - started == pytest.approx(120.0)


async def test_limiter_follows_the_headers() -> None:
    """A higher announced limit is used; Remaining 0 holds requests until the reset."""
    time = VirtualTime()
    limiter = RateLimiter(clock=time.clock, sleep=time.sleep)
    limiter.observe({"RateLimit-Limit": "1000", "RateLimit-Remaining": "5"})
    for _ in range(500):
        await limiter.acquire()
    assert time.sleeps == []
    limiter.observe({"RateLimit-Remaining": "0", "RateLimit-Reset": "12"})
    await limiter.acquire()
    assert time.sleeps == [12.0]
