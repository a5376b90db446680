"""Fixtures for projection tests: a fresh log and projections database per test."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.projections._helpers import Harness

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.close()
