"""Raw HTTP over a socket: requests with bytes aiohttp's client refuses to send.

`exchange` (blocking, for a `serve` subprocess) and `exchange_async` (for a server in the
test's own event loop) share one reader, which stops at the end of the first answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
from typing import Any

HEAD_END = b"\r\n\r\n"


@dataclasses.dataclass(frozen=True)
class RawAnswer:
    """The first response on a connection."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type without parameters."""
        return self.headers.get("content-type", "").partition(";")[0].strip()

    def json(self) -> Any:
        """The decoded body; fails the test if it is not JSON."""
        assert self.content_type == "application/json", (self.status, self.body)
        return json.loads(self.body)


def build_request(
    headers: list[tuple[bytes, bytes]], body: bytes, path: bytes = b"/webhooks"
) -> bytes:
    """A POST with exactly these header lines (no Content-Length unless given) and body."""
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + HEAD_END + body


@dataclasses.dataclass
class _Reader:
    """Bytes read so far, and whether they hold a whole first answer."""

    data: bytes = b""

    def answer(self) -> RawAnswer | None:
        head, sep, rest = self.data.partition(HEAD_END)
        if not sep:
            return None
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            return None
        return RawAnswer(int(status_line.split(" ")[1]), headers, rest[:length])


def exchange(port: int, data: bytes, timeout: float = 10.0) -> RawAnswer | None:
    """Send `data`, and read until the first answer is whole, the peer closes or time is up."""
    reader = _Reader()
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        while (answer := reader.answer()) is None:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return None
            if not chunk:
                return None
            reader.data += chunk
        return answer


async def exchange_async(
    port: int | None, data: bytes, wait: float = 10.0
) -> tuple[RawAnswer | None, bool]:
    """Send `data`; the first answer (None if none came) and whether the server then closed.

    Waits up to `wait` seconds for the server to close the connection after its answer.
    `port` is a test server's, which is None only before it starts.
    """
    assert port is not None
    stream, writer = await asyncio.open_connection("127.0.0.1", port)
    reader = _Reader()
    closed = False
    try:
        writer.write(data)
        async with asyncio.timeout(wait):
            while chunk := await stream.read(65536):
                reader.data += chunk
            closed = True
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        writer.close()
    return reader.answer(), closed
