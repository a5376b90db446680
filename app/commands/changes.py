"""`changes`: the change feed of the projection tables, as JSON Lines, from a cursor."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import msgspec

from app.commands.common import add_command, positive_int, settings_for
from app.projection.feed import CursorError, Feed, parse_cursor
from app.sqlite import connect_read_only
from projections import discover

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "changes"
DEFAULT_LIMIT = 1000
# How often `--follow` looks for new lines: well inside the second a delivery may take
# to reach the tables.
FOLLOW_POLL_SECONDS = 0.25


def register(commands: Commands) -> None:
    """Add `changes` and its options."""
    names = [p.NAME for p in discover()]
    parser = add_command(
        commands,
        NAME,
        "print the changes of the projection tables as JSON Lines, from a cursor",
        "Print one JSON line per changed row of the projection tables, in commit order: "
        '{"cursor", "projection", "table", "key", "row"}, row being the whole current row '
        "(null for a row that no longer exists, such as a removed line item). After a "
        'rebuild replaced a projection\'s tables comes {"reset": NAME, "cursor"} and then '
        "every row of the new tables. A consumer that applies the lines in order (upsert "
        "by key, delete on null; on reset, empty that projection's tables) holds tables "
        "equal to the projection tables; keep the last cursor and pass it to --after to "
        "resume. Each row appears once, at its latest change. Reads only; safe while "
        "serve runs.",
    )
    parser.add_argument(
        "--after",
        metavar="CURSOR",
        help="start after this cursor, as printed by an earlier run (default: from the start)",
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="stop after N lines (default: every line there is; with --follow, no limit)",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="keep printing new lines as deliveries reach the tables, until interrupted "
        "(default: stop at the newest line)",
    )
    parser.add_argument(
        "--projection",
        action="append",
        choices=names,
        default=[],
        metavar="NAME",
        help=f"only these projections' lines, repeatable: {', '.join(names)} (default: all)",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Print the lines; 0 at the end of the feed (or on Ctrl-C with --follow)."""
    settings = settings_for(args, environ)
    if args.after is not None:
        try:
            parse_cursor(args.after)
        except CursorError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    path = settings.projections_path
    if not path.exists():
        print(
            f"error: there are no projection tables at {path}: start serve, or run rebuild, "
            "on this data directory (check --data-dir or BITBYBIT_DATA_DIR)",
            file=sys.stderr,
        )
        return 1
    conn = connect_read_only(path)
    try:
        _print_lines(Feed(conn, discover()), args)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how --follow ends
    finally:
        conn.close()
    return 0


def _print_lines(reader: Feed, args: argparse.Namespace) -> None:
    """Print batches of lines until the feed's end (or `--limit`), or forever with --follow."""
    encode = msgspec.json.Encoder().encode
    after, left = args.after, args.limit
    while True:
        batch = reader.lines(after, min(left or DEFAULT_LIMIT, DEFAULT_LIMIT), args.projection)
        for line in batch:
            sys.stdout.write(encode(line).decode())
            sys.stdout.write("\n")
        sys.stdout.flush()
        if batch:
            after = batch[-1]["cursor"]
        if left is not None:
            left -= len(batch)
            if left <= 0:
                return
        if len(batch) < DEFAULT_LIMIT and not args.follow:
            return
        if not batch:
            time.sleep(FOLLOW_POLL_SECONDS)  # a poll interval, not a synchronisation
