"""End to end over a real socket: `python -m app serve` as a separate process."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from tests._helpers import DEADLINE_SECONDS, ServeProcess, log_rows, signed_headers, wait_until

if TYPE_CHECKING:
    from pathlib import Path


def logged(data_dir: Path) -> dict[str, tuple[int, bytes]]:
    rows = log_rows(data_dir, "SELECT webhook_id, position, payload FROM events")
    return {w: (p, b) for w, p, b in rows}


def test_kill_9_loses_no_acknowledged_delivery(tmp_path: Path, servers: list[ServeProcess]) -> None:
    """Every delivery answered 200 before a SIGKILL is in the log after a restart."""
    data_dir = tmp_path / "data"
    server = ServeProcess(data_dir)
    servers.append(server)
    bodies = {f"wh_{i:04d}": json.dumps({"id": f"ord_{i}", "n": i}).encode() for i in range(300)}
    deliveries = {w: (body, signed_headers(body, webhook_id=w)) for w, body in bodies.items()}
    acknowledged: dict[str, int] = {}
    lock = threading.Lock()
    enough = threading.Event()

    def send(webhook_id: str) -> None:
        body, headers = deliveries[webhook_id]
        try:
            status, answer = server.request("POST", "/webhooks", body, headers)
        except (OSError, http.client.HTTPException):
            return  # in flight when the process died: no promise was made
        assert (status, answer["status"]) == (200, "accepted")
        with lock:
            acknowledged[webhook_id] = answer["position"]
            if len(acknowledged) >= 100:
                enough.set()

    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = [pool.submit(send, w) for w in deliveries]
        assert enough.wait(DEADLINE_SECONDS), "fewer than 100 deliveries were acknowledged"
        server.proc.send_signal(signal.SIGKILL)
        for future in futures:
            future.result()
    assert server.proc.wait(DEADLINE_SECONDS) == -signal.SIGKILL
    assert len(acknowledged) >= 100

    restarted = ServeProcess(data_dir)
    servers.append(restarted)
    log = logged(data_dir)
    for webhook_id, position in acknowledged.items():
        assert log[webhook_id] == (position, deliveries[webhook_id][0])
    assert sorted(p for p, _ in log.values()) == list(range(1, len(log) + 1))

    # The restarted service knows them too: a retry is a duplicate at the same position.
    retried = list(acknowledged)[:20]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(lambda w: restarted.request("POST", "/webhooks", *deliveries[w]), retried)
        )
    assert answers == [(200, {"status": "duplicate", "position": acknowledged[w]}) for w in retried]


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_signal_answers_in_flight_requests_then_exits_0(
    tmp_path: Path, servers: list[ServeProcess], ctrl_c: bool
) -> None:
    """SIGTERM or a Ctrl-C: no new connections, the request in flight answered, exit 0.

    A Ctrl-C is SIGINT to the whole process group. The log, written to a file rather
    than a terminal, stays JSON throughout: a line per delivery, and no traceback from
    the live projector's process.
    """
    data_dir = tmp_path / "data"
    server = ServeProcess(data_dir)
    servers.append(server)
    body = b'{"id": "ord_term"}'
    headers = signed_headers(body, webhook_id="wh_term") | {
        "Content-Length": str(len(body)),
        "Host": f"127.0.0.1:{server.port}",
    }
    request = "POST /webhooks HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    # Another writer (a backup, say) holds the log's write lock, so the delivery stays in
    # flight, waiting for its commit, until the test lets it go.
    blocker = sqlite3.connect(data_dir / "events.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_SECONDS) as sock:
            sock.sendall(request.encode() + b"\r\n" + body)
            # A round trip on a later connection: the server has read everything sent before.
            assert server.request("GET", "/healthz")[0] == 200

            if ctrl_c:
                os.killpg(server.proc.pid, signal.SIGINT)
            else:
                server.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: not _accepts(server.port), "the listener to close after the signal")
            assert server.proc.poll() is None, "serve exited with a request still in flight"

            blocker.execute("ROLLBACK")
            response = _read_until(sock, b"}")
    finally:
        blocker.close()
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 200")
    answer = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert answer == {"status": "accepted", "position": 1}
    assert server.proc.wait(DEADLINE_SECONDS) == 0
    assert logged(data_dir) == {"wh_term": (1, body)}
    lines = [json.loads(line) for line in server.log_path.read_bytes().splitlines()]
    [line] = [line for line in lines if line["event"] == "delivery"]
    assert (line["webhook_id"], line["outcome"], line["level"]) == ("wh_term", "accepted", "info")


def _read_until(sock: socket.socket, terminator: bytes) -> bytes:
    data = b""
    while terminator not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False
