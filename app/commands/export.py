"""`export`: the whole event log as JSON Lines."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from app.commands.common import add_command, settings_for

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "export"


def register(commands: Commands) -> None:
    """Add `export` and its options."""
    parser = add_command(
        commands,
        NAME,
        "write the whole event log as JSON Lines, one delivery per line",
        "Write every delivery of the log, in position order, as one JSON object per line: "
        "position, webhook_id, event_type, event_timestamp, signed_at, received_at, "
        "signature, payload and payload_encoding ('utf-8' when the body is valid UTF-8, "
        "else 'base64'). Safe while serve runs.",
    )
    parser.add_argument(
        "file", nargs="?", metavar="FILE", help="where to write; '-' or none for standard output"
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Export, and say how many deliveries were written."""
    from app.ops import transfer  # noqa: PLC0415

    settings = settings_for(args, environ)
    # Opening the log brings an earlier release's file up to date: a write.
    settings.require_private_data_dir()
    try:
        written = transfer.export_to(settings.events_path, args.file)
    except (transfer.TransferError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {written} deliveries", file=sys.stderr)
    return 0
