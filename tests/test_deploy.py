"""`deploy/`: the systemd unit verifies; Litestream restores every acknowledged delivery."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests._helpers import (
    ROOT,
    DeliverySender,
    ServeProcess,
    app_env,
    processes_mentioning,
    wait_until,
)

DEPLOY = ROOT / "deploy"
INSTALLED_COMMAND = "/opt/bitbybit-mirror/bin/bitbybit-mirror"
LITESTREAM = Path(sys.executable).with_name("litestream")


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing to say about the unit."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip(
            "systemd-analyze is not installed "
            "(apt-get install systemd; scripts/install does so as root)"
        )
    unit = (DEPLOY / "bitbybit-mirror.service").read_text(encoding="utf-8")
    assert INSTALLED_COMMAND in unit
    # verify checks that ExecStart exists: point it at this checkout's console command.
    console = Path(sys.executable).with_name("bitbybit-mirror")
    (tmp_path / "bitbybit-mirror.service").write_text(
        unit.replace(INSTALLED_COMMAND, str(console)), encoding="utf-8"
    )
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "bitbybit-mirror.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    # Unknown keys and bad values are only warnings (exit 0): any word about the unit fails.
    about_unit = [
        line for line in (done.stdout + done.stderr).splitlines() if "bitbybit-mirror" in line
    ]
    assert (done.returncode, about_unit) == (0, [])


def test_unit_keeps_the_service_private() -> None:
    """A dedicated user, a private state directory and umask, the secret as a credential."""
    unit = (DEPLOY / "bitbybit-mirror.service").read_text(encoding="utf-8")
    for line in (
        "User=bitbybit-mirror",
        "StateDirectory=bitbybit-mirror",
        "StateDirectoryMode=0700",
        "UMask=0077",
        "LoadCredential=webhook-secret:",
        "Environment=BITBYBIT_WEBHOOK_SECRET_FILE=%d/webhook-secret",
        "Restart=on-failure",
        "Environment=BITBYBIT_HOST=127.0.0.1",
    ):
        assert f"\n{line}" in unit, line


def _restored_ids(config: Path, events: Path, output: Path) -> set[str]:
    output.unlink(missing_ok=True)
    done = subprocess.run(
        [LITESTREAM, "restore", "-config", str(config), "-o", str(output), str(events)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not output.exists():
        return set()
    conn = sqlite3.connect(output)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {row[0] for row in conn.execute("SELECT webhook_id FROM events")}
    finally:
        conn.close()


def test_litestream_replica_restores_every_acknowledged_delivery(tmp_path: Path) -> None:
    """Replicating while deliveries arrive: the restored log holds every one answered 200."""
    if not LITESTREAM.exists():
        pytest.skip(
            "litestream is not installed (pip install '.[litestream]'; scripts/install does)"
        )
    data_dir = tmp_path / "data"
    serve = ServeProcess(data_dir)
    template = (DEPLOY / "litestream.yml").read_text(encoding="utf-8")
    config = tmp_path / "litestream.yml"
    config.write_text(
        template.replace("/var/lib/bitbybit-mirror", str(data_dir)).replace(
            "/var/backups/bitbybit-mirror", str(tmp_path / "replica")
        ),
        encoding="utf-8",
    )
    events = data_dir / "events.db"
    with (tmp_path / "litestream.log").open("wb") as log:
        replicate = subprocess.Popen(
            [LITESTREAM, "replicate", "-config", str(config)], stdout=log, stderr=log
        )
        sender = DeliverySender(serve)
        try:
            sender.start()
            wait_until(lambda: len(sender.snapshot()) >= 300 or not sender.is_alive(), "deliveries")
            sender.stop.set()
            sender.join()
            acknowledged = set(sender.snapshot())
            restored: set[str] = set()

            def caught_up() -> bool:
                restored.update(_restored_ids(config, events, tmp_path / "restored.db"))
                return acknowledged <= restored

            wait_until(caught_up, "the replica to hold every acknowledged delivery")
        finally:
            sender.stop.set()
            replicate.terminate()
            replicate.wait(20)
            serve.stop()
    assert len(acknowledged) >= 300
    assert sender.refused == 0
    assert acknowledged <= _restored_ids(config, events, tmp_path / "restored.db")


def test_nginx_passes_the_senders_address_on() -> None:
    """Behind nginx, the delivery lines can name the sender: X-Forwarded-For is set."""
    conf = (DEPLOY / "nginx.conf").read_text()
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in conf


def _recipe(document: Path, marker: str) -> str:
    """The one `sh` block of `document` that contains `marker`."""
    blocks = re.findall(r"```sh\n(.*?)```", document.read_text(encoding="utf-8"), re.DOTALL)
    [block] = [str(block) for block in blocks if marker in block]
    return block


def test_the_install_steps_put_the_command_where_the_unit_runs_it() -> None:
    """deploying.md's virtual environment is the directory of the unit's ExecStart."""
    steps = _recipe(ROOT / "docs" / "deploying.md", "python3 -m venv")
    [venv] = re.findall(r"python3 -m venv (\S+)", steps)
    unit = (DEPLOY / "bitbybit-mirror.service").read_text(encoding="utf-8")
    [exec_start] = re.findall(r"^ExecStart=(\S+)", unit, re.MULTILINE)
    assert exec_start == f"{venv}/bin/bitbybit-mirror" == INSTALLED_COMMAND
    assert f"{venv}/bin/pip install" in steps


def test_nginx_conf_says_where_it_goes_and_passes_the_senders_address() -> None:
    conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    assert "inside the `http { }` block" in conf
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in conf


def test_the_documented_litestream_restore_steps_give_a_log_the_service_accepts(
    tmp_path: Path,
) -> None:
    """operations.md's restore, run as written (as root, umask 022) on a replica of our own.

    Only the paths, the user and the `systemctl` lines (serve is started by the test) are
    this test's own. `rebuild` and `status` then work on the restored log, which holds
    every delivery acknowledged before the replica caught up.
    """
    if not LITESTREAM.exists():
        pytest.skip(
            "litestream is not installed (pip install '.[litestream]'; scripts/install does)"
        )
    data_dir = tmp_path / "data"
    config = tmp_path / "litestream.yml"
    config.write_text(
        (DEPLOY / "litestream.yml")
        .read_text(encoding="utf-8")
        .replace("/var/lib/bitbybit-mirror", str(data_dir))
        .replace("/var/backups/bitbybit-mirror", str(tmp_path / "replica")),
        encoding="utf-8",
    )
    events = data_dir / "events.db"
    serve = ServeProcess(data_dir)
    with (tmp_path / "litestream.log").open("wb") as log:
        replicate = subprocess.Popen(
            [LITESTREAM, "replicate", "-config", str(config)], stdout=log, stderr=log
        )
        sender = DeliverySender(serve)
        try:
            sender.start()
            wait_until(lambda: len(sender.snapshot()) >= 50 or not sender.is_alive(), "deliveries")
            sender.stop.set()
            sender.join()
            acknowledged = set(sender.snapshot())
            wait_until(
                lambda: acknowledged <= _restored_ids(config, events, tmp_path / "probe.db"),
                "the replica to hold every acknowledged delivery",
            )
        finally:
            sender.stop.set()
            replicate.terminate()
            replicate.wait(20)
            serve.stop()
    # serve's projector closes its connection (checkpointing into the file) once serve is
    # gone: only then is the file as the test leaves it.
    wait_until(lambda: not processes_mentioning(str(data_dir)), "serve's processes to end")
    events.write_bytes(b"a damaged log" * 100)

    steps = _recipe(ROOT / "docs" / "operations.md", "litestream restore")
    for documented, ours in (
        ("/opt/bitbybit-mirror/bin/litestream", str(LITESTREAM)),
        ("/etc/litestream.yml", str(config)),
        ("/var/lib/bitbybit-mirror", str(data_dir)),
        ("bitbybit-mirror:bitbybit-mirror", f"{os.getuid()}:{os.getgid()}"),
    ):
        assert documented in steps
        steps = steps.replace(documented, ours)
    script = "\n".join(line for line in steps.splitlines() if not line.startswith("systemctl"))
    done = subprocess.run(
        ["/bin/bash", "-euo", "pipefail", "-c", f"umask 022\n{script}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (data_dir / "events.db.damaged").read_bytes() == b"a damaged log" * 100

    for command in (["rebuild"], ["status", "--json"]):
        ran = subprocess.run(
            [sys.executable, "-m", "app", *command, "--data-dir", str(data_dir)],
            cwd=ROOT,
            env=app_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
    conn = sqlite3.connect(f"file:{events}?mode=ro", uri=True)
    try:
        restored = {row[0] for row in conn.execute("SELECT webhook_id FROM events")}
    finally:
        conn.close()
    assert acknowledged <= restored
    assert len(acknowledged) >= 50
