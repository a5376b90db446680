"""`backup`: a checked copy of the live log holding every delivery acknowledged before it."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from typing import TYPE_CHECKING

import msgspec
import pytest

from app.eventlog.rows import Delivery
from app.eventlog.store import EventStore
from app.ops.backup import BackupError, backup
from tests._helpers import ROOT, DeliverySender, ServeProcess, app_env

if TYPE_CHECKING:
    from pathlib import Path


def _run_backup(data_dir: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "backup", str(dest), "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=app_env(),
        capture_output=True,
        text=True,
        check=False,
    )


def test_backup_while_deliveries_arrive(tmp_path: Path) -> None:
    """The copy passes integrity_check, is 0600, and holds every delivery acked before it."""
    data_dir = tmp_path / "data"
    serve = ServeProcess(data_dir)
    sender = DeliverySender(serve)
    try:
        sender.start()
        while len(sender.snapshot()) < 50 and sender.is_alive():
            sender.join(0.01)
        before = sender.snapshot()
        dest = tmp_path / "events-backup.db"
        done = _run_backup(data_dir, dest)
    finally:
        sender.stop.set()
        sender.join()
        serve.stop()
    assert done.returncode == 0, done.stderr
    assert "integrity_check: ok" in done.stdout
    assert "events:" in done.stdout
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    conn = sqlite3.connect(dest)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        copied = {row[0] for row in conn.execute("SELECT webhook_id FROM events")}
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema")}
    finally:
        conn.close()
    assert set(before) <= copied
    assert {"events", "conflicting_duplicates", "accepted_digests"} <= tables
    # The backup made no delivery fail.
    assert sender.refused == 0


def test_backup_refuses_to_overwrite(tmp_path: Path) -> None:
    """An existing DEST is left as it was, and the command exits 2 naming it."""
    store = EventStore.open(tmp_path / "events.db")
    store.close()
    dest = tmp_path / "kept.db"
    dest.write_bytes(b"precious")
    done = _run_backup(tmp_path, dest)
    assert done.returncode == 2
    assert "already exists" in done.stderr
    assert dest.read_bytes() == b"precious"


def test_backup_copies_every_row(tmp_path: Path) -> None:
    """Events and conflicting duplicates alike are in the copy, counted in the report."""
    store = EventStore.open(tmp_path / "events.db")
    deliveries = [
        Delivery(
            f"wh_{n}",
            "order.created",
            None,
            1,
            "2024-01-15T10:30:00.000Z",
            "t=1,v1=a",
            b"{}",
            (f"{n:064x}",),
        )
        for n in range(3)
    ]
    store.append(deliveries)
    store.append([msgspec.structs.replace(deliveries[0], payload=b'{"other": 1}')])
    store.close()
    report = backup(tmp_path / "events.db", tmp_path / "copy.db")
    assert report.tables["events"] == 3
    assert report.tables["conflicting_duplicates"] == 1
    assert report.head == 3
    assert not list(tmp_path.glob(".copy.db.partial"))


def test_backup_without_a_log(tmp_path: Path) -> None:
    """No events.db: a precise error, and no file made at the destination."""
    with pytest.raises(BackupError, match="no event log"):
        backup(tmp_path / "events.db", tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()
