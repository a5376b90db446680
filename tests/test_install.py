"""Run like an installed service: the console command, `--version`, host, port and log level."""

from __future__ import annotations

import http.client
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings, SettingsError
from tests._helpers import ROOT, app_env, free_port, wait_until

CONSOLE_COMMAND = Path(sys.executable).with_name("bitbybit-mirror")


def test_console_command_prints_the_package_version() -> None:
    """`bitbybit-mirror --version` is installed beside Python and names the metadata version."""
    assert CONSOLE_COMMAND.exists(), "pip install . puts the console command beside python"
    done = subprocess.run(
        [CONSOLE_COMMAND, "--version"], capture_output=True, text=True, check=False, env=app_env()
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"bitbybit-mirror {importlib.metadata.version('bitbybit-mirror')}"


def test_console_command_runs_the_same_cli() -> None:
    """`bitbybit-mirror status --help` is `python -m app status --help`."""
    console = subprocess.run(
        [CONSOLE_COMMAND, "status", "--help"], capture_output=True, text=True, check=True
    )
    module = subprocess.run(
        [sys.executable, "-m", "app", "status", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    # The same words; the usage wraps at other places for a program name of another length.
    assert (
        console.stdout.replace("bitbybit-mirror", "python -m app").split() == module.stdout.split()
    )


class TestEnvironment:
    """BITBYBIT_HOST, BITBYBIT_PORT and BITBYBIT_LOG_LEVEL, with flags winning."""

    def test_defaults(self) -> None:
        """Loopback, 8080, info."""
        settings = Settings.from_env({})
        assert (settings.host, settings.port, settings.log_level) == ("127.0.0.1", 8080, "info")

    def test_variables_are_read(self) -> None:
        """Each variable sets its setting; the level in any case."""
        settings = Settings.from_env(
            {"BITBYBIT_HOST": "localhost", "BITBYBIT_PORT": "9001", "BITBYBIT_LOG_LEVEL": "WARNING"}
        )
        assert (settings.host, settings.port, settings.log_level) == ("localhost", 9001, "warning")

    def test_flags_win(self) -> None:
        """A flag given beats its variable."""
        environ = {"BITBYBIT_HOST": "localhost", "BITBYBIT_PORT": "9001", "BITBYBIT_LOG_LEVEL": "x"}
        settings = Settings.from_env(environ, host="::1", port=9002, log_level="error")
        assert (settings.host, settings.port, settings.log_level) == ("::1", 9002, "error")

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("BITBYBIT_PORT", "http"),
            ("BITBYBIT_PORT", "0"),
            ("BITBYBIT_PORT", "70000"),
            ("BITBYBIT_LOG_LEVEL", "loud"),
        ],
    )
    def test_bad_values_name_the_variable(self, name: str, value: str) -> None:
        """A port that is no port, or an unknown level, is refused naming the variable."""
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})


def test_serve_listens_where_the_environment_says(tmp_path: Path) -> None:
    """`serve` without --host/--port answers on BITBYBIT_HOST:BITBYBIT_PORT."""
    port = free_port()
    env = {
        **app_env(),
        "BITBYBIT_HOST": "127.0.0.1",
        "BITBYBIT_PORT": str(port),
        "BITBYBIT_LOG_LEVEL": "warning",
        "BITBYBIT_DATA_DIR": str(tmp_path / "data"),
    }
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            wait_until(lambda: _healthz(port) == 200 or proc.poll() is not None, "/healthz")
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        finally:
            proc.kill()
            proc.wait()
    # At warning, a quiet start writes no info lines.
    assert '"level":"info"' not in (tmp_path / "serve.log").read_text()


def _healthz(port: int) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()
