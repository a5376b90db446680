"""Helpers shared by the tests: one delivery factory and one way to wait for a condition.

Fixtures live in the `conftest.py` files; these are plain functions.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from app.eventlog.rows import Delivery
from app.instants import format_instant
from app.webhooks.signature import compute_digest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")

# 2024-01-15T10:30:00Z, the `createdAt` of every sample payload.
T0 = 1705314600
# How long a test waits for something that takes milliseconds when all is well.
DEADLINE_SECONDS = 20.0
# Polling interval, not synchronisation: the condition decides.
_POLL_SECONDS = 0.02


def delivery(
    event_type: str,
    payload: Any,
    *,
    webhook_id: str,
    timestamp: int | None = T0,
    signed_at: int | None = None,
    secret: bytes | None = None,
    signature: str | None = None,
    received_at: str | None = None,
) -> Delivery:
    """One delivery as the endpoint would log it; `payload` bytes are kept as they are.

    With `secret`, it is really signed (its digest then binds its event type in the
    signature memory); otherwise it carries `signature`, or a placeholder that
    verifies nothing. It is signed at `signed_at`, else at its timestamp header, else T0.
    """
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signed = signed_at if signed_at is not None else (T0 if timestamp is None else timestamp)
    digests: tuple[str, ...] = ()
    if secret is not None:
        digest = compute_digest(secret, str(signed), body)
        signature, digests = f"t={signed},v1={digest}", (digest,)
    return Delivery(
        webhook_id=webhook_id,
        event_type=event_type,
        event_timestamp=timestamp,
        signed_at=signed,
        received_at=received_at or format_instant(signed),
        signature=f"t={signed},v1=test" if signature is None else signature,
        payload=body,
        digests=digests,
    )


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds, failing the test after the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(_POLL_SECONDS)


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    """Await `probe` until `done` accepts what it returned, failing after the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}: last saw {value!r}")
        await asyncio.sleep(_POLL_SECONDS)


def processes_mentioning(text: str) -> list[int]:
    """The ids of the live processes whose command line contains `text` (from `/proc`).

    A forked worker keeps its parent's command line, so a data directory's path finds a
    command and every worker it forked, even once they are reparented. Zombies, which
    hold nothing and have an empty command line, are not counted.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found
