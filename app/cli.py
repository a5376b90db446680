"""`python -m app <command>`: parses arguments and calls importable functions."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from typing import TYPE_CHECKING

from app.projection.rebuild import RebuildError
from app.settings import DEFAULT_DATA_DIR, Settings, SettingsError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

# Allocations net of frees before the youngest generation is collected (default 700).
GC_THRESHOLD = 50_000

ENVIRONMENT_HELP = """\
environment:
  BITBYBIT_WEBHOOK_SECRET       signing secret(s), comma-separated for rotation
  BITBYBIT_WEBHOOK_SECRET_FILE  a file holding the same
  BITBYBIT_DATA_DIR             data directory (default ./data); --data-dir wins
  BITBYBIT_TOLERANCE_SECONDS    how far a signature's t may be from now (default 300)
  BITBYBIT_MAX_BODY_BYTES       largest accepted body (default 262144)
"""


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"where events.db and projections.db live (env BITBYBIT_DATA_DIR, "
        f"default {DEFAULT_DATA_DIR})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, with every option's default and environment variable."""
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Receive BitByBit webhooks into a durable event log and query them as SQL.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the webhook endpoint and keep the projections live",
        description="Run POST /webhooks, /healthz, /readyz and /metrics, and keep the "
        "projection tables up to date. Needs a signing secret.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    _add_data_dir(serve)

    status = commands.add_parser(
        "status",
        help="show the log's size and each projection's position, lag and errors",
        description="Show the log's event count and head, and per projection its version, "
        "checkpoint, lag, error count and whether it is stale.",
    )
    status.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    _add_data_dir(status)

    rebuild = commands.add_parser(
        "rebuild",
        help="recompute projections from the whole log (safe while serve runs)",
        description="Recompute projection tables from the whole event log into scratch "
        "tables, then replace the live tables in one step. Run it after a projection's "
        "VERSION changes (status shows it as stale). Safe while serve takes deliveries.",
    )
    rebuild.add_argument(
        "--projection",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="rebuild only this projection; repeat for several (default: all)",
    )
    rebuild.add_argument(
        "--check",
        action="store_true",
        help="rebuild into scratch tables, print rows that differ from the live tables, "
        "exit 1 if any differ; changes nothing",
    )
    _add_data_dir(rebuild)
    _add_transfer_commands(commands)
    _add_send_test_command(commands)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one command; return its exit code."""
    args = build_parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    handlers: dict[str, Callable[[argparse.Namespace, Mapping[str, str]], int]] = {
        "serve": _serve,
        "status": _status,
        "rebuild": _rebuild,
        "export": _export,
        "import": _import,
        "send-test": _send_test,
    }
    try:
        return handlers[args.command](args, environ)
    except (SettingsError, RebuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from aiohttp import web  # noqa: PLC0415 - only serve needs the web stack

    from app.http.main import create_app  # noqa: PLC0415
    from app.logging_setup import configure_logging  # noqa: PLC0415

    settings = Settings.from_env(environ, data_dir=args.data_dir, host=args.host, port=args.port)
    settings.require_secret()
    configure_logging(batched=True)
    # Each delivery allocates hundreds of short-lived objects, none in a reference
    # cycle: with the default thresholds the cyclic collector ran many times a second,
    # rescanning the long-lived startup objects too. Those are frozen out of its way and
    # young objects are collected less often (measured: 10-20% less CPU per delivery).
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=30,
    )
    return 0


def _status(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from app.ops.status import print_status  # noqa: PLC0415

    settings = Settings.from_env(environ, data_dir=args.data_dir)
    settings.require_event_log()
    return print_status(settings, as_json=args.json)


def _rebuild(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from app.logging_setup import configure_logging  # noqa: PLC0415
    from app.projection import rebuild  # noqa: PLC0415
    from projections import discover  # noqa: PLC0415

    settings = Settings.from_env(environ, data_dir=args.data_dir)
    settings.require_event_log()
    configure_logging()
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


def _add_transfer_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export",
        help="write the whole event log as JSON Lines, one delivery per line",
        description="Write every delivery of the log, in position order, as one JSON object "
        "per line: position, webhook_id, event_type, event_timestamp, signed_at, "
        "received_at, signature, payload and payload_encoding ('utf-8' when the body is "
        "valid UTF-8, else 'base64'). Safe while serve runs.",
    )
    export.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="where to write; '-' or none for standard output",
    )
    _add_data_dir(export)

    import_ = commands.add_parser(
        "import",
        help="append the deliveries of an export file that the log does not hold yet",
        description="Validate every line of FILE (a bad line stops the import, naming it, "
        "before anything is written), then append its deliveries in file order through "
        "the endpoint's own rules: a webhook id already logged is skipped, a signature "
        "already accepted under another event type is refused. Each line keeps its "
        "timestamps and signature; the time window is not applied. Importing twice adds "
        "nothing. Run rebuild afterwards (or start serve) to project them.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    import_.add_argument("file", metavar="FILE", help="a file written by export")
    import_.add_argument(
        "--verify",
        action="store_true",
        help="also check every signature against the configured secrets, whatever its "
        "age; import nothing if one does not match",
    )
    _add_data_dir(import_)


def _add_send_test_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    # Only the samples' names: the HTTP client is imported when send-test runs.
    from app.ops.samples import DEFAULT_URL, EVENT_TYPES  # noqa: PLC0415

    parser = commands.add_parser(
        "send-test",
        help="sign and post sample deliveries the way BitByBit does",
        description="Sign sample deliveries with the first configured secret, exactly as "
        "BitByBit does, post them to URL one after another, and print each answer. Exits 1 "
        "unless every delivery is accepted. The samples name one customer, order and "
        "product, so repeated runs update the same rows.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        default=DEFAULT_URL,
        help=f"the webhook endpoint (default {DEFAULT_URL})",
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
        type=_positive_int,
        default=1,
        metavar="N",
        help="send each event type N times, each with a fresh webhook id (default 1)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="accepted like every command's; send-test writes nothing locally, the "
        "service at URL stores the deliveries",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _export(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from app.ops import transfer  # noqa: PLC0415

    settings = Settings.from_env(environ, data_dir=args.data_dir)
    try:
        written = transfer.export_to(settings.events_path, args.file)
    except (transfer.TransferError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {written} deliveries", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pathlib import Path  # noqa: PLC0415

    from app.eventlog.store import StoreUnavailableError  # noqa: PLC0415
    from app.ops import transfer  # noqa: PLC0415

    settings = Settings.from_env(environ, data_dir=args.data_dir)
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
    return 1 if report.refused else 0


def _send_test(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from app.ops import sample_sender  # noqa: PLC0415
    from app.ops.samples import EVENT_TYPES  # noqa: PLC0415

    settings = Settings.from_env(environ, data_dir=args.data_dir)
    settings.require_secret()
    event_types = list(dict.fromkeys(args.event)) or list(EVENT_TYPES)
    return sample_sender.run(args.url, settings.secrets[0], event_types, args.count)
