"""The benchmarked servers as processes: start, wait for health, stop; and their CPU time."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Block until `url` answers 200, or fail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=1) as answer,  # noqa: S310 - local http URL
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy within {timeout} s")


@contextlib.contextmanager
def started(
    argv: list[str], url: str, env: dict[str, str], log: IO[bytes]
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server for the duration of the block; SIGTERM (then SIGKILL) it afterwards."""
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, process)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU used so far by `pid` itself, and by its children, running or ended.

    Measured per request, CPU is steadier than req/s on a shared machine: it is what a
    change to the code moves, while req/s also moves with whatever else runs. A child
    that ended (a restarted projector) is in `pid`'s own cutime/cstime and counts as a
    child; grandchildren that are still running are not counted (the service starts
    none). For `serve`, the children are its live projector.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    own = children = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a process that ended meanwhile
        if stat.parent.name == str(pid):
            own += (int(fields[11]) + int(fields[12])) / ticks
            children += (int(fields[13]) + int(fields[14])) / ticks
        elif fields[1] == str(pid):
            children += (int(fields[11]) + int(fields[12])) / ticks
    return own, children


@contextlib.contextmanager
def cpu_used(pid: int) -> Iterator[list[float]]:
    """The CPU seconds `pid` and its children spent in the block: [itself, its children]."""
    used: list[float] = []
    own, children = cpu_seconds(pid)
    try:
        yield used
    finally:
        own_after, children_after = cpu_seconds(pid)
        used.extend((own_after - own, children_after - children))


def per_request_us(seconds: float, requests: int) -> float:
    """CPU microseconds per answered request."""
    return seconds * 1e6 / requests if requests else math.nan
