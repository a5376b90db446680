"""`deploy/`: the systemd unit verifies; Litestream restores every acknowledged delivery."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests._helpers import ROOT, DeliverySender, ServeProcess, wait_until

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
