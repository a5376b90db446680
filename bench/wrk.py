"""Driving `wrk` with `post.lua` and reading what its `done()` hook reports."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

LUA_SCRIPT = Path(__file__).resolve().parent / "post.lua"


@dataclasses.dataclass(frozen=True, slots=True)
class WrkResult:
    """What `post.lua`'s `done()` reported for one run."""

    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    accepted: int
    duplicate: int
    wrapped: int
    sent: int
    socket_errors: int
    statuses: str


def parse_wrk(output: str) -> WrkResult:
    """Read the `BENCH key=value ...` line printed by `post.lua`."""
    line = next((x for x in output.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH line:\n{output}")
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    return WrkResult(
        requests=int(fields["requests"]),
        rps=float(fields["rps"]),
        p50_ms=int(fields["p50_us"]) / 1000,
        p90_ms=int(fields["p90_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000,
        max_ms=int(fields["max_us"]) / 1000,
        non2xx=int(fields["non2xx"]),
        accepted=int(fields["accepted"]),
        duplicate=int(fields["duplicate"]),
        wrapped=int(fields["wrapped"]),
        sent=int(fields["sent"]),
        socket_errors=sum(
            int(fields[k]) for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        statuses=fields["statuses"],
    )


def run_wrk(url: str, prefix: Path, args: argparse.Namespace, duration: float) -> WrkResult:
    """One wrk run against `url` with the request files under `prefix`."""
    command = [
        args.wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration:g}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(prefix),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=duration + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return parse_wrk(done.stdout)
