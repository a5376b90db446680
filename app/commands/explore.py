"""`explore`: Datasette on both files, read-only, on loopback."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from app.commands.common import add_command, settings_for

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "explore"
DEFAULT_PORT = 8001


def register(commands: Commands) -> None:
    """Add `explore` and its options."""
    parser = add_command(
        commands,
        NAME,
        "browse both files in Datasette, read-only, on 127.0.0.1",
        "Start Datasette on events.db and projections.db, read-only, listening on "
        "127.0.0.1 only, with every table and column described and the README's example "
        "queries, every delivery of an entity and the projection errors as named "
        "queries. Needs the optional extra: pip install 'bitbybit-mirror[explore]'. The "
        "tables hold personal data: to reach it from elsewhere, put it behind a password "
        "(datasette-auth-passwords) and a TLS proxy rather than opening the port.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on, on 127.0.0.1 (default {DEFAULT_PORT}; no environment variable)",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run Datasette until interrupted."""
    from app.ops.explore import ExploreError, explore  # noqa: PLC0415

    settings = settings_for(args, environ)
    try:
        return explore(settings, args.port)
    except ExploreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
