"""`forget`: erase one person's personal values from the log, the tables and the files."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from app.commands.common import add_command, settings_for

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands
    from app.ops.forget import Plan

NAME = "forget"


def register(commands: Commands) -> None:
    """Add `forget` and its options."""
    parser = add_command(
        commands,
        NAME,
        "erase a person's personal values everywhere (the one sanctioned log rewrite)",
        "Find every stored event about a customer (their customer events and snapshots, "
        "every event of their orders, every message from or to their phone numbers) and "
        "set the personal values in them to null: names, email, phone numbers, image URL, "
        "addresses, message from/to/body. Ids, amounts, statuses, tags and timestamps "
        "stay. The tables are re-folded and both files rebuilt, so no byte of those "
        "values is left under the data directory. Each forget is recorded (when, the "
        "customer id, counts per event type, the reason). Safe while serve runs: "
        "deliveries wait, none fails. Backups and exports made earlier still hold the "
        "values: rotate them.",
    )
    parser.add_argument(
        "--customer", required=True, metavar="ID", help="the customer id to forget (required)"
    )
    parser.add_argument(
        "--phone",
        action="extend",
        nargs="+",
        default=[],
        metavar="NUMBER",
        help="another phone number of theirs whose messages to erase; repeat for several "
        "(default: only the numbers the log holds for the customer)",
    )
    parser.add_argument(
        "--reason",
        default="",
        metavar="TEXT",
        help="why, kept in the forget record; no personal data here (default: empty)",
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="do not ask for confirmation; needed when not on a terminal (default: ask)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list how many events of each type would change, and change nothing (default: off)",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Show the plan, confirm, forget, and say what was done."""
    from app.ops import forget  # noqa: PLC0415
    from projections import discover  # noqa: PLC0415

    settings = settings_for(args, environ)
    settings.require_private_data_dir()
    try:
        plan = forget.plan(settings, args.customer, args.phone)
    except forget.ForgetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _show(plan)
    if args.dry_run:
        print("dry run: nothing was changed")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            print("error: not on a terminal: pass --yes to forget", file=sys.stderr)
            return 2
        answer = input(f"Erase these values of customer {plan.customer_id} for good? [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            print("nothing was changed")
            return 1
    try:
        report = forget.forget(settings, discover(), args.customer, args.phone, args.reason)
    except forget.ForgetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"forgot customer {plan.customer_id}: {report.redacted} events and "
        f"{report.conflicts} conflicting duplicates redacted, {report.refolded} entities "
        f"re-folded, files scrubbed, in {report.seconds:.1f} s"
    )
    return 0


def _show(plan: Plan) -> None:
    print(f"customer {plan.customer_id}: events about them, by type")
    for event_type, count in plan.counts().items():
        print(f"  {event_type:<24} {count:>8}")
    print(
        f"{plan.to_redact()} of them still hold personal values; "
        f"{sum(f.redacted is not None for f in plan.conflicts)} conflicting duplicates too"
    )
