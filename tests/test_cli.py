"""The command line: every command's `--help` works and explains each of its options."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from app.cli import build_parser
from app.eventlog.rows import Delivery
from app.eventlog.store import EventStore
from tests._helpers import DEADLINE_SECONDS, ROOT, app_env

SETPRIV = "/usr/bin/setpriv"
NOBODY = 65534

COMMANDS = (
    "serve",
    "status",
    "rebuild",
    "export",
    "import",
    "send-test",
    "backup",
    "events",
    "errors",
    "replay",
    "explore",
    "forget",
    "sync",
    "changes",
    "publish",
)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public way in
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 0
    return capsys.readouterr().out


def _mentions(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """Every option and positional of `parser` that its help text fails to mention."""
    missing = []
    for action in parser._actions:  # noqa: SLF001
        names = list(action.option_strings) or [str(action.metavar or action.dest)]
        if not any(str(name) in text for name in names):
            missing.append(str(names))
        elif action.help is None:
            missing.append(f"{names} (no help text)")
    return missing


def test_every_command_is_there() -> None:
    """The SPEC's commands, and no others."""
    assert set(_subcommands(build_parser())) == set(COMMANDS)


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m app --help` exits 0 and names each command."""
    text = _help(["--help"], capsys)
    for command in COMMANDS:
        assert command in text
    assert "BITBYBIT_WEBHOOK_SECRET" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_explains_each_option(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`<command> --help` exits 0 and mentions every option, each with a help text."""
    text = _help([command, "--help"], capsys)
    parser = _subcommands(build_parser())[command]
    assert _mentions(parser, text) == []
    assert "--data-dir" in text


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    """No command: a usage error, exit 2."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([])
    assert exited.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["send-test", "--event", "order.nope"],
        ["send-test", "--count", "0"],
        ["send-test", "--count", "many"],
        ["import"],
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown event types, non-positive counts and a missing FILE exit 2 with usage."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_rebuild_takes_several_names_after_one_flag() -> None:
    """`--projection a b` and `--projection a --projection b` both name two projections."""
    parser = build_parser()
    one_flag = parser.parse_args(["rebuild", "--projection", "customers", "orders"])
    repeated = parser.parse_args(["rebuild", "--projection", "customers", "--projection", "orders"])
    assert one_flag.projection == repeated.projection == ["customers", "orders"]


# -- failing well (SPEC §13): one sentence, no traceback, through the real CLI -------------


def _app(
    argv: list[str], *, user: int | None = None, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """`python -m app ARGV` in a process of its own (as `user`, when given)."""
    command = [sys.executable, "-m", "app", *argv]
    if user is not None:
        command = [SETPRIV, f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(
        command,
        cwd=ROOT,
        env=app_env(),
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        check=False,
    )


def _one_sentence(result: subprocess.CompletedProcess[str], code: int, *named: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    for thing in named:
        assert thing in lines[0]


def test_an_out_of_range_port_is_a_usage_error(tmp_path: Path) -> None:
    """`--port 99999` (an OverflowError once): exit 2, naming the port's range."""
    result = _app(["serve", "--port", "99999", "--data-dir", str(tmp_path / "d")])
    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    assert "1-65535" in result.stderr
    assert not (tmp_path / "d").exists()


def test_a_port_in_use_is_named_before_anything_starts(tmp_path: Path) -> None:
    """A port another socket holds: one sentence naming it, and no database created."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = _app(["serve", "--port", port, "--data-dir", str(tmp_path / "d")])
    _one_sentence(result, 1, f"127.0.0.1:{port}", "--port")
    assert '"started"' not in result.stdout
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("command", ["serve", "status", "rebuild", "events"])
def test_a_data_directory_that_is_a_file(tmp_path: Path, command: str) -> None:
    """A file where the data directory should be: one sentence naming it."""
    afile = tmp_path / "afile"
    afile.write_text("")
    result = _app([command, "--data-dir", str(afile)])
    assert "Traceback" not in result.stderr
    assert result.returncode in {1, 2}
    assert str(afile) in result.stderr


def test_a_directory_where_the_log_should_be(tmp_path: Path) -> None:
    """events.db that is a directory: one sentence naming the data directory and the fix."""
    data_dir = tmp_path / "d"
    (data_dir / "events.db").mkdir(parents=True, mode=0o700)
    data_dir.chmod(0o700)
    result = _app(["status", "--data-dir", str(data_dir)])
    _one_sentence(result, 1, str(data_dir))


@pytest.mark.skipif(os.geteuid() != 0 or not Path(SETPRIV).exists(), reason="needs root")
def test_another_users_log_names_the_file_and_the_fix() -> None:
    """A root-owned events.db read by a service user: the directory and chown, no traceback."""
    # Under /tmp itself: pytest's own temporary directories are closed to other users.
    with tempfile.TemporaryDirectory() as parent:
        Path(parent).chmod(0o755)
        data_dir = Path(parent) / "d"
        EventStore.open(data_dir / "events.db").close()
        os.chown(data_dir, NOBODY, NOBODY)  # the service user's directory, root's log
        result = _app(["status", "--data-dir", str(data_dir)], user=NOBODY)
    _one_sentence(result, 1, str(data_dir / "events.db"), "chown")


def test_a_closed_output_pipe_ends_quietly(tmp_path: Path) -> None:
    """`events | head`: the reader leaves early; no BrokenPipeError, nothing on stderr."""
    store = EventStore.open(tmp_path / "events.db")
    body = b'{"id": "c", "note": "' + b"x" * 200 + b'"}'
    store.append(
        [
            Delivery(f"wh_{i}", "customer.created", None, 1, "x", "t=1,v1=x", body, ())
            for i in range(2000)
        ]
    )
    store.close()
    command = ["events", "--json", "--limit", "2000", "--data-dir", str(tmp_path)]
    reader = subprocess.Popen(
        [sys.executable, "-m", "app", *command],
        cwd=ROOT,
        env=app_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline()
        reader.stdout.close()  # as `head -1` does
        _, stderr = reader.communicate(timeout=DEADLINE_SECONDS)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert b"Traceback" not in stderr
    assert b"BrokenPipe" not in stderr
    assert reader.returncode == 1


def _damaged(tmp_path: Path) -> Path:
    data_dir = tmp_path / "d"
    EventStore.open(data_dir / "events.db").close()
    damaged = data_dir / "projections.db"
    damaged.write_bytes(b"not a database at all " * 400)
    damaged.chmod(0o600)
    return data_dir


def test_a_damaged_projections_db_is_one_sentence(tmp_path: Path) -> None:
    """Garbage in projections.db: `errors` says so in one sentence naming the fix, exit 1."""
    data_dir = _damaged(tmp_path)
    result = _app(["errors", "--data-dir", str(data_dir)])
    _one_sentence(result, 1, str(data_dir), "rebuild")


def test_status_reports_a_damaged_projections_db(tmp_path: Path) -> None:
    """`status` reports the damage (SPEC §4) rather than failing, and names `rebuild`."""
    data_dir = _damaged(tmp_path)
    result = _app(["status", "--data-dir", str(data_dir)])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert "rebuild" in output
