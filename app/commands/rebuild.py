"""`rebuild`: recompute projections from the whole log, safe while `serve` runs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from app.commands.common import add_command, settings_for

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "rebuild"


def register(commands: Commands) -> None:
    """Add `rebuild` and its options."""
    parser = add_command(
        commands,
        NAME,
        "recompute projections from the whole log (safe while serve runs)",
        "Recompute projection tables from the whole event log into scratch tables, then "
        "replace the live tables in one step. Run it after a projection's VERSION changes "
        "(status shows it as stale). Safe while serve takes deliveries.",
    )
    parser.add_argument(
        "--projection",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="rebuild only this projection; repeat for several (default: all)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="rebuild into scratch tables, print rows that differ from the live tables, "
        "exit 1 if any differ; changes nothing",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Rebuild, or with `--check` compare, and print a summary."""
    from app.logging_setup import configure_logging  # noqa: PLC0415
    from app.projection import rebuild  # noqa: PLC0415
    from projections import discover  # noqa: PLC0415

    settings = settings_for(args, environ)
    settings.require_event_log()
    settings.require_private_data_dir()
    configure_logging(level=settings.log_level)
    selected = rebuild.select(discover(), args.projection)
    if args.check:
        differences = rebuild.check(settings, selected)
        print(f"{differences} differing rows" if differences else "live tables match a rebuild")
        return 1 if differences else 0
    started = time.monotonic()
    for summary in rebuild.rebuild(settings, selected):
        print(
            f"{summary.name}: {summary.events} events read, {summary.rows} rows written, "
            f"{summary.errors} errors recorded, {summary.seconds:.1f} s"
        )
    # Projections build side by side: the whole takes less than the sum of its parts.
    print(f"rebuild done in {time.monotonic() - started:.1f} s")
    return 0
