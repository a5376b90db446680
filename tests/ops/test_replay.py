"""`replay`: stored deliveries, re-signed, make a second installation's tables equal the first's."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from app.eventlog.store import EventStore
from app.ops import send
from app.webhooks.samples import EVENT_TYPES
from projections import discover
from tests._helpers import (
    OTHER_SECRET,
    ROOT,
    SECRET,
    ServeProcess,
    app_env,
    event_rows,
    free_port,
    populate_examples,
    wait_until,
)

if TYPE_CHECKING:
    from pathlib import Path


def _replay(data_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "replay", *argv, "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=app_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _tables(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every user-facing projection table, sorted, read directly."""
    conn = sqlite3.connect(data_dir / "projections.db")
    try:
        names = [
            name for p in discover() for name in p.TABLE.table_names if not name.startswith("_")
        ]
        return {name: sorted(conn.execute(f"SELECT * FROM {name}"), key=repr) for name in names}
    finally:
        conn.close()


def _populate(serve: ServeProcess) -> None:
    url = f"http://127.0.0.1:{serve.port}/webhooks"
    results = asyncio.run(send.send(url, SECRET, EVENT_TYPES, count=2, stream=io.StringIO()))
    assert all(r.accepted for r in results)
    wait_until(serve.caught_up, "the first installation's projections")


def test_replay_into_a_second_serve_makes_equal_tables(tmp_path: Path) -> None:
    """Every delivery arrives with its id, headers and body; the tables come out equal."""
    first, second = ServeProcess(tmp_path / "first"), ServeProcess(tmp_path / "second")
    try:
        _populate(first)
        url = f"http://127.0.0.1:{second.port}/webhooks"
        done = _replay(
            tmp_path / "first", "--to", url, "--secret", SECRET.decode(), "--rate", "500"
        )
        wait_until(second.caught_up, "the second installation's projections")
        again = _replay(
            tmp_path / "first", "--to", url, "--secret", SECRET.decode(), "--rate", "500"
        )
    finally:
        first.stop()
        second.stop()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 * len(EVENT_TYPES)
    assert all("  200  " in line and '"accepted"' in line for line in lines)
    assert event_rows(tmp_path / "second") == event_rows(tmp_path / "first")
    assert _tables(tmp_path / "second") == _tables(tmp_path / "first")
    assert _tables(tmp_path / "first")["orders"]
    # Replayed again: the receiver keeps each webhook id once and says so.
    assert again.returncode == 0
    assert all('"duplicate"' in line for line in again.stdout.splitlines())


def test_filters_and_a_wrong_secret(tmp_path: Path) -> None:
    """--type and --id pick deliveries; answers that are not 2xx make the exit code 1."""
    serve = ServeProcess(tmp_path / "data")
    try:
        _populate(serve)
        url = f"http://127.0.0.1:{serve.port}/webhooks"
        wrong = _replay(
            tmp_path / "data",
            "--to",
            url,
            "--secret",
            OTHER_SECRET.decode(),
            "--type",
            "order.created",
        )
        ids = [row[1] for row in event_rows(tmp_path / "data")[:3]]
        picked = _replay(tmp_path / "data", "--to", url, "--secret", SECRET.decode(), "--id", *ids)
    finally:
        serve.stop()
    assert wrong.returncode == 1
    assert [line.split()[1] for line in wrong.stdout.splitlines()] == ["order.created"] * 2
    assert all(
        "  401  " in line and "invalid_signature" in line for line in wrong.stdout.splitlines()
    )
    assert picked.returncode == 0
    assert [line.split()[2] for line in picked.stdout.splitlines()] == ids


def test_unreachable_endpoint_exits_1(tmp_path: Path) -> None:
    """Nothing listening: one error naming the URL, exit 1."""
    populate_examples(tmp_path)
    url = f"http://127.0.0.1:{free_port()}/webhooks"
    done = _replay(tmp_path, "--to", url, "--secret", SECRET.decode())
    assert done.returncode == 1
    assert f"cannot deliver to {url}" in done.stderr


def test_no_secret_is_refused(tmp_path: Path) -> None:
    """Without --secret or BITBYBIT_REPLAY_SECRET nothing is sent: exit 2 naming both."""
    EventStore.open(tmp_path / "events.db").close()
    done = _replay(tmp_path, "--to", "http://127.0.0.1:9/webhooks")
    assert done.returncode == 2
    assert "--secret" in done.stderr
    assert "BITBYBIT_REPLAY_SECRET" in done.stderr
