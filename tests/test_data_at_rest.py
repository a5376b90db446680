"""Data at rest (SPEC §4): private files whatever the umask, and refusals that say the fix.

Tests run as root, which reads any file whatever its mode, so modes are checked with
`os.stat` and the refusals are decided on modes, never on access.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from app import cli
from app.eventlog.store import EventStore
from app.ops import transfer
from app.webhooks import samples
from tests._helpers import ROOT, SECRET, ServeProcess, app_env, signed_headers, wait_until

if TYPE_CHECKING:
    from pathlib import Path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_command(*argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m app ...` in a process of its own, started with umask 0000."""
    return subprocess.run(
        [sys.executable, "-m", "app", *argv],
        cwd=ROOT,
        env=app_env(),
        capture_output=True,
        text=True,
        check=False,
        umask=0,
        timeout=120,
    )


def test_serve_rebuild_and_export_write_only_private_files_under_umask_0000(
    tmp_path: Path, servers: list[ServeProcess]
) -> None:
    """After deliveries, a rebuild and an export: every directory 0700, every file 0600."""
    data_dir = tmp_path / "data"
    previous = os.umask(0)  # inherited by the serve process, the most permissive caller
    try:
        serving = ServeProcess(data_dir)
    finally:
        os.umask(previous)
    servers.append(serving)
    now = 1_705_314_600.0
    for number, event_type in enumerate(samples.EVENT_TYPES):
        body = samples.sample_body(event_type, now)
        headers = signed_headers(body, webhook_id=f"wh_{number}", event=event_type)
        status, answer = serving.request("POST", "/webhooks", body, headers)
        assert (status, answer["status"]) == (200, "accepted")
    wait_until(serving.caught_up, "the live projections")

    rebuilt = run_command("rebuild", "--data-dir", str(data_dir))
    assert rebuilt.returncode == 0, rebuilt.stderr
    export = tmp_path / "exports" / "log.jsonl"
    export.parent.mkdir()
    exported = run_command("export", str(export), "--data-dir", str(data_dir))
    assert exported.returncode == 0, exported.stderr

    modes = {path.name: mode(path) for path in data_dir.iterdir()}
    # The files that matter are all there, side files and the rebuild's lock included.
    assert {
        "events.db",
        "events.db-wal",
        "events.db-shm",
        "projections.db",
        "projections.db-wal",
        "projections.db-shm",
        "rebuild.lock",
    } <= set(modes)
    assert mode(data_dir) == 0o700
    assert modes == dict.fromkeys(modes, 0o600)
    assert mode(export) == 0o600
    assert len(export.read_text(encoding="utf-8").splitlines()) == len(samples.EVENT_TYPES)


def serve(data_dir: Path, *flags: str, **environ: str) -> int:
    """Run `serve` in this process: a refusal returns before anything listens."""
    return cli.main(
        ["serve", "--port", "0", "--data-dir", str(data_dir), *flags],
        environ={"BITBYBIT_WEBHOOK_SECRET": SECRET.decode(), **environ},
    )


def made(tmp_path: Path, dir_mode: int) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(dir_mode)
    return data_dir


def with_log(tmp_path: Path, dir_mode: int, log_mode: int) -> Path:
    """A data directory holding a log, then given these modes."""
    data_dir = made(tmp_path, 0o700)
    EventStore.open(data_dir / "events.db").close()
    (data_dir / "events.db").chmod(log_mode)
    data_dir.chmod(dir_mode)
    return data_dir


def test_serve_refuses_a_world_readable_data_dir_even_when_shared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """0755 exits 2 naming the chmod; the shared flag never accepts what others can read."""
    data_dir = made(tmp_path, 0o755)
    assert serve(data_dir) == 2
    assert f"chmod 700 {data_dir}" in capsys.readouterr().err
    assert serve(data_dir, "--allow-shared-data-dir") == 2
    assert f"chmod 750 {data_dir}" in capsys.readouterr().err
    assert not (data_dir / "events.db").exists()


def test_serve_refuses_a_group_readable_data_dir_without_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """0750 exits 2 naming `chmod 700`, and names the flag that would accept it."""
    data_dir = made(tmp_path, 0o750)
    assert serve(data_dir) == 2
    err = capsys.readouterr().err
    assert f"chmod 700 {data_dir}" in err
    assert "--allow-shared-data-dir" in err
    assert not (data_dir / "events.db").exists()


