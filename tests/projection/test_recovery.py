"""A damaged `projections.db`, or one ahead of the log: moved aside, rebuilt, reported."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import sqlite3
from typing import TYPE_CHECKING

import msgspec
import pytest
from structlog.testing import capture_logs

from app import cli
from app.eventlog.store import EventStore
from app.projection import projector, recovery
from app.projection.rebuild import rebuild
from app.settings import Settings
from projections import discover
from tests._helpers import SECRET, delivery, eventually, post, sample, signed_headers

if TYPE_CHECKING:
    from pathlib import Path

    from tests._helpers import MakeClient

CUSTOMERS = 40


def _logged(settings: Settings, count: int = CUSTOMERS, first: int = 0) -> None:
    """`count` customers in the log, projected into projections.db as serve would."""
    store = EventStore.open(settings.events_path)
    try:
        store.append(
            [
                delivery(
                    "customer.created",
                    sample("customer.created", id=f"cust_{i}", email=f"c{i}@example.com"),
                    webhook_id=f"wh-{i}",
                )
                for i in range(first, first + count)
            ]
        )
        conn = projector.connect(settings.projections_path)
        try:
            runner = projector.Projector(conn, store, discover())
            runner.install_all()
            runner.catch_up()
        finally:
            conn.close()
    finally:
        store.close()


def _damage(path: Path, how: str) -> None:
    """Damage a (checkpointed) database file in one of the ways a disk or a person does."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = path.read_bytes()
    if how == "garbage":
        path.write_bytes(b"not a database, whatever it once was" * 200)
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # a page in the middle overwritten: the file still opens, the check fails
        middle = (len(data) // page_size // 2) * page_size
        path.write_bytes(data[:middle] + b"\xff" * page_size + data[middle + page_size :])


def _emails(settings: Settings) -> list[str]:
    conn = sqlite3.connect(f"file:{settings.projections_path}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT email FROM customers ORDER BY email")]
    finally:
        conn.close()


def _set_aside(settings: Settings) -> list[Path]:
    """The databases moved aside (without their `-wal` and `-shm`)."""
    found = settings.data_dir.glob("projections.db.*")
    return sorted(path for path in found if not path.name.endswith(("-wal", "-shm")))


