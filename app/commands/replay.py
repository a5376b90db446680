"""`replay`: re-sign stored deliveries and post them to another endpoint."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from app.commands.common import add_command, positive_int, settings_for

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "replay"
DEFAULT_RATE = 10
SECRET_VARIABLE = "BITBYBIT_REPLAY_SECRET"  # noqa: S105 - the variable's name, not a secret


def register(commands: Commands) -> None:
    """Add `replay` and its options."""
    parser = add_command(
        commands,
        NAME,
        "re-sign stored deliveries and post them to another endpoint",
        "Post stored deliveries, oldest first, to URL as BitByBit would: the stored body "
        "byte for byte, the stored webhook id, event and timestamp headers, and a fresh "
        "signature (t = now) made with SECRET, the receiver's signing secret. Prints one "
        "line per answer; exits 1 if any answer was not 2xx or URL could not be reached. "
        "With no filter, the whole log is sent. Reads the log only; safe while serve runs.",
    )
    parser.add_argument(
        "--to", required=True, metavar="URL", help="the receiving endpoint (required, no default)"
    )
    parser.add_argument(
        "--secret",
        metavar="SECRET",
        help=f"the receiver's signing secret (env {SECRET_VARIABLE}, which keeps it out of "
        "the process list; one of the two is required)",
    )
    parser.add_argument(
        "--id",
        action="extend",
        nargs="+",
        default=[],
        metavar="ID",
        help="only deliveries with these webhook ids; repeat or list several (default: all)",
    )
    parser.add_argument("--type", metavar="TYPE", help="only this event type (default: all)")
    parser.add_argument(
        "--since",
        metavar="ISO",
        help="only deliveries received at or after this date or time; no zone means UTC "
        "(default: all)",
    )
    parser.add_argument(
        "--rate",
        type=positive_int,
        default=DEFAULT_RATE,
        metavar="N",
        help=f"deliveries per second at most (default {DEFAULT_RATE})",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Replay; exit 0 only when every delivery was answered 2xx."""
    from app.ops import inspection, send  # noqa: PLC0415

    settings = settings_for(args, environ)
    settings.require_event_log()
    secret = (args.secret or environ.get(SECRET_VARIABLE, "")).strip()
    if not secret:
        print(
            f"error: no secret to sign with: pass --secret or set {SECRET_VARIABLE} to the "
            "receiving endpoint's signing secret",
            file=sys.stderr,
        )
        return 2
    try:
        selection = inspection.Selection(
            webhook_ids=tuple(dict.fromkeys(args.id)),
            event_type=args.type,
            since=None if args.since is None else inspection.parse_since(args.since),
        )
    except inspection.SelectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target = send.Target(args.to, secret.encode(), args.rate)
    report = asyncio.run(send.replay(settings.events_path, selection, target))
    if report.failure:
        print(f"error: {report.failure}", file=sys.stderr)
    print(
        f"{report.sent} deliveries replayed to {target.url}: "
        f"{report.sent - report.not_2xx} answered 2xx, {report.not_2xx} not",
        file=sys.stderr,
    )
    return 1 if report.failure or report.not_2xx else 0
