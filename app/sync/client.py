"""BitByBit's Open API as `sync` reads it: pages, entities, errors, retries, the rate limit.

Knows nothing of the log. Facts from `reference/bitbybit-open-api.md`: the envelopes
`{"data": ...}`, `{"data": [...], "meta": {...}}` and `{"error": {"code", "message"}}`;
429 and 503 are worth retrying, 401 and 403 never are. The base URL and the key's header
are settings because the API's own pages disagree about both.

The rate limit is 100 requests a minute per key by default; the answers'
`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers (seconds until the
window resets) override it, so a key with another quota, or a window already used up by
another client of the same key, is respected.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import random
import time
import urllib.parse
from typing import TYPE_CHECKING

import aiohttp
import msgspec
import tenacity

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

PAGE_SIZE = 100  # the API's largest page
ATTEMPTS = 6  # about a minute of backoff before a pass gives up (and can be resumed)
BACKOFF_BASE_SECONDS = 1.0
MAX_WAIT_SECONDS = 60.0
TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)
# 503 is the API's documented "try again"; 502 and 504 come from proxies in front of it.
_TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
ALTERNATIVE_URL = "https://api.bitbybit.studio/customer/api/open/v1"
ALTERNATIVE_HEADER = "x-bitbybit-key"


class ApiError(Exception):
    """The API answered something a pass cannot use; `status` 0 means no answer at all."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}" if status else detail)
        self.status = status
        self.code = code
        self.detail = detail


class AccessDeniedError(ApiError):
    """401 or 403: retrying cannot help; the message says what to set or grant."""


class ApiUnavailableError(ApiError):
    """No usable answer after every attempt (429, 503, timeouts, connection errors)."""


