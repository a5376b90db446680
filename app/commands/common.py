"""What every command's parser shares: `--data-dir` and the environment's help."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Protocol

from app.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    Commands = argparse._SubParsersAction[argparse.ArgumentParser]  # noqa: SLF001


class Command(Protocol):
    """What `app.cli` needs of a command module."""

    NAME: str

    def register(self, commands: Commands) -> None:
        """Add the command's subparser and options."""

    def run(self, args: argparse.Namespace, environ: Mapping[str, str]) -> int:
        """Do the command's work; return its exit code."""


_DEFAULTS = Settings()

ENVIRONMENT_HELP = f"""\
environment:
  BITBYBIT_WEBHOOK_SECRET       signing secret(s), comma-separated for rotation
  BITBYBIT_WEBHOOK_SECRET_FILE  a file holding the same
  BITBYBIT_DATA_DIR             data directory (default {_DEFAULTS.data_dir}); --data-dir wins
  BITBYBIT_ALLOW_SHARED_DATA_DIR  1 to accept a data directory its group can read \
(default 0)
  BITBYBIT_TOLERANCE_SECONDS    how far a signature's t may be from now (default \
{_DEFAULTS.tolerance_seconds})
  BITBYBIT_MAX_BODY_BYTES       largest accepted body (default {_DEFAULTS.max_body_bytes})
  BITBYBIT_HOST                 address serve listens on (default {_DEFAULTS.host}); --host wins
  BITBYBIT_PORT                 port serve listens on (default {_DEFAULTS.port}); --port wins
  BITBYBIT_LOG_LEVEL            debug, info, warning or error (default {_DEFAULTS.log_level})
  BITBYBIT_BODY_TIMEOUT_SECONDS  seconds a body may take to arrive after its headers \
(default {_DEFAULTS.body_timeout_seconds})
  BITBYBIT_API_KEY              Open API key for sync (BITBYBIT_API_KEY_FILE: a file holding it)
  BITBYBIT_API_URL              Open API base URL (default {_DEFAULTS.api_url})
  BITBYBIT_API_KEY_HEADER       header the key goes in (default {_DEFAULTS.api_key_header})
  BITBYBIT_SYNC_EVERY           serve runs sync this often, e.g. 6h (default off)
  BITBYBIT_PUBLISH_URL          a PostgreSQL URL: serve keeps a copy of the tables there \
(default off); BITBYBIT_PUBLISH_URL_FILE: a file holding it; publish --to wins
  BITBYBIT_PUBLISH_SCHEMA       the PostgreSQL schema kept (default \
{_DEFAULTS.publish_schema}); publish --schema wins
"""


def add_command(
    commands: Commands, name: str, summary: str, description: str
) -> argparse.ArgumentParser:
    """A subparser whose help ends with the environment variables, and its `--data-dir`."""
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where events.db and projections.db live "
        f"(env BITBYBIT_DATA_DIR, default {_DEFAULTS.data_dir})",
    )
    parser.add_argument(
        "--allow-shared-data-dir",
        action="store_true",
        help="commands that write the data directory refuse one other users can reach; "
        "this accepts one its group can read (0750, files 0640) for backup agents and "
        "containers, never one others can read or its group can write "
        "(env BITBYBIT_ALLOW_SHARED_DATA_DIR=1, default off: 0700 and 0600 only)",
    )
    return parser


def add_json_lines_flag(parser: argparse.ArgumentParser) -> None:
    """`--json` of the listing commands, which print JSON Lines anyway when not on a terminal."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="JSON Lines even on a terminal (default: a table on a terminal, JSON otherwise)",
    )


def settings_for(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Settings from the environment, with this command's `--data-dir` (and flags) winning."""
    return Settings.from_env(
        environ, data_dir=args.data_dir, allow_shared_data_dir=args.allow_shared_data_dir
    )


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535 (0: any free one); a usage error otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1-65535 (0: any free one), not {value}")
    return value
