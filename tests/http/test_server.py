"""`serve` as a process: what its log says about where it listens, stops and what it refuses."""

from __future__ import annotations

import json
import signal
import socket
from typing import TYPE_CHECKING, Any

from tests._helpers import DEADLINE_SECONDS, ServeProcess

if TYPE_CHECKING:
    from pathlib import Path


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_listening_refused_and_stopped_are_one_line_each(tmp_path: Path) -> None:
    """A line with the port when listening, one per refused request line, one when stopped."""
    serve = ServeProcess(tmp_path / "data")
    try:
        with socket.create_connection(("127.0.0.1", serve.port), timeout=DEADLINE_SECONDS) as raw:
            raw.sendall(b"GET /\x01bad HTTP/1.1 extra\r\nHost: x\r\n\r\n")
            assert b" 400 " in raw.recv(1024).split(b"\r\n")[0]
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.proc.wait(DEADLINE_SECONDS) == 0
    finally:
        serve.stop()
    text = serve.log_path.read_text()
    assert "Traceback" not in text
    lines = _lines(serve.log_path)
    events = [line["event"] for line in lines]
    [listening] = [line for line in lines if line["event"] == "listening"]
    assert (listening["address"], listening["port"]) == ("127.0.0.1", serve.port)
    assert events.index("listening") > events.index("started")
    [refused] = [line for line in lines if line["event"] == "request_refused"]
    assert refused["peer"] == "127.0.0.1"
    assert refused["status"] == 400
    assert events[-1] == "stopped"
