"""`python -m app <command>` (also `bitbybit-mirror`): finds the command and runs it."""

from __future__ import annotations

import argparse
import getpass
import importlib.metadata
import os
import sqlite3
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
    publish,
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
from app.settings import DEFAULT_DATA_DIR, SettingsError

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
    publish,
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
    except BrokenPipeError:
        # `events | head`: the reader has all it wanted. Quiet, as Unix tools are; the
        # rest of the output goes nowhere, so the interpreter's own flush cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    except (OSError, sqlite3.Error) as exc:
        # The environment, not a bug (SPEC §13): one sentence naming the thing and the fix.
        data_dir = getattr(args, "data_dir", None) or environ.get("BITBYBIT_DATA_DIR")
        print(f"error: {environment_problem(exc, data_dir or DEFAULT_DATA_DIR)}", file=sys.stderr)
        return 1
    finally:
        os.umask(umask)  # for callers that run commands in their own process, as tests do


def environment_problem(  # noqa: PLR0911 - one sentence per kind of failure
    exc: OSError | sqlite3.Error, data_dir: str
) -> str:
    """One sentence for an operating-system or SQLite failure: what, where, and the fix."""
    user = getpass.getuser()
    own = (
        f"run as the user that owns {data_dir}, or give it to {user}: "
        f"chown -R {user} {data_dir} && chmod 700 {data_dir} && chmod 600 {data_dir}/*"
    )
    if isinstance(exc, NotADirectoryError | FileExistsError):
        return (
            f"{exc.filename or data_dir} is not a directory: point --data-dir "
            "(BITBYBIT_DATA_DIR) at a directory, or move the file out of the way"
        )
    if isinstance(exc, PermissionError):
        return f"permission denied on {exc.filename or data_dir}: {own}"
    if isinstance(exc, OSError):
        return f"{exc.filename or data_dir}: {exc.strerror or exc}"
    text = str(exc)
    if "unable to open database file" in text or "readonly database" in text:
        return f"cannot open {_unreachable(data_dir)} ({text}): {own}"
    if "not a database" in text or "malformed" in text:
        return (
            f"a database in {data_dir} is damaged ({text}): projections.db can be deleted "
            "and made again with `rebuild`; events.db must be restored from a backup"
        )
    if "disk is full" in text or "disk I/O" in text:
        return f"cannot write in {data_dir} ({text}): free some space or check the disk"
    return f"the databases in {data_dir} cannot be used: {text}"


def _unreachable(data_dir: str) -> str:
    """The database file this user cannot read and write, else the directory holding them."""
    for name in ("events.db", "projections.db"):
        path = os.path.join(data_dir, name)  # noqa: PTH118 - a plain string for the message
        if os.path.lexists(path) and not os.access(path, os.R_OK | os.W_OK):
            return path
    return f"a database in {data_dir}"
