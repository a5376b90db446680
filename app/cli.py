"""`python -m app <command>` (also `bitbybit-mirror`): finds the command and runs it."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.commands import (
    backup,
    changes,
    errors,
    events,
    explore,
    export,
    forget,
    import_,
    rebuild,
    replay,
    send_samples,
    serve,
    status,
    sync,
)
from app.commands.common import ENVIRONMENT_HELP, Command
from app.files import PRIVATE_UMASK
from app.projection.rebuild import RebuildError
from app.settings import SettingsError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

COMMANDS: tuple[Command, ...] = (
    serve,
    status,
    rebuild,
    export,
    import_,
    send_samples,
    backup,
    events,
    errors,
    replay,
    explore,
    forget,
    sync,
    changes,
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, with every option's default and environment variable."""
    parser = argparse.ArgumentParser(
        prog=_program_name(),
        description="Receive BitByBit webhooks into a durable event log and query them as SQL.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version()}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser


def version() -> str:
    """The installed package's version, so it cannot drift from pyproject.toml."""
    try:
        return importlib.metadata.version("bitbybit-mirror")
    except importlib.metadata.PackageNotFoundError:  # a bare checkout on PYTHONPATH
        return "unknown (not installed)"


def _program_name() -> str:
    """What the user typed: the console command, or `python -m app`."""
    typed = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return typed if typed == "bitbybit-mirror" else "python -m app"


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one command; return its exit code."""
    args = build_parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    handlers = {command.NAME: command.run for command in COMMANDS}
    # Whatever a command writes (the databases, their side files, an export, state files
    # yet to come) is private to this user, whatever umask the caller runs with (SPEC §4).
    umask = os.umask(PRIVATE_UMASK)
    try:
        return handlers[args.command](args, environ)
    except (SettingsError, RebuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        os.umask(umask)  # for callers that run commands in their own process, as tests do
