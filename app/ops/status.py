"""`status`: the log's size and head, and where each projection stands."""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import TYPE_CHECKING, Any

import msgspec

from app.eventlog.reads import LogReader
from app.projection import projector
from projections import discover

if TYPE_CHECKING:
    from pathlib import Path

    from app.settings import Settings


def collect(settings: Settings) -> dict[str, object]:
    """The SPEC's status object: `{"log": {...}, "projections": [...]}`.

    Reads only: both files are opened read-only, and a projections.db that `serve` has
    not made yet (missing, or not yet holding its bookkeeping) is reported as projections
    at position 0, not created.
    """
    store = LogReader(_read_only(settings.events_path))
    conn = _projections_or_empty(settings.projections_path)
    try:
        runner = projector.Projector(conn, store, discover())
        statuses = runner.statuses()
        return {
            "log": {
                "events": store.count(),
                "head": store.head(),
                # Authentic deliveries of types no projection reads: kept, shown here.
                "unknown_type_events": store.count_other_types(
                    t for p in runner.projections for t in p.EVENT_TYPES
                ),
            },
            "projections": [dataclasses.asdict(s) for s in statuses],
        }
    finally:
        conn.close()
        store.close()


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _projections_or_empty(path: Path) -> sqlite3.Connection:
    if path.exists():
        conn = _read_only(path)
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = '_projections'").fetchone():
            return conn
        conn.close()
    return projector.connect(":memory:")  # the bookkeeping tables, empty


def print_status(settings: Settings, *, as_json: bool) -> int:
    """Print the status as JSON or as a small table."""
    report = collect(settings)
    if as_json:
        print(msgspec.json.encode(report).decode())
        return 0
    log: dict[str, Any] = report["log"]  # type: ignore[assignment]
    print(
        f"log: {log['events']} events, head at position {log['head']}, "
        f"{log['unknown_type_events']} of an event type no projection reads"
    )
    print(f"{'projection':<12} {'version':>7} {'position':>9} {'lag':>7} {'errors':>6}  state")
    projections: list[dict[str, Any]] = report["projections"]  # type: ignore[assignment]
    for p in projections:
        state = "STALE: run rebuild" if p["stale"] else "current"
        print(
            f"{p['name']:<12} {p['version']:>7} {p['position']:>9} {p['lag']:>7} "
            f"{p['errors']:>6}  {state}"
        )
    return 0
