"""`import`: append the deliveries of an export file that the log does not hold yet."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.commands.common import add_command, settings_for

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "import"


def register(commands: Commands) -> None:
    """Add `import` and its options."""
    parser = add_command(
        commands,
        NAME,
        "append the deliveries of an export file that the log does not hold yet",
        "Validate every line of FILE (a bad line stops the import, naming it, before "
        "anything is written), then append its deliveries in file order through the "
        "endpoint's own rules: a webhook id already logged is skipped, a signature already "
        "accepted under another event type is refused. Each line keeps its timestamps and "
        "signature; the time window is not applied. Importing twice adds nothing. Run "
        "rebuild afterwards (or start serve) to project them.",
    )
    parser.add_argument("file", metavar="FILE", help="a file written by export")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also check every signature against the configured secrets, whatever its "
        "age; import nothing if one does not match",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Import, and print what became of each line."""
    from app.eventlog.store import StoreUnavailableError  # noqa: PLC0415
    from app.ops import transfer  # noqa: PLC0415

    settings = settings_for(args, environ)
    settings.require_private_data_dir()
    if args.verify:
        settings.require_secret()
    try:
        report = transfer.import_file(
            settings.events_path, Path(args.file), settings.secrets if args.verify else None
        )
    except (transfer.TransferError, StoreUnavailableError, OSError) as exc:
        print(f"error: {exc}; nothing more was imported", file=sys.stderr)
        return 2
    for number, reason in report.refused:
        print(f"line {number}: refused: {reason}", file=sys.stderr)
    print(
        f"{report.lines} deliveries read: {report.added} added, {report.present} already "
        f"present, {report.conflicting} conflicting (same id, other body; kept aside), "
        f"{len(report.refused)} refused"
    )
    if report.unsigned:
        # Snapshots `sync` wrote: they carry no signature, so there is none to check.
        checked = " (not verified: they have no signature)" if args.verify else ""
        print(f"{report.unsigned} of them unsigned sync snapshots{checked}")
    if report.redacted:
        # Rewritten by `forget`: the export says so, and this log records it the same way.
        print(
            f"{report.redacted} of them redacted by forget (not verified: a redacted body "
            "no longer matches its signature, by design)"
        )
    return 1 if report.refused else 0