def test_serve_refuses_an_exposed_database_in_a_private_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An events.db left 0644 (by an earlier release) is named with `chmod 600`."""
    data_dir = with_log(tmp_path, 0o700, 0o644)
    assert serve(data_dir) == 2
    assert f"chmod 600 {data_dir / 'events.db'}" in capsys.readouterr().err


def test_serve_takes_a_group_readable_data_dir_with_the_flag(
    tmp_path: Path, servers: list[ServeProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With BITBYBIT_ALLOW_SHARED_DATA_DIR, 0750 serves, and new files are still 0600."""
    data_dir = made(tmp_path, 0o750)
    monkeypatch.setenv("BITBYBIT_ALLOW_SHARED_DATA_DIR", "1")  # inherited by serve
    servers.append(ServeProcess(data_dir))
    assert mode(data_dir) == 0o750
    assert mode(data_dir / "events.db") == 0o600


@pytest.mark.parametrize("secret_mode", [0o644, 0o640])
@pytest.mark.parametrize("flags", [(), ("--allow-shared-data-dir",)])
def test_serve_refuses_a_secret_file_others_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], secret_mode: int, flags: tuple[str, ...]
) -> None:
    """A secret file readable by anyone but its owner exits 2 with `chmod 600 FILE`."""
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(secret_mode)
    data_dir = tmp_path / "data"
    assert serve(data_dir, *flags, BITBYBIT_WEBHOOK_SECRET_FILE=str(secret)) == 2
    err = capsys.readouterr().err
    assert f"chmod 600 {secret}" in err
    assert "BITBYBIT_WEBHOOK_SECRET_FILE" in err
    assert SECRET.decode() not in err
    assert not data_dir.exists()


@pytest.mark.parametrize(
    "command",
    [["rebuild"], ["import", "missing.jsonl"], ["forget", "--customer", "c", "--yes"], ["sync"]],
)
def test_commands_that_write_refuse_an_exposed_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """`rebuild`, `import`, `forget` and `sync` check before they write, as `serve` does."""
    data_dir = with_log(tmp_path, 0o755, 0o600)
    environ = {"BITBYBIT_API_KEY": "bbb_test_key", "BITBYBIT_API_URL": "http://127.0.0.1:9"}
    assert cli.main([*command, "--data-dir", str(data_dir)], environ=environ) == 2
    assert f"chmod 700 {data_dir}" in capsys.readouterr().err
    assert {p.name for p in data_dir.iterdir()} <= {"events.db", "events.db-wal", "events.db-shm"}


def test_status_shows_the_modes_and_warns_about_wider_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status` reads anyway; it reports each mode and a warning with the fix for wider ones."""
    data_dir = with_log(tmp_path, 0o750, 0o640)

    assert cli.main(["status", "--json", "--data-dir", str(data_dir)], environ={}) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"log", "projections"} <= set(report)
    files = report["files"]
    assert files["modes"]["."] == "0750"
    assert files["modes"]["events.db"] == "0640"
    assert files["private"] is False
    warnings = {w["path"]: (w["fix"], w["accepted"]) for w in files["warnings"]}
    assert warnings[str(data_dir)] == (f"chmod 700 {data_dir}", False)
    assert warnings[str(data_dir / "events.db")] == (f"chmod 600 {data_dir / 'events.db'}", False)

    flags = ["--allow-shared-data-dir", "--data-dir", str(data_dir)]
    assert cli.main(["status", *flags], environ={}) == 0
    text = capsys.readouterr().out
    assert f"files: {data_dir} 0750" in text
    assert "NOT private" in text
    assert f"run `chmod 600 {data_dir / 'events.db'}` (accepted by --allow-shared" in text


def test_status_of_a_private_data_dir_has_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """0700 and 0600 throughout: `private`, and no warning line."""
    data_dir = tmp_path / "data"
    EventStore.open(data_dir / "events.db").close()
    assert cli.main(["status", "--data-dir", str(data_dir)], environ={}) == 0
    text = capsys.readouterr().out
    assert f"files: {data_dir} 0700" in text
    assert ", private" in text
    assert "warning:" not in text  # the line a wider path gets


def test_export_replaces_a_wider_file_with_a_private_one(tmp_path: Path) -> None:
    """Called as a library under umask 0000, `export_to` still writes 0600 over a 0644 file."""
    data_dir = tmp_path / "data"
    EventStore.open(data_dir / "events.db").close()
    target = tmp_path / "log.jsonl"
    target.write_text("an older export\n", encoding="utf-8")
    target.chmod(0o644)
    previous = os.umask(0)
    try:
        assert transfer.export_to(data_dir / "events.db", str(target)) == 0
    finally:
        os.umask(previous)
    assert (mode(target), target.read_bytes()) == (0o600, b"")
