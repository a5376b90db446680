"""Helpers shared by the tests: one delivery factory and one way to wait for a condition.

Fixtures live in the `conftest.py` files; these are plain functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from app.eventlog.rows import Delivery
from app.instants import format_instant
from app.webhooks.signature import compute_digest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path

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


# Another process that takes a database's write lock, says so, and keeps it until its
# standard input closes.
_HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@contextlib.contextmanager
def held_write_lock(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds `BEGIN IMMEDIATE` on `path` for the block (an import, a forget)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "locked":
            pytest.fail("the lock holder did not take the write lock")
        yield holder
    finally:
        release_lock(holder)


def release_lock(holder: subprocess.Popen[str]) -> None:
    """Let the holder's lock go (closing its input) and wait for it to end."""
    if holder.stdin is not None and not holder.stdin.closed:
        holder.stdin.close()
    try:
        holder.wait(DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        holder.kill()
        holder.wait()
    if holder.stdout is not None:
        holder.stdout.close()
