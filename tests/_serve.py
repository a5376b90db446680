"""`python -m app serve` as a real process on a free port, for the end-to-end tests."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests._helpers import DEADLINE_SECONDS, wait_until
from tests.conftest import SECRET

if TYPE_CHECKING:
    from collections.abc import Mapping

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def app_env() -> dict[str, str]:
    """The environment a started command runs with: this checkout and the test secret."""
    env = {**os.environ, "BITBYBIT_WEBHOOK_SECRET": SECRET.decode(), "PYTHONPATH": str(ROOT)}
    env.pop("BITBYBIT_WEBHOOK_SECRET_FILE", None)
    return env


class ServeProcess:
    """One `python -m app serve` process, started and waited for until /healthz answers."""

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = data_dir.parent / f"serve-{self.port}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "app", "serve"),
                *("--port", str(self.port), "--data-dir", str(data_dir)),
            ],
            cwd=ROOT,
            env={**app_env(), **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            # A process group of its own, as on a terminal: a test can Ctrl-C all of it.
            start_new_session=True,
        )
        try:
            wait_until(self.healthy, "/healthz")
        except BaseException:
            # The caller gets no object to stop: stopped here, or it would outlive the test.
            self.stop()
            raise

    def healthy(self) -> bool:
        """Whether /healthz answers 200 yet; fails the test if the process died."""
        if self.proc.poll() is not None:
            pytest.fail(f"serve exited with {self.proc.returncode}")
        try:
            status, _ = self.request("GET", "/healthz")
        except OSError:
            return False
        return status == 200

    def caught_up(self) -> bool:
        """/readyz reports every projection at lag 0."""
        status, answer = self.request("GET", "/readyz")
        return status == 200 and all(p["lag"] == 0 for p in answer["projections"])

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
