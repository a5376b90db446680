"""Virtual time for the client: sleeping advances a clock, so minutes take no time."""

from __future__ import annotations

import dataclasses

from app.sync.client import Policy


@dataclasses.dataclass
class VirtualTime:
    """A clock that only moves when something sleeps; every sleep is recorded."""

    now: float = 1000.0
    sleeps: list[float] = dataclasses.field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def policy(self, attempts: int = 6) -> Policy:
        """A policy on this clock with the largest jitter, so waits are predictable."""
        return Policy(attempts=attempts, sleep=self.sleep, clock=self.clock, jitter=lambda: 1.0)
