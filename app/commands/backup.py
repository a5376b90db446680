"""`backup`: a consistent, checked copy of events.db, safe while `serve` runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.commands.common import add_command, settings_for

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "backup"


def register(commands: Commands) -> None:
    """Add `backup` and its options."""
    parser = add_command(
        commands,
        NAME,
        "copy events.db (every table) to DEST, checked, while serve runs",
        "Copy the whole event log with SQLite's online backup API, as of one commit, "
        "while serve goes on taking deliveries; check the copy with PRAGMA "
        "integrity_check; write it with mode 0600. Refuses to overwrite DEST. "
        "projections.db needs no backup: rebuild makes it again from the log.",
    )
    parser.add_argument(
        "dest", metavar="DEST", help="the file to create (no default; must not exist)"
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Back up, and print what the copy holds."""
    from app.ops.backup import BackupError, backup  # noqa: PLC0415

    settings = settings_for(args, environ)
    try:
        report = backup(settings.events_path, Path(args.dest))
    except (BackupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"copied {settings.events_path} to {report.destination} ({report.size_bytes} bytes)")
    for name, rows in report.tables.items():
        print(f"  {name}: {rows} rows")
    print(f"events up to position {report.head}; integrity_check: ok")
    return 0
