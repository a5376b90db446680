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
    """`serve`'s side: starts the helper and waits for its syncs, one at a time."""

    def __init__(self, events_path: Path) -> None:
        self._events_path = events_path
        self._socket: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        # The reply the one sync in flight waits for; the socket stays registered with
        # the loop for the helper's lifetime rather than once per batch.
        self._reply: asyncio.Future[bytes] | None = None
        self._gone = False

    async def sync(self) -> None:
        """Return once every WAL frame written so far is on disk.

        A helper that is gone (killed, crashed) is replaced and asked again: the new one's
        sync covers every frame written before it, so no batch fails for that alone.
        Raises `StoreUnavailableError` when the sync itself failed, or no helper answers.
        """
        reply = await self._ask()
        if not reply.startswith((_SYNCED, _FAILED)):
            await self._stop()
            reply = await self._ask()
        if reply == _SYNCED:
            return
        if reply.startswith(_FAILED):
            raise StoreUnavailableError(
                f"the log could not be synced to disk: {reply[1:].decode(errors='replace')}"
            )
        await self._stop()
        why = reply.decode(errors="replace") or "it exited"
        raise StoreUnavailableError(f"the log's sync helper does not answer ({why})")

    async def _ask(self) -> bytes:
        """One request and its reply, starting the helper first if there is none.

        Anything but `.` or `!...` back (end of file, a reset) means the helper is gone.
        """
        if self._gone:
            await self._stop()
        if self._socket is None:
            await self._start()
        assert self._socket is not None  # noqa: S101 - _start sets it
        self._reply = asyncio.get_running_loop().create_future()
        try:
            self._socket.send(_SYNCED)  # one byte into an idle socket: never blocks
            return await self._reply
        except OSError as exc:
            return str(exc).encode()
        finally:
            self._reply = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WalSyncer]:
        """Start the helper now (so the first delivery does not wait for it); stop it after."""
        await self._start()
        try:
            yield self
        finally:
            await self._stop()

    def _on_readable(self) -> None:
        assert self._socket is not None  # noqa: S101 - registered only while it is open
        try:
            reply = self._socket.recv(_MAX_REPLY)
        except BlockingIOError:
            return
        except OSError as exc:
            reply = str(exc).encode()
        if not reply.startswith((_SYNCED, _FAILED)):
            # End of file or a reset: the helper is gone. Stop watching (the socket would
            # stay readable); the next sync starts another.
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._gone = True
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(reply)

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
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_readable)

    async def _stop(self) -> None:
        """Close our end: the helper sees end of file and exits."""
        sock, self._socket = self._socket, None
        process, self._process = self._process, None
        self._gone = False
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
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
