"""Applies a file of feed lines to PostgreSQL in small batches: a process a test can kill.

`python -m tests.publish._consumer SCHEMA FEED BATCH`, the URL in BITBYBIT_PUBLISH_URL
(an environment variable, as the product reads it: argv is visible to every user).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import projections
from app.publish.lines import read_line
from app.publish.postgres import Publisher


def main(argv: list[str]) -> int:
    schema, feed, size = argv[0], Path(argv[1]), int(argv[2])
    lines = [read_line(text) for text in feed.read_text(encoding="utf-8").splitlines()]
    url = os.environ["BITBYBIT_PUBLISH_URL"]
    with Publisher.connect(url, projections.discover(), schema=schema) as publisher:
        after = publisher.cursor
        rest = [line for line in lines if after is None or line.cursor > after]
        for start in range(0, len(rest), size):
            publisher.apply(rest[start : start + size], at_head=start + size >= len(rest))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