def _status(settings: Settings, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code = cli.main(["status", "--json", "--data-dir", str(settings.data_dir)], environ={})
    assert code == 0
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    return report


DAMAGES = ["garbage", "truncated", "page overwritten"]


@pytest.mark.parametrize("how", DAMAGES)
def test_rebuild_moves_a_damaged_file_aside_and_rebuilds_it(tmp_path: Path, how: str) -> None:
    """Moved aside (kept, byte for byte), one line saying why, and the tables rebuilt."""
    settings = Settings(data_dir=tmp_path)
    _logged(settings)
    expected = _emails(settings)
    _damage(settings.projections_path, how)
    damaged = settings.projections_path.read_bytes()
    with capture_logs() as logs:
        rebuild(settings, discover(), io.StringIO())
    assert _emails(settings) == expected
    [aside] = _set_aside(settings)
    assert aside.name.startswith("projections.db.damaged-")
    assert aside.read_bytes() == damaged
    [line] = [entry for entry in logs if entry["event"] == "projections_moved_aside"]
    assert line["reason"] == "damaged"
    assert str(settings.projections_path) in line["detail"]


@pytest.mark.parametrize("how", DAMAGES)
def test_status_reports_a_damaged_file_instead_of_failing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    settings = Settings(data_dir=tmp_path)
    _logged(settings)
    _damage(settings.projections_path, how)
    before = settings.projections_path.read_bytes()
    report = _status(settings, capsys)
    assert report["projections_db"]["ok"] is False  # type: ignore[index]
    assert report["projections_db"]["problem"] == "damaged"  # type: ignore[index]
    assert settings.projections_path.read_bytes() == before  # status only reads
    assert cli.main(["status", "--data-dir", str(tmp_path)], environ={}) == 0
    assert "moves it aside and rebuilds it" in capsys.readouterr().out


def _restore_older_log(settings: Settings, older: Path) -> None:
    """Put back an older copy of events.db, leaving projections.db as it was."""
    for suffix in ("-wal", "-shm"):
        settings.events_path.with_name(settings.events_path.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(older, settings.events_path)


def _ahead(tmp_path: Path) -> Settings:
    """A projections.db with checkpoints at 60, beside a log restored to its first 40."""
    settings = Settings(secrets=(SECRET,), data_dir=tmp_path / "data")
    _logged(settings)
    older = tmp_path / "older-events.db"
    conn = sqlite3.connect(settings.events_path)
    conn.execute("VACUUM INTO ?", (str(older),))
    conn.close()
    _logged(settings, count=20, first=CUSTOMERS)
    _restore_older_log(settings, older)
    return settings


def test_status_says_a_projections_db_ahead_of_the_log_is_ahead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a silent lag of 0: the checkpoint beyond the head is named."""
    settings = _ahead(tmp_path)
    report = _status(settings, capsys)
    assert report["projections_db"]["problem"] == "ahead"  # type: ignore[index]
    assert "position 60" in report["projections_db"]["detail"]  # type: ignore[index]
    assert "head at 40" in report["projections_db"]["detail"]  # type: ignore[index]


def test_rebuild_moves_a_projections_db_ahead_of_the_log_aside(tmp_path: Path) -> None:
    settings = _ahead(tmp_path)
    with capture_logs() as logs:
        rebuild(settings, discover(), io.StringIO())
    assert len(_emails(settings)) == CUSTOMERS
    [aside] = _set_aside(settings)
    assert aside.name.startswith("projections.db.ahead-")
    assert [e["reason"] for e in logs if e["event"] == "projections_moved_aside"] == ["ahead"]
    assert recovery.diagnose(settings.projections_path, CUSTOMERS) is None


@pytest.mark.parametrize("how", ["garbage", "truncated", "ahead"])
async def test_serve_moves_it_aside_and_projects_new_deliveries(
    tmp_path: Path, make_client: MakeClient, how: str
) -> None:
    """The live projector starts over from the log, and goes on with new deliveries."""
    if how == "ahead":
        settings = _ahead(tmp_path)
    else:
        settings = Settings(secrets=(SECRET,), data_dir=tmp_path / "data")
        _logged(settings)
        _damage(settings.projections_path, how)
    with capture_logs() as logs:
        client = await make_client(settings)
        body = msgspec.json.encode(sample("customer.created", id="cust_new"))
        status, _ = await post(client, body, signed_headers(body, event="customer.created"))
        assert status == 200

        async def emails() -> list[str]:
            try:
                return _emails(settings)
            except sqlite3.DatabaseError:  # the damaged file not yet moved, or new tables not made
                return []

        await eventually(emails, lambda found: len(found) == CUSTOMERS + 1, "the new delivery")
    assert len(_set_aside(settings)) == 1
    reasons = [e["reason"] for e in logs if e["event"] == "projections_moved_aside"]
    assert reasons == ["ahead" if how == "ahead" else "damaged"]


async def test_a_running_serve_follows_a_rebuild_that_moved_the_file_aside(
    tmp_path: Path, make_client: MakeClient
) -> None:
    """The live projector leaves the moved copy and projects into the rebuilt file."""
    settings = Settings(secrets=(SECRET,), data_dir=tmp_path / "data")
    _logged(settings)
    client = await make_client(settings)

    async def emails() -> list[str]:
        try:
            return _emails(settings)
        except sqlite3.OperationalError:  # the new file, its tables not made yet
            return []

    body = msgspec.json.encode(sample("customer.created", id="cust_first"))
    status, _ = await post(client, body, signed_headers(body, event="customer.created"))
    assert status == 200
    # Projected: the live projector has the file open.
    await eventually(emails, lambda found: len(found) == CUSTOMERS + 1, "the first delivery")
    # What `rebuild` does to a damaged or ahead file while serve runs.
    recovery.move_aside(settings.projections_path, recovery.DAMAGED)
    await asyncio.to_thread(rebuild, settings, discover(), io.StringIO())
    body = msgspec.json.encode(sample("customer.created", id="cust_new"))
    status, _ = await post(client, body, signed_headers(body, event="customer.created"))
    assert status == 200
    await eventually(emails, lambda found: len(found) == CUSTOMERS + 2, "the new delivery")
