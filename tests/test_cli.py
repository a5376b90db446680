"""The command line: every command's `--help` works and explains each of its options."""

from __future__ import annotations

import argparse

import pytest

from app.cli import build_parser

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
