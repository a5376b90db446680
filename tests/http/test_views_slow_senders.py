"""Senders that stop sending are cut off, and idle connections do not pile up (SPEC §3)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest
from structlog.testing import capture_logs

from app.settings import Settings
from tests._helpers import (
    SECRET,
    build_request,
    event_rows,
    exchange_async,
    metric_sample,
    post,
    signed_headers,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests._helpers import Client, MakeClient

BODY = b'{"id": "ord_1", "status": "paid", "total": 12.5}'
TIMEOUT = 1


@pytest.fixture
async def impatient(make_client: MakeClient, tmp_path: Path) -> Client:
    """A service that gives a body one second to arrive."""
    return await make_client(
        Settings(secrets=(SECRET,), data_dir=tmp_path, body_timeout_seconds=TIMEOUT)
    )


def delivery_head(body: bytes) -> bytes:
    """A signed delivery's request line and headers, announcing all of `body`."""
    lines = [(name.encode(), value.encode()) for name, value in signed_headers(body).items()]
    return build_request([*lines, (b"Content-Length", str(len(body)).encode())], b"")


async def test_a_sender_that_stops_mid_body_is_cut_off(impatient: Client, tmp_path: Path) -> None:
    """Half a body, then silence: 408 body_timeout within the timeout, closed, nothing stored."""
    started = time.monotonic()
    with capture_logs() as logs:
        stalled = asyncio.create_task(
            exchange_async(impatient.server.port, delivery_head(BODY) + BODY[:20], wait=10)
        )
        # Meanwhile the others are answered at once, not after the stalled one.
        for _ in range(3):
            body = b'{"id": "ord_2"}'
            status, _ = await post(impatient, body, signed_headers(body))
            assert status == 200
            assert not stalled.done()
        answer, closed = await stalled
    elapsed = time.monotonic() - started
    assert answer is not None
    assert (answer.status, answer.json()["error"]) == (408, "body_timeout")
    assert closed
    assert TIMEOUT <= elapsed < TIMEOUT + 2
    assert [payload for *_, payload in event_rows(tmp_path)] == [b'{"id": "ord_2"}'] * 3
    assert [e["outcome"] for e in logs if e["event"] == "delivery"].count("body_timeout") == 1
    async with impatient.get("/metrics") as resp:
        text = await resp.text()
    assert metric_sample(text, 'bitbybit_rejections_total{code="body_timeout"}') == 1


async def test_a_trickling_sender_is_cut_off_too(impatient: Client, tmp_path: Path) -> None:
    """The timeout bounds the whole body, not the gap between bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", impatient.server.port)
    writer.write(delivery_head(BODY))
    started = time.monotonic()
    answer = b""
    for byte in BODY:
        writer.write(bytes([byte]))
        try:
            # Pacing the sender, one byte a tenth of a second: the behaviour under test.
            answer = await asyncio.wait_for(reader.read(), 0.1)
            break
        except TimeoutError:
            continue
    writer.close()
    assert b'"body_timeout"' in answer
    assert time.monotonic() - started < TIMEOUT + 2
    assert event_rows(tmp_path) == []


async def test_a_chunk_that_breaks_after_the_headers_ends_in_the_timeout(
    impatient: Client, tmp_path: Path
) -> None:
    """A garbled chunk after the handler started is dropped by aiohttp: the timeout ends it."""
    lines = [(name.encode(), value.encode()) for name, value in signed_headers(BODY).items()]
    head = build_request([*lines, (b"Transfer-Encoding", b"chunked")], b"")
    reader, writer = await asyncio.open_connection("127.0.0.1", impatient.server.port)
    writer.write(head)
    # The garbage must come after the handler started, as on a slow network.
    runner = impatient.server.runner
    assert runner is not None
    assert runner.server is not None
    async with asyncio.timeout(5):
        # Polling aiohttp's own counter: it offers no event to wait on.
        while runner.server.requests_count == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    writer.write(b"zz\r\nnot a chunk\r\n")
    async with asyncio.timeout(TIMEOUT + 2):
        answer = await reader.read()
    writer.close()
    assert b'"body_timeout"' in answer
    assert event_rows(tmp_path) == []


class TestIdleConnections:
    """A connection with no request in flight is closed after the keep-alive time."""

    @pytest.fixture
    async def brisk(
        self, make_client: MakeClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> Client:
        """A service that closes idle connections after half a second."""
        monkeypatch.setattr("app.http.main.KEEPALIVE_SECONDS", 0.5)
        return await make_client(settings)

    @pytest.mark.parametrize(
        "sent",
        [
            b"",
            b"POST /webhooks HTTP/1.1\r\nHost: x\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        ],
        ids=["nothing", "half the headers", "one request, then idle"],
    )
    async def test_idle_connection_is_closed(self, brisk: Client, sent: bytes) -> None:
        """Silent, half-headed or kept alive after an answer: closed, not held forever."""
        started = time.monotonic()
        _, closed = await exchange_async(brisk.server.port, sent, wait=5)
        assert closed
        assert time.monotonic() - started < 3
