"""End to end over a real socket: `python -m app serve` as a separate process."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import SECRET, signed_headers

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_SECONDS = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds, failing the test after a deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling interval, not synchronisation: the condition decides


class Server:
    """One `python -m app serve` process on a free port."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.log = (data_dir.parent / f"serve-{self.port}.log").open("wb")
        env = {
            **os.environ,
            "BITBYBIT_WEBHOOK_SECRET": SECRET.decode(),
            "PYTHONPATH": str(ROOT),
        }
        env.pop("BITBYBIT_WEBHOOK_SECRET_FILE", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self.healthy, "/healthz")

    def healthy(self) -> bool:
        """Whether /healthz answers 200 yet; fails the test if the process died."""
        if self.proc.poll() is not None:
            pytest.fail(f"serve exited with {self.proc.returncode}")
        try:
            status, _ = self.request("GET", "/healthz")
        except OSError:
            return False
        return status == 200

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request on a fresh connection: the status and the decoded JSON answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE_SECONDS)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def stop(self) -> None:
        """Kill the process if it still runs, and close its log file."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE_SECONDS)
        self.log.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Started servers, all stopped at the end of the test whatever happens."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def logged(data_dir: Path) -> dict[str, tuple[int, bytes]]:
    conn = sqlite3.connect(data_dir / "events.db")
    try:
        rows = conn.execute("SELECT webhook_id, position, payload FROM events").fetchall()
    finally:
        conn.close()
    return {w: (p, b) for w, p, b in rows}


def test_kill_9_loses_no_acknowledged_delivery(tmp_path: Path, servers: list[Server]) -> None:
    """Every delivery answered 200 before a SIGKILL is in the log after a restart."""
    data_dir = tmp_path / "data"
    server = Server(data_dir)
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

    restarted = Server(data_dir)
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


def test_sigterm_answers_in_flight_requests_then_exits_0(
    tmp_path: Path, servers: list[Server]
) -> None:
    """SIGTERM stops new connections, finishes the request in progress with a 200, exits 0."""
    data_dir = tmp_path / "data"
    server = Server(data_dir)
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

            server.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: not _accepts(server.port), "the listener to close after SIGTERM")
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
