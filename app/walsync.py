"""Makes the log's commits durable from a helper process, so the event loop never waits.

Group commit answers a batch only once it is on disk. With `synchronous=FULL`, SQLite
syncs inside COMMIT, so COMMIT had to run on a thread, and that thread's hand-offs of
the GIL with the busy event loop cost the endpoint about a sixth of its throughput
(measured in paired runs). Instead `serve` commits on the loop with `synchronous=NORMAL`
(the WAL frames are written, not synced) and asks this helper to fdatasync the WAL:
a sync covers the file, whichever process wrote it, so each reply means every frame
written before the request is on disk. The helper also checkpoints the WAL into the
database file in the background, which the writer's connection no longer does: a
checkpoint copies and syncs, and would stall the loop.

`serve` and the helper talk over a socket pair: one byte asks, one line answers (`.` for
synced, `!` and the error otherwise). The helper exits when `serve`'s end closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from app.logs import configure_logging
from app.store import BUSY_TIMEOUT_MS, StoreUnavailableError, sync_wal

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

log = structlog.get_logger("app.walsync")

# How often the helper moves the WAL's committed frames into the database file. Each
# round writes every page changed since the last once, and lets the WAL start over.
CHECKPOINT_SECONDS = 0.5
_SYNCED = b"."
_FAILED = b"!"
_MAX_REPLY = 4096


class WalSyncer:
    """`serve`'s side: starts the helper and waits for its syncs."""

    def __init__(self, events_path: Path) -> None:
        self._events_path = events_path
        self._socket: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None

    async def sync(self) -> None:
        """Return once every WAL frame written so far is on disk.

        Raises `StoreUnavailableError` when the sync failed or the helper is gone; a helper
        that died is started afresh for the next batch.
        """
        if self._socket is None:
            await self._start()
        assert self._socket is not None  # noqa: S101 - _start sets it
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendall(self._socket, _SYNCED)
            reply = await loop.sock_recv(self._socket, _MAX_REPLY)
        except OSError as exc:
            reply = str(exc).encode()
        if reply == _SYNCED:
            return
        if reply.startswith(_FAILED):
            raise StoreUnavailableError(
                f"the log could not be synced to disk: {reply[1:].decode(errors='replace')}"
            )
        await self._stop()
        raise StoreUnavailableError(
            f"the log's sync helper is gone ({reply.decode(errors='replace') or 'it exited'});"
            " a new one starts with the next batch"
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WalSyncer]:
        """Start the helper now (so the first delivery does not wait for it); stop it after."""
        await self._start()
        try:
            yield self
        finally:
            await self._stop()

    async def _start(self) -> None:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)  # noqa: FBT003 - the socket API
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app.walsync",
                str(self._events_path),
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._socket = ours

    async def _stop(self) -> None:
        """Close our end: the helper sees end of file and exits."""
        sock, self._socket = self._socket, None
        process, self._process = self._process, None
        if sock is not None:
            sock.close()
        if process is not None:
            await process.wait()


def serve_syncs(events_path: Path, channel: socket.socket) -> None:
    """The helper's loop: sync the WAL for each request, until `channel` closes."""
    while channel.recv(_MAX_REPLY):
        try:
            sync_wal(events_path)
        except OSError as exc:
            channel.sendall(_FAILED + str(exc).encode())
            continue
        channel.sendall(_SYNCED)


def checkpoint_forever(events_path: Path) -> None:
    """Move committed frames into the database file every `CHECKPOINT_SECONDS`.

    PASSIVE never waits for the writer or readers: what it cannot copy now it copies next
    time. At `synchronous=NORMAL` a checkpoint syncs the WAL before copying and the
    database file after, so nothing committed is ever only in a file that was not synced.
    """
    conn: sqlite3.Connection | None = None
    while True:
        time.sleep(CHECKPOINT_SECONDS)
        try:
            if conn is None:
                conn = sqlite3.connect(
                    f"{events_path.resolve().as_uri()}?mode=rw",
                    uri=True,
                    isolation_level=None,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                )
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("wal_checkpoint_failed", error=str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m app.walsync EVENTS_DB FD`, started by `serve` with a socket on FD."""
    args = sys.argv[1:] if argv is None else argv
    configure_logging()
    events_path = Path(args[0])
    channel = socket.socket(fileno=int(args[1]))
    threading.Thread(
        target=checkpoint_forever, args=(events_path,), name="wal-checkpoint", daemon=True
    ).start()
    serve_syncs(events_path, channel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