class _Transient(Exception):  # noqa: N818 - internal signal to retry, never raised outward
    def __init__(self, error: ApiError, reset: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.reset = reset


class _ErrorBody(msgspec.Struct):
    code: str = ""
    message: str = ""


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorBody = msgspec.field(default_factory=_ErrorBody)


class _Meta(msgspec.Struct, rename="camel"):
    page: int | None = None
    total: int | None = None
    has_next_page: bool = False


class _PageEnvelope(msgspec.Struct):
    data: list[msgspec.Raw]
    meta: _Meta = msgspec.field(default_factory=_Meta)


class _OneEnvelope(msgspec.Struct):
    data: msgspec.Raw


_page_decoder = msgspec.json.Decoder(_PageEnvelope)
_one_decoder = msgspec.json.Decoder(_OneEnvelope)
_error_decoder = msgspec.json.Decoder(_ErrorEnvelope)


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: each entity's JSON exactly as the API sent it."""

    items: list[bytes]
    has_next: bool
    total: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """What one request got back, for `sync --check`."""

    status: int
    code: str
    detail: str
    total: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the API is and how the key is presented (the documented conflicts)."""

    base_url: str
    key_header: str
    key: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """How patiently the client waits: attempts, and the time and randomness it uses.

    Injected so that tests of minutes of backoff and rate limiting take milliseconds.
    """

    attempts: int = ATTEMPTS
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random


class OpenApiClient:
    """Requests within the rate limit, retried with exponential backoff and full jitter."""

    def __init__(
        self, session: aiohttp.ClientSession, endpoint: Endpoint, policy: Policy | None = None
    ) -> None:
        self._session = session
        self.endpoint = endpoint
        self._policy = policy or Policy()
        self._limiter = RateLimiter(clock=self._policy.clock, sleep=self._policy.sleep)

    async def page(self, resource: str, number: int, limit: int = PAGE_SIZE) -> Page:
        """Page `number` (from 1) of `resource`; raises `ApiError` for anything but 200."""
        status, body, _ = await self._get(resource, {"page": str(number), "limit": str(limit)})
        if status != 200:
            raise _refusal(status, body, resource)
        try:
            envelope = _page_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise ApiError(status, "UNEXPECTED_BODY", f"a page of {resource}: {exc}") from None
        return Page(
            [bytes(item) for item in envelope.data],
            envelope.meta.has_next_page,
            envelope.meta.total,
        )

    async def entity(self, resource: str, entity_id: str) -> bytes | None:
        """One entity's JSON, or None when the API says 404 `NOT_FOUND` for it.

        Any other 404 (a wrong base URL answers 404 too) is an `ApiError`, never "gone".
        """
        path = f"{resource}/{urllib.parse.quote(entity_id, safe='')}"
        status, body, _ = await self._get(path, {})
        if status == 200:
            try:
                return bytes(_one_decoder.decode(body).data)
            except msgspec.DecodeError as exc:
                raise ApiError(status, "UNEXPECTED_BODY", f"{path}: {exc}") from None
        error = _refusal(status, body, resource)
        if status == 404 and error.code == "NOT_FOUND":
            return None
        raise error

    async def probe(self, resource: str) -> Answer:
        """What the first page of `resource` answers, whatever it is (for `--check`)."""
        try:
            status, body, _ = await self._get(resource, {"page": "1", "limit": "1"})
        except ApiError as exc:
            return Answer(exc.status, exc.code, exc.detail)
        if status == 200:
            try:
                return Answer(status, "OK", "answered", _page_decoder.decode(body).meta.total)
            except msgspec.DecodeError as exc:
                return Answer(status, "UNEXPECTED_BODY", str(exc))
        error = _refusal(status, body, resource)
        return Answer(status, error.code, error.detail)

    async def _get(
        self, path: str, params: Mapping[str, str]
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """One GET, retried while the answer or its absence is transient."""
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=tenacity.stop_after_attempt(self._policy.attempts),
            wait=self._backoff,
            sleep=self._policy.sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    answer = await self._once(path, params)
        except _Transient as exc:
            raise ApiUnavailableError(
                exc.error.status,
                exc.error.code,
                f"{exc.error.detail} (gave up after {self._policy.attempts} attempts; run sync "
                "again to resume where it stopped)",
            ) from None
        return answer

    def _backoff(self, state: tenacity.RetryCallState) -> float:
        """Full jitter: anywhere up to 1 s, 2 s, 4 s, ..., never past the reset or 60 s."""
        error = state.outcome.exception() if state.outcome else None
        reset = error.reset if isinstance(error, _Transient) else None
        cap = MAX_WAIT_SECONDS if reset is None else min(reset, MAX_WAIT_SECONDS)
        ceiling = BACKOFF_BASE_SECONDS * 2.0 ** (state.attempt_number - 1)
        return float(self._policy.jitter() * min(cap, ceiling))

    async def _once(
        self, path: str, params: Mapping[str, str]
    ) -> tuple[int, bytes, Mapping[str, str]]:
        await self._limiter.acquire()
        url = f"{self.endpoint.base_url}/{path}"
        headers = {self.endpoint.key_header: self.endpoint.key, "Accept": "application/json"}
        try:
            async with self._session.get(
                url, params=params, headers=headers, timeout=TIMEOUT, allow_redirects=False
            ) as resp:
                body = await resp.read()
                answer = resp.status, body, resp.headers
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            detail = f"no answer from {self.endpoint.base_url}: {type(exc).__name__} {exc}"
            raise _Transient(ApiError(0, "NO_ANSWER", detail), None) from None
        self._limiter.observe(resp.headers)
        if resp.status in _TRANSIENT_STATUSES:
            reset = reset_seconds(resp.headers)
            if resp.status == 429 and reset is not None:
                # The window is used up: nothing is sent before it resets, whatever the backoff.
                self._limiter.block(reset)
            raise _Transient(_refusal(resp.status, body, path), reset)
        return answer


def _refusal(status: int, body: bytes, resource: str) -> ApiError:
    """The error an answer stands for, with a message that says what to do about it."""
    try:
        error = _error_decoder.decode(body).error
    except msgspec.DecodeError:
        error = _ErrorBody()
    code = error.code or f"HTTP_{status}"
    message = error.message or "no error message"
    if status == 401:
        return AccessDeniedError(status, code, _unauthorised(code, message))
    if status == 403:
        return AccessDeniedError(status, code, _forbidden(code, message, resource))
    return ApiError(status, code, message)


def _unauthorised(code: str, message: str) -> str:
    if code == "MISSING_API_KEY":
        return (
            f"the API saw no key ({message}): BitByBit's pages name two headers, "
            f"x-api-key and {ALTERNATIVE_HEADER}; set BITBYBIT_API_KEY_HEADER to the other "
            "one, and check BITBYBIT_API_URL (run `sync --check`)"
        )
    return (
        f"the key was refused ({message}): check BITBYBIT_API_KEY (invalid, revoked or "
        "expired keys answer this); if it is right, BITBYBIT_API_KEY_HEADER (x-api-key or "
        f"{ALTERNATIVE_HEADER}) or BITBYBIT_API_URL (.../customer/open/v1 or "
        ".../customer/api/open/v1) may be the documented other one: run `sync --check`"
    )


def _forbidden(code: str, message: str, resource: str) -> str:
    scope = resource.split("/", 1)[0]
    if code == "IP_NOT_ALLOWED":
        return (
            f"this host's address is not in the key's IP allowlist ({message}): add it in "
            "BitByBit under Settings > Developer"
        )
    return (
        f"the key lacks the READ scope on {scope} ({message}): grant it in BitByBit under "
        "Settings > Developer, or use a key that has it"
    )


DEFAULT_PER_MINUTE = 100
WINDOW_SECONDS = 60.0


class RateLimiter:
    """At most `limit` requests in any window of a minute, and none while the API says wait.

    Time is injected (`clock`, `sleep`) so tests of minutes of waiting run in milliseconds.
    """

    def __init__(
        self,
        per_minute: int = DEFAULT_PER_MINUTE,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._limit = per_minute
        self._clock = clock
        self._sleep = sleep
        self._sent: collections.deque[float] = collections.deque()
        self._blocked_until = 0.0

    @property
    def limit(self) -> int:
        """Requests a minute currently allowed."""
        return self._limit

    async def acquire(self) -> None:
        """Wait until one more request keeps within the limit, and count it as sent."""
        while True:
            now = self._clock()
            while self._sent and self._sent[0] <= now - WINDOW_SECONDS:
                self._sent.popleft()
            wait = self._blocked_until - now
            if len(self._sent) >= self._limit:
                wait = max(wait, self._sent[0] + WINDOW_SECONDS - now)
            if wait <= 0:
                self._sent.append(now)
                return
            await self._sleep(wait)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Follow an answer's `RateLimit-*` headers; missing or garbled ones change nothing."""
        limit = _number(headers.get("RateLimit-Limit"))
        if limit is not None and limit >= 1:
            self._limit = int(limit)
        remaining = _number(headers.get("RateLimit-Remaining"))
        reset = _number(headers.get("RateLimit-Reset"))
        if remaining is not None and remaining <= 0 and reset is not None:
            self.block(reset)

    def block(self, seconds: float) -> None:
        """Send nothing for `seconds` (an answer said the window is used up)."""
        self._blocked_until = max(self._blocked_until, self._clock() + max(seconds, 0.0))


def reset_seconds(headers: Mapping[str, str]) -> float | None:
    """`RateLimit-Reset` of an answer, None where it is missing or not a number."""
    return _number(headers.get("RateLimit-Reset"))


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
