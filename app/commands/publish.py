"""`publish`: keep a PostgreSQL schema equal to the projection tables (SPEC §12)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import TYPE_CHECKING

from app.commands.common import add_command, settings_for
from app.settings import DEFAULT_PUBLISH_SCHEMA, check_publish_schema

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "publish"


def register(commands: Commands) -> None:
    """Add `publish` and its options."""
    parser = add_command(
        commands,
        NAME,
        "keep a PostgreSQL schema equal to the projection tables, for BI tools",
        "Apply the change feed (see `changes`) to a PostgreSQL database: the same tables "
        "and columns with PostgreSQL types (NUMERIC amounts, timestamptz for *_at, jsonb "
        "for JSON text), primary keys, indexes and the views, each batch in one "
        "transaction with its cursor, so a killed publish resumes with nothing missing "
        "and nothing twice. The first run and a rebuild's reset build the tables beside "
        "the live ones and swap them in one transaction. NOTIFY bitbybit_changes after "
        "each commit. PostgreSQL unreachable: retried with backoff; `status` shows the "
        "lag and the error. Needs the postgres extra: pip install '.[postgres]'. "
        "serve does the same continuously when BITBYBIT_PUBLISH_URL is set.",
    )
    parser.add_argument(
        "--to",
        metavar="URL",
        help="the PostgreSQL URL, e.g. postgresql://mirror:PASSWORD@db.example/shop "
        "(default: env BITBYBIT_PUBLISH_URL, or the file BITBYBIT_PUBLISH_URL_FILE names; "
        "prefer those: a command line is visible to every user of the machine)",
    )
    parser.add_argument(
        "--schema",
        metavar="NAME",
        help=f"the schema to keep (env BITBYBIT_PUBLISH_SCHEMA, default {DEFAULT_PUBLISH_SCHEMA})",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="catch up with the feed and exit (default: follow it until interrupted)",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Publish; 0 once caught up (--once) or stopped by Ctrl-C or SIGTERM."""
    if args.to:  # the flag wins: a URL file the environment names is not even read
        environ = {k: v for k, v in environ.items() if not k.startswith("BITBYBIT_PUBLISH_URL")}
    settings = settings_for(args, environ)
    schema = check_publish_schema(args.schema, "--schema") if args.schema else None
    url = args.to or settings.publish_url
    if not url:
        print(
            "error: no PostgreSQL to publish to: pass --to URL, or set BITBYBIT_PUBLISH_URL "
            "(or BITBYBIT_PUBLISH_URL_FILE, a file only you can read)",
            file=sys.stderr,
        )
        return 2
    settings.require_event_log()
    if args.once and not settings.projections_path.exists():
        print(
            f"error: there are no projection tables to publish yet ({settings.projections_path}"
            " is missing): start serve, or run rebuild, first",
            file=sys.stderr,
        )
        return 1
    try:
        from app.publish import runner  # noqa: PLC0415 - psycopg is an optional extra
    except ImportError:
        print(
            "error: publish needs the postgres extra: pip install 'bitbybit-mirror[postgres]' "
            "(or '.[postgres]' in a clone)",
            file=sys.stderr,
        )
        return 1
    from app.logging_setup import configure_logging  # noqa: PLC0415
    from app.publish.url import PublishURLError  # noqa: PLC0415

    configure_logging(level=settings.log_level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        runner.run(settings, url, schema or settings.publish_schema, once=args.once, stop=stop)
    except PublishURLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        stop.set()
    from app.publish.state import report  # noqa: PLC0415

    status = report(settings)
    if args.once and status["error"]:
        print(f"error: {status['error']}", file=sys.stderr)
        return 1
    return 0
