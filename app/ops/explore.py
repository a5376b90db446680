"""`explore`: Datasette over events.db and projections.db, read-only, on loopback.

The files are opened as Datasette opens any file it is not told is immutable: each read
connection with `mode=ro`, which can write nothing and sees the WAL's newest commits.
Datasette's `--immutable` would skip the WAL (`immutable=1`), showing a live log as
older than it is, or empty. No plugin that writes is installed with the extra.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from app.ops.explore_metadata import metadata

if TYPE_CHECKING:
    from app.settings import Settings

HOST = "127.0.0.1"


class ExploreError(Exception):
    """Datasette cannot be started; the message says what to do."""


def datasette_command(settings: Settings, port: int, metadata_path: Path) -> list[str]:
    """The `datasette serve` command line for both files."""
    return [
        *(sys.executable, "-m", "datasette", "serve"),
        str(settings.events_path),
        str(settings.projections_path),
        *("--host", HOST, "--port", str(port)),
        *("--metadata", str(metadata_path)),
    ]


def explore(settings: Settings, port: int) -> int:
    """Run Datasette until interrupted; its exit code."""
    if importlib.util.find_spec("datasette") is None:
        raise ExploreError(
            "Datasette is not installed: pip install 'bitbybit-mirror[explore]' "
            "(or, in a checkout, pip install '.[explore]')"
        )
    for path in (settings.events_path, settings.projections_path):
        if not path.is_file():
            raise ExploreError(
                f"there is no {path.name} at {path}: check --data-dir, or start serve "
                "(or run rebuild) once so the projections exist"
            )
    with tempfile.TemporaryDirectory(prefix="bitbybit-explore-") as scratch:
        metadata_path = Path(scratch) / "metadata.json"
        metadata_path.write_text(json.dumps(metadata(), indent=2), encoding="utf-8")
        print(f"Datasette on http://{HOST}:{port}/ (read-only; Ctrl-C stops it)", file=sys.stderr)
        try:
            return subprocess.call(  # noqa: S603 - our own interpreter and arguments
                datasette_command(settings, port, metadata_path)
            )
        except KeyboardInterrupt:
            return 0
