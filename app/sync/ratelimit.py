"""Keeping under the Open API's rate limit: 100 requests a minute per key by default.

The answers' `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers
(seconds until the window resets) override the default, so a key with another quota,
or a window already used up by another client of the same key, is respected.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

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
