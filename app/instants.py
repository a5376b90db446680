"""Small formatting rules shared by the log, the projections and the CLI."""

from __future__ import annotations

import functools
import time


@functools.lru_cache(maxsize=4096)
def _second_prefix(whole: int) -> str:
    # Deliveries arrive thousands a second, and a rebuild meets each second many times:
    # format each second once.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def format_instant(seconds: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds and `Z`: `2024-01-15T10:30:00.000Z`."""
    whole = int(seconds // 1)
    return f"{_second_prefix(whole)}.{int((seconds - whole) * 1000):03d}Z"
