"""Small formatting rules shared by the log and the CLI."""

from __future__ import annotations

import time


def iso_now(seconds: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds and `Z`, the log's `received_at`."""
    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + (
        f".{int((seconds - whole) * 1000):03d}Z"
    )
