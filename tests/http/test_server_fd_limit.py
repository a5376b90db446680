"""Out of file descriptors, `serve` keeps answering what it holds and recovers (README)."""

from __future__ import annotations

import http.client
import os
import resource
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests._helpers import ServeProcess, signed_headers, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

HEADROOM = 8
HOARD = 40
# CPU `serve` may use in a second while it cannot accept: a spinning accept loop uses it all.
IDLE_CPU_SECONDS = 0.3


def open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hoard(port: int) -> Iterator[socket.socket]:
    """Connections that each send one request and then stay open."""
    for _ in range(HOARD):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        yield sock


def test_out_of_descriptors_it_answers_what_it_holds_and_recovers(tmp_path: Path) -> None:
    """At the fd limit: open connections still answered, no spinning, new ones after."""
    server = ServeProcess(tmp_path / "data")
    held = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        held.request("GET", "/healthz")
        assert held.getresponse().read()
        pid = server.proc.pid
        limit = open_fds(pid) + HEADROOM
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
        sockets = list(hoard(server.port))
        try:
            wait_until(lambda: open_fds(pid) >= limit, "serve to run out of descriptors")
            before = cpu_seconds(pid)
            time.sleep(1)  # a measuring window, not synchronisation
            assert cpu_seconds(pid) - before < IDLE_CPU_SECONDS, "spinning on accept"
            body = b'{"id": "ord_1"}'
            held.request("POST", "/webhooks", body=body, headers=signed_headers(body))
            assert held.getresponse().status == 200, "a held connection still delivers"
        finally:
            for sock in sockets:
                sock.close()
        wait_until(server.healthy, "a new connection to be answered")
    finally:
        held.close()
        server.stop()
