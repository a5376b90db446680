"""`sync`: read customers, orders and products back from BitByBit's Open API."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from app.commands.common import add_command, settings_for
from app.settings import DEFAULT_API_KEY_HEADER, DEFAULT_API_URL

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "sync"
ENTITIES = ("customers", "orders", "products")


def register(commands: Commands) -> None:
    """Add `sync` and its options."""
    parser = add_command(
        commands,
        NAME,
        "read customers, orders and products back from the Open API into the log",
        "Page through BitByBit's Open API and append what it returns to the log as "
        "snapshot events (unchanged content adds nothing), then fetch by id what the "
        "mirror holds but the pass did not see: a 404 NOT_FOUND marks it deleted. A "
        "stopped pass resumes where it stopped. Message statuses are NOT covered: the "
        "Open API cannot read them back. Safe while serve runs; a second sync refuses. "
        "Needs BITBYBIT_API_KEY (or BITBYBIT_API_KEY_FILE) with READ on customers, "
        f"orders and products; BITBYBIT_API_URL (default {DEFAULT_API_URL}) and "
        f"BITBYBIT_API_KEY_HEADER (default {DEFAULT_API_KEY_HEADER}) choose between the "
        "API's documented alternatives. "
        "Exit 0 when the pass completed cleanly, 1 when it stopped or had problems.",
    )
    parser.add_argument(
        "--entity",
        action="extend",
        nargs="+",
        choices=ENTITIES,
        default=[],
        metavar="ENTITY",
        help="sync only this entity type (customers, orders, products); repeat for "
        "several (default: all three)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="read one page of each endpoint and report what answered (status, the base "
        "URL and key header that worked); writes nothing. Run it first with a new key",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the check or a pass and print its report."""
    import msgspec  # noqa: PLC0415

    from app.logging_setup import configure_logging  # noqa: PLC0415
    from app.sync import check, runner, state  # noqa: PLC0415
    from app.sync.passes import KINDS  # noqa: PLC0415
    from app.sync.state import SyncBusyError  # noqa: PLC0415

    settings = settings_for(args, environ)
    configure_logging(level=settings.log_level)
    if args.check:
        checked = asyncio.run(runner.run_check(settings))
        if args.json:
            print(msgspec.json.encode(check.as_json(checked)).decode())
        else:
            print(check.render(checked, settings))
        return 0 if checked.ok else 1
    kinds = [KINDS[name] for name in (args.entity or ENTITIES)]
    try:
        outcome = asyncio.run(
            runner.run_pass(settings, list(dict.fromkeys(kinds)), log_lines=not args.json)
        )
    except SyncBusyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(state.encode(outcome).decode() if args.json else state.render(outcome))
    return 0 if outcome.ok else 1
