"""The disk fills up while deliveries arrive, then frees: 503 meanwhile, no restart needed.

The disk is a tmpfs of the test's own (8 MiB) where the machine lets the test mount one
(root, or a container allowed to mount); elsewhere SQLite's `max_page_count` on the
log's connections stands in for it, which fails writes the same way (SQLITE_FULL).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import uuid
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from app.eventlog import reads as reads_module
from app.eventlog import schema as schema_module
from app.settings import Settings
from tests._helpers import SECRET, event_rows, signed_headers

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests._helpers import Client, MakeClient

BODY = b'{"id": "ord_1", "note": "' + b"x" * 4000 + b'"}'  # a page or more per delivery
SENDERS = 4
DEADLINE_SECONDS = 20


class Disk(Protocol):
    """Where the data directory lives, and a way to fill it and free it again."""

    data_dir: Path

    def fill(self) -> None:
        """Leave no room for the log to grow."""

    def free(self) -> None:
        """Give the room back."""


class Tmpfs:
    """A small tmpfs mounted for the test; full means a file takes every free byte."""

    def __init__(self, mount_point: Path) -> None:
        self.data_dir = mount_point / "data"
        self._filler = mount_point / "filler"

    def fill(self) -> None:
        """Write to a filler file until the filesystem refuses even a byte."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = 65536
            while size:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    size //= 2
        finally:
            os.close(fd)

    def free(self) -> None:
        """Delete the filler."""
        self._filler.unlink()


class PageLimit:
    """The log's connections capped at their current size (PRAGMA max_page_count)."""

    def __init__(self, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.data_dir = data_dir
        self._connections: list[sqlite3.Connection] = []
        real_connect: Callable[..., sqlite3.Connection] = schema_module.open_log

        def remembered(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = real_connect(*args, **kwargs)
            self._connections.append(conn)
            return conn

        monkeypatch.setattr(reads_module, "open_log", remembered)

    def _limit(self, pages: int) -> None:
        for conn in self._connections:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed since
                conn.execute(f"PRAGMA max_page_count = {pages}")

    def fill(self) -> None:
        """Clamp every open log connection to the file's current page count."""
        self._limit(1)

    def free(self) -> None:
        """SQLite's default limit again."""
        self._limit(4_294_967_294)


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    """A tmpfs where mounting is permitted, else the page-limit stand-in."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir(mode=0o700)
    mount = shutil.which("mount")
    mounted = (
        mount is not None
        and subprocess.run(
            [mount, "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount_point)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if not mounted:
        yield PageLimit(tmp_path / "data", monkeypatch)
        return
    try:
        yield Tmpfs(mount_point)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)  # noqa: S607


class Senders:
    """Deliveries posted without pause from a few concurrent senders; every answer kept."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.answers: list[tuple[str, int]] = []
        self._tasks = [asyncio.create_task(self._send()) for _ in range(SENDERS)]

    async def _send(self) -> None:
        while True:
            headers = signed_headers(BODY, webhook_id=f"wh_{uuid.uuid4().hex}")
            async with self.client.post("/webhooks", data=BODY, headers=headers) as resp:
                assert resp.content_type == "application/json"
                await resp.read()
                self.answers.append((headers["X-BitByBit-Webhook-Id"], resp.status))

    async def until(self, status: int, count: int) -> int:
        """Wait for `count` answers in a row with `status`; the index of the first of them."""
        async with asyncio.timeout(DEADLINE_SECONDS):
            while True:  # polling the answers: the condition decides, not the sleep
                statuses = [answer for _, answer in self.answers]
                for start in range(len(statuses) - count + 1):
                    if statuses[start : start + count] == [status] * count:
                        return start
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop sending; answers in flight are dropped, not counted."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def readyz(client: Client) -> int:
    """The status of /readyz."""
    async with client.get("/readyz") as resp:
        return resp.status


async def caught_up(client: Client) -> bool:
    """Every projection at lag 0."""
    async with client.get("/readyz") as resp:
        projections = (await resp.json())["projections"]
    return bool(projections) and all(p["lag"] == 0 for p in projections)


async def test_a_disk_that_fills_and_frees_while_deliveries_arrive(
    disk: Disk, make_client: MakeClient
) -> None:
    """503 for every delivery once full, /readyz 503, then 200 again without a restart."""
    client = await make_client(Settings(secrets=(SECRET,), data_dir=disk.data_dir))
    senders = Senders(client)
    try:
        await senders.until(200, 20)
        disk.fill()
        full = await senders.until(503, 20)
        assert await readyz(client) == 503
        # Once refusing, every delivery is refused until there is room again.
        still_full = len(senders.answers)
        assert {status for _, status in senders.answers[full:still_full]} == {503}
        disk.free()
        await senders.until(200, 20)
        assert await readyz(client) == 200
    finally:
        await senders.stop()
    # The projector, which failed on the full disk too, catches up by itself.
    async with asyncio.timeout(DEADLINE_SECONDS):
        while not await caught_up(client):  # noqa: ASYNC110 - polling /readyz, no event
            await asyncio.sleep(0.02)
    assert {status for _, status in senders.answers} == {200, 503}
    logged = {webhook_id for _, webhook_id, _, _ in event_rows(disk.data_dir)}
    accepted = {webhook_id for webhook_id, status in senders.answers if status == 200}
    assert accepted <= logged, "every 200 is in the log"
    refused = {webhook_id for webhook_id, status in senders.answers if status == 503}
    assert not refused & logged, "no 503 was stored"
