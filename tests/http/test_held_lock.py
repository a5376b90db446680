"""Another process holds the log's write lock: every delivery is still answered in time.

SPEC §3: an answer within 15 s of the body's last byte (BitByBit gives up at 30 s), 503
`store_unavailable` when the log cannot take the delivery by then, and never a 500. The
deadline is shortened through `Settings.answer_seconds` so the test takes seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from app.settings import Settings
from tests import _helpers
from tests._helpers import SECRET, event_rows, post, signed_headers

if TYPE_CHECKING:
    from pathlib import Path

    from tests._helpers import Client, MakeClient

ANSWER_SECONDS = 2.0
SLACK_SECONDS = 1.5
SENDERS = 20


async def _timed_post(client: Client, webhook_id: str) -> tuple[int, Any, float]:
    body = b'{"id": "%s"}' % webhook_id.encode()
    started = time.monotonic()
    status, answer = await post(client, body, signed_headers(body, webhook_id=webhook_id))
    return status, answer, time.monotonic() - started


async def test_a_held_write_lock_is_answered_503_within_the_deadline(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """Held longer than the deadline: each answer comes in time, 503 or 200, never 500."""
    client = await make_client(
        Settings(secrets=(SECRET,), data_dir=tmp_path, answer_seconds=ANSWER_SECONDS)
    )
    ids = [f"wh_held_{i}" for i in range(SENDERS)]
    with _helpers.held_write_lock(tmp_path / "events.db"):
        answers = await asyncio.gather(*(_timed_post(client, i) for i in ids))
        async with client.get("/readyz") as resp:
            assert resp.status == 503
        held_rows = event_rows(tmp_path)
    assert held_rows == []
    assert {status for status, _, _ in answers} == {503}
    assert {answer["error"] for _, answer, _ in answers} == {"store_unavailable"}
    assert max(took for _, _, took in answers) < ANSWER_SECONDS + SLACK_SECONDS
    # The 503s said "not stored": BitByBit's retries of them are new to the log.
    retried = await asyncio.gather(*(_timed_post(client, i) for i in ids))
    assert {(status, answer["status"]) for status, answer, _ in retried} == {(200, "accepted")}
    assert sorted(row[1] for row in event_rows(tmp_path)) == sorted(ids)


async def test_a_lock_released_before_the_deadline_is_waited_for(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """Released while deliveries wait: they are committed and answered 200, not refused."""
    client = await make_client(Settings(secrets=(SECRET,), data_dir=tmp_path, answer_seconds=30))
    ids = [f"wh_wait_{i}" for i in range(SENDERS)]
    with _helpers.held_write_lock(tmp_path / "events.db") as holder:
        posts = asyncio.gather(*(_timed_post(client, i) for i in ids))
        await asyncio.to_thread(_helpers.release_lock, holder)
        answers = await posts
    assert {(status, answer["status"]) for status, answer, _ in answers} == {(200, "accepted")}
    assert sorted(row[1] for row in event_rows(tmp_path)) == sorted(ids)
