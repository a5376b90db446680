"""`explore`: Datasette on both files, read-only, opening on the dashboard."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from app.commands.common import add_command, settings_for

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "explore"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001


def _port(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    import argparse  # noqa: PLC0415 - only for the error type

    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (1 to 65535): {text!r}")
    return int(text)


def register(commands: Commands) -> None:
    """Add `explore` and its options."""
    parser = add_command(
        commands,
        NAME,
        "browse your data in Datasette, read-only, opening on a dashboard",
        "Start Datasette on projections.db and events.db, read-only, opening on a "
        "dashboard of paid revenue per day, orders by status, new customers per week and "
        "the WhatsApp funnel per template. The views, the tables (every column described, "
        "below its rows) and named queries (find a customer by email or phone number) are "
        "a click away. Needs the optional extra: pip install 'bitbybit-mirror[explore]'. "
        "SIGTERM or Ctrl-C stops it, and nothing is left running. The tables hold "
        "personal data: on any address but loopback it asks for a password (user "
        "bitbybit), and refuses to start without BITBYBIT_EXPLORE_PASSWORD_HASH; "
        "put it behind a TLS proxy.",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        metavar="ADDRESS",
        help=f"address to listen on (default {DEFAULT_HOST}; no environment variable). Any "
        "but loopback needs BITBYBIT_EXPLORE_PASSWORD_HASH",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; no environment variable)",
    )
    parser.epilog = (parser.epilog or "") + (
        "  BITBYBIT_EXPLORE_PASSWORD_HASH  explore asks for this password (user bitbybit); "
        "required off loopback. Make it with: datasette hash-password (default: none)\n"
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run Datasette until stopped."""
    from app.ops.explore import ExploreError, explore  # noqa: PLC0415

    settings = settings_for(args, environ)
    try:
        return explore(settings, args.host, args.port, environ)
    except ExploreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
