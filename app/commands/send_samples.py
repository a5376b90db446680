"""`send-test`: sign and post sample deliveries the way BitByBit does."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import aiohttp

from app.commands.common import add_command, positive_int, settings_for

# Only the samples' names: the HTTP client is imported when send-test runs.
from app.webhooks.samples import DEFAULT_URL, EVENT_TYPES

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "send-test"


def register(commands: Commands) -> None:
    """Add `send-test` and its options."""
    parser = add_command(
        commands,
        NAME,
        "sign and post sample deliveries the way BitByBit does",
        "Sign sample deliveries with the first configured secret, exactly as BitByBit "
        "does, post them to URL one after another, and print each answer. Exits 1 unless "
        "every delivery is accepted. The samples name one customer, order and product, so "
        "repeated runs update the same rows. --data-dir is accepted like every command's; "
        "send-test writes nothing locally, the service at URL stores the deliveries.",
    )
    parser.add_argument(
        "--url",
        help="the webhook endpoint (default http://BITBYBIT_HOST:BITBYBIT_PORT/webhooks, "
        f"that is {DEFAULT_URL} unless those are set)",
    )
    parser.add_argument(
        "--event",
        action="append",
        default=[],
        choices=EVENT_TYPES,
        metavar="TYPE",
        help="send only this event type; repeat for several (default: all ten: "
        f"{', '.join(EVENT_TYPES)})",
    )
    parser.add_argument(
        "--count",
        type=positive_int,
        default=1,
        metavar="N",
        help="send each event type N times, each with a fresh webhook id (default 1)",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Send, and exit 1 unless every delivery was accepted."""
    from app.ops import send  # noqa: PLC0415

    settings = settings_for(args, environ)
    settings.require_secret()
    event_types = list(dict.fromkeys(args.event)) or list(EVENT_TYPES)
    url = args.url or f"http://{settings.host}:{settings.port}/webhooks"
    try:
        results = asyncio.run(send.send(url, settings.secrets[0], event_types, args.count))
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"error: cannot deliver to {url}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    refused = [r for r in results if not r.accepted]
    print(f"{len(results) - len(refused)} of {len(results)} deliveries accepted")
    return 1 if refused else 0
