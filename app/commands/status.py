"""`status`: the log's size and each projection's position, lag and errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from app.commands.common import add_command, settings_for

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from app.commands.common import Commands

NAME = "status"


def register(commands: Commands) -> None:
    """Add `status` and its options."""
    parser = add_command(
        commands,
        NAME,
        "show the log's size and each projection's position, lag and errors",
        "Show the log's event count and head, and per projection its version, "
        "checkpoint, lag, error count and whether it is stale.",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Print the status."""
    from app.ops.status import collect  # noqa: PLC0415

    settings = settings_for(args, environ)
    settings.require_event_log()
    _print(collect(settings), as_json=args.json)
    return 0


def _print(report: dict[str, object], *, as_json: bool) -> None:
    """Print the status as JSON or as a small table."""
    if as_json:
        print(msgspec.json.encode(report).decode())
        return
    log: dict[str, Any] = report["log"]  # type: ignore[assignment]
    print(
        f"log: {log['events']} events, head at position {log['head']}, "
        f"{log['unknown_type_events']} of an event type no projection reads, "
        f"{log['forget_records']} forget records"
    )
    if log["forget_pending"]:
        print(
            f"warning: {log['forget_pending']} forget records are pending (a forget was "
            "killed): serve, the next forget or its sweep completes them"
        )
    print(f"last webhook delivery: {log['last_delivery_at'] or 'never'}")
    synced: dict[str, Any] = report["sync"]  # type: ignore[assignment]
    outcome = {None: "", True: " (ok)", False: " (NOT ok: run sync to see why)"}[synced["ok"]]
    print(f"last sync: {synced['finished_at'] or 'never'}{outcome}")
    published: dict[str, Any] = report["publish"]  # type: ignore[assignment]
    if published["cursor"] is not None or published["error"] is not None:
        behind = "" if published["lag"] is None else f", {published['lag']} feed lines behind"
        error = f"; last error: {published['error']}" if published["error"] else ""
        print(f"publish: at cursor {published['cursor'] or '-'}{behind}{error}")
    print(
        f"{'projection':<12} {'version':>7} {'position':>9} {'lag':>7} {'errors':>6} "
        f"{'warnings':>8}  state"
    )
    projections: list[dict[str, Any]] = report["projections"]  # type: ignore[assignment]
    for p in projections:
        state = "STALE: run rebuild" if p["stale"] else "current"
        print(
            f"{p['name']:<12} {p['version']:>7} {p['position']:>9} {p['lag']:>7} "
            f"{p['errors']:>6} {p['warnings']:>8}  {state}"
        )
    problem: dict[str, Any] = report["projections_db"]  # type: ignore[assignment]
    if not problem["ok"]:
        print(f"warning: {problem['detail']}")
    _print_files(report["files"])  # type: ignore[arg-type]


def _print_files(files: dict[str, Any]) -> None:
    modes: dict[str, str] = files["modes"]
    entries = len(modes) - 1
    verdict = "private" if files["private"] else "NOT private"
    print(f"files: {files['data_dir']} {modes['.']}, {entries} entries in it, {verdict}")
    for warning in files["warnings"]:
        accepted = " (accepted by --allow-shared-data-dir)" if warning["accepted"] else ""
        print(
            f"warning: {warning['path']} is {warning['mode']}, wider than 0700/0600: "
            f"run `{warning['fix']}`{accepted}"
        )
