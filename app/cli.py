"""`python -m app <command>` (also `bitbybit-mirror`): finds the command and runs it."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from app.commands import export, import_, rebuild, send_samples, serve, status, sync
from app.commands.common import ENVIRONMENT_HELP, Command
from app.projection.rebuild import RebuildError
from app.settings import SettingsError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

COMMANDS: tuple[Command, ...] = (serve, status, rebuild, export, import_, send_samples, sync)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, with every option's default and environment variable."""
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Receive BitByBit webhooks into a durable event log and query them as SQL.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one command; return its exit code."""
    args = build_parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    handlers = {command.NAME: command.run for command in COMMANDS}
    try:
        return handlers[args.command](args, environ)
    except (SettingsError, RebuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
