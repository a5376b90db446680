"""`serve` publishing continuously, and `publish --once`, against a real PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from typing import TYPE_CHECKING, Any

import psycopg

from app.publish.runner import ONCE_RETRIES
from tests._helpers import (
    ALICE,
    FORGOTTEN,
    KEPT,
    ROOT,
    DeliverySender,
    ServeProcess,
    app_env,
    populate_people,
    wait_until,
)
from tests._postgres import running_server

if TYPE_CHECKING:
    from pathlib import Path


def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute(query).fetchall()
    except psycopg.errors.UndefinedTable:
        return []


def _metric(server: ServeProcess, name: str) -> float | None:
    """One unlabelled sample of serve's /metrics, None while it has none."""
    url = f"http://127.0.0.1:{server.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        found = re.search(rf"^{name} (\S+)$", answer.read().decode(), re.MULTILINE)
    return None if found is None else float(found.group(1))


def _publish_status(data_dir: Path) -> tuple[int | None, str | None]:
    """`status --json`'s publish lag and error."""
    status = _app("status", "--json", "--data-dir", str(data_dir), env=app_env())
    published = json.loads(status.stdout)["publish"]
    return published["lag"], published["error"]


def _app(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_serve_publishes_and_a_forget_reaches_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """With BITBYBIT_PUBLISH_URL, the tables reach PostgreSQL, and so does a forget."""
    schema = "serve_publish"
    data_dir = tmp_path / "data"
    populate_people(data_dir)
    env = {"BITBYBIT_PUBLISH_URL": postgres_url, "BITBYBIT_PUBLISH_SCHEMA": schema}
    server = ServeProcess(data_dir, env)
    try:
        customers = f"SELECT id, email FROM {schema}.customers ORDER BY id"
        wait_until(
            lambda: {row[0] for row in _rows(postgres_url, customers)} >= {FORGOTTEN, KEPT},
            "the customers in PostgreSQL",
        )
        assert (FORGOTTEN, ALICE["email"]) in _rows(postgres_url, customers)
        # VACUUM FULL writes each table anew, in a file of its own.
        files = f"SELECT pg_relation_filenode('{schema}.customers')"
        before = _rows(postgres_url, files)
        forgotten = _app(
            "forget",
            "--customer",
            FORGOTTEN,
            "--yes",
            "--data-dir",
            str(data_dir),
            env={**app_env(), **env},
        )
        assert forgotten.returncode == 0, forgotten.stderr
        wait_until(
            lambda: (FORGOTTEN, None) in _rows(postgres_url, customers),
            "the forget in PostgreSQL",
        )
        wait_until(
            lambda: _rows(postgres_url, files) != before,
            "the forgotten customer's old row versions rewritten away",
        )
        dumped = json.dumps(_rows(postgres_url, f"SELECT * FROM {schema}.orders"), default=str)
        assert ALICE["shipping_street"] not in dumped
        status = _app("status", "--json", "--data-dir", str(data_dir), env=app_env())
        assert status.returncode == 0, status.stderr
        published = json.loads(status.stdout)["publish"]
        assert published["cursor"] is not None
        assert published["error"] is None
        assert _metric(server, "bitbybit_publish_lag") is not None
        assert _metric(server, "bitbybit_publish_errors_total") == 0
    finally:
        server.stop()
    password = postgres_url.split("@", maxsplit=1)[0].rsplit(":", 1)[-1]
    assert password.encode() not in server.log_path.read_bytes()


def test_publish_once_after_a_forget_rewrites_the_tables_it_reached(
    tmp_path: Path, postgres_url: str
) -> None:
    """A forget made while no publisher ran: the next `publish --once` rewrites, once."""
    data_dir = tmp_path / "data"
    populate_people(data_dir)
    env = {**app_env(), "BITBYBIT_PUBLISH_URL": postgres_url}
    publish = ("publish", "--once", "--schema", "cron", "--data-dir", str(data_dir))
    assert _app(*publish, env=env).returncode == 0
    files = "SELECT pg_relation_filenode('cron.customers')"
    before = _rows(postgres_url, files)
    forget = ("forget", "--customer", FORGOTTEN, "--yes", "--data-dir", str(data_dir))
    forgotten = _app(*forget, env=env)
    assert forgotten.returncode == 0, forgotten.stderr
    once = _app(*publish, env=env)
    assert once.returncode == 0, once.stderr
    assert (FORGOTTEN, None) in _rows(postgres_url, "SELECT id, email FROM cron.customers")
    rewritten = _rows(postgres_url, files)
    assert rewritten != before
    assert '"publish_vacuumed"' in once.stderr + once.stdout
    assert _app(*publish, env=env).returncode == 0
    assert _rows(postgres_url, files) == rewritten


def test_operator_mistakes_are_one_sentence(tmp_path: Path, postgres_url: str) -> None:
    """A schema too long, nothing projected yet, a bad URL file beside --to, a bad URL."""
    data_dir = tmp_path / "data"
    populate_people(data_dir)
    to = ("publish", "--once", "--to", postgres_url, "--data-dir", str(data_dir))
    too_long = _app(*to, "--schema", "s" * 60, env=app_env())
    assert too_long.returncode == 2
    assert too_long.stderr.startswith("error: --schema must be a schema name of 1 to 53 bytes")
    unreadable = tmp_path / "url"
    unreadable.write_text(postgres_url, encoding="utf-8")
    unreadable.chmod(0o644)
    flag_wins = _app(
        *to, "--schema", "flag", env={**app_env(), "BITBYBIT_PUBLISH_URL_FILE": str(unreadable)}
    )
    assert flag_wins.returncode == 0, flag_wins.stderr
    for suffix in ("", "-wal", "-shm"):
        (data_dir / f"projections.db{suffix}").unlink(missing_ok=True)
    nothing = _app(*to, env=app_env())
    assert nothing.returncode == 1
    assert "projections.db is missing): start serve, or run rebuild, first" in nothing.stderr
    bad_url = "postgres:/mirror:s3cret-pw@host/db"
    server = ServeProcess(data_dir, {"BITBYBIT_PUBLISH_URL": bad_url})
    try:
        wait_until(lambda: _publish_status(data_dir)[1] is not None, "the error in status")
        assert "BITBYBIT_PUBLISH_URL" in (_publish_status(data_dir)[1] or "")
        assert server.healthy()
    finally:
        server.stop()
    log = server.log_path.read_bytes()
    assert b"s3cret-pw" not in log
    assert b"Traceback" not in log
    for output in (too_long, nothing):
        assert "Traceback" not in output.stderr


def test_status_reports_a_damaged_projections_db_beside_publish_json(
    tmp_path: Path, postgres_url: str
) -> None:
    """A cursor in publish.json and a damaged projections.db: the lag is unknown, no failure."""
    data_dir = tmp_path / "data"
    populate_people(data_dir)
    env = {**app_env(), "BITBYBIT_PUBLISH_URL": postgres_url}
    publish = ("publish", "--once", "--schema", "damaged", "--data-dir", str(data_dir))
    assert _app(*publish, env=env).returncode == 0
    (data_dir / "projections.db").write_bytes(b"not a database at all" * 1000)
    status = _app("status", "--json", "--data-dir", str(data_dir), env=app_env())
    assert status.returncode == 0, status.stderr
    published = json.loads(status.stdout)["publish"]
    assert published["cursor"] is not None
    assert published["lag"] is None


def test_publish_once_catches_up_and_says_when_it_cannot(tmp_path: Path, postgres_url: str) -> None:
    """`publish --once` applies the feed and exits 0; an unreachable server is exit 1."""
    data_dir = tmp_path / "data"
    populate_people(data_dir)
    once = _app(
        "publish",
        "--once",
        "--schema",
        "once",
        "--data-dir",
        str(data_dir),
        env={**app_env(), "BITBYBIT_PUBLISH_URL": postgres_url},
    )
    assert once.returncode == 0, once.stderr
    assert len(_rows(postgres_url, "SELECT id FROM once.customers")) >= 2
    unreachable = "postgresql://mirror:s3cret-pw@127.0.0.1:9/shop"
    failed = _app(
        "publish", "--once", "--to", unreachable, "--data-dir", str(data_dir), env=app_env()
    )
    assert failed.returncode == 1
    assert (failed.stderr + failed.stdout).count('"publish_failed"') == ONCE_RETRIES + 1
    assert "Traceback" not in failed.stderr
    assert "s3cret-pw" not in failed.stderr + failed.stdout


def test_postgresql_stopped_and_started_again_while_deliveries_arrive(tmp_path: Path) -> None:
    """Deliveries go on being acknowledged; the publisher retries, then catches up on all."""
    data_dir = tmp_path / "data"
    query = "SELECT id FROM restart.customers"
    with running_server() as postgres:  # a server of its own: this test stops it
        env = {"BITBYBIT_PUBLISH_URL": postgres.url, "BITBYBIT_PUBLISH_SCHEMA": "restart"}
        server = ServeProcess(data_dir, env)
        sender = DeliverySender(server)
        sender.start()
        try:
            wait_until(lambda: len(_rows(postgres.url, query)) >= 20, "the first rows published")
            postgres.stop()
            during = len(sender.snapshot())
            wait_until(
                lambda: (_metric(server, "bitbybit_publish_errors_total") or 0) > 0,
                "the publisher noticing PostgreSQL gone",
            )
            wait_until(lambda: len(sender.snapshot()) >= during + 50, "deliveries meanwhile")
            postgres.resume()
            wait_until(lambda: len(sender.snapshot()) >= during + 100, "deliveries after")
        finally:
            sender.stop.set()
            sender.join(timeout=30)
        try:
            acknowledged = {f"cust_{wh.removeprefix('wh_')}" for wh in sender.snapshot()}
            assert sender.refused == 0
            # The backoff waits at most 30 s between tries: a longer deadline than usual.
            deadline = time.monotonic() + 90
            while {row[0] for row in _rows(postgres.url, query)} != acknowledged:
                assert time.monotonic() < deadline, "every acknowledged delivery published"
                time.sleep(0.1)
            # publish.json is written just after the commit that made the rows visible.
            wait_until(lambda: _publish_status(data_dir) == (0, None), "status: no lag, no error")
            assert (_metric(server, "bitbybit_publish_errors_total") or 0) >= 1
        finally:
            server.stop()
    assert postgres.password.encode() not in server.log_path.read_bytes()
