"""What the ingest benchmark measured, its targets, and the report with a verdict for each."""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from wrk import WrkResult

TARGET_RATIO = 0.60  # issue #2, set before projections existed
TARGET_RATIO_LIVE = 0.45  # issue #3, with live projections, as every round here runs
TARGET_P99_MS = 25.0
TARGET_LAG_SECONDS = 1.0
TARGET_DRAIN_SECONDS = 2.0
TARGET_LIVE_CPU_TIMES_REBUILD = 1.5  # issue #17 section 2
TARGET_CPU_TIMES_BARE = 2.5  # issue #17 section 3, CPU per accepted delivery
TARGET_P99_TIMES_BARE = 2.5  # issue #17 section 3


@dataclasses.dataclass(slots=True)
class ServiceRound:
    """One service round: wrk's figures and the projections' lag."""

    wrk: WrkResult
    cpu_us: float  # the service's processes (serve and its live projector), per accepted
    projector_cpu_us: float  # the live projector alone, per accepted delivery (= event)
    max_lag: int
    lag_samples: int
    drain_seconds: float
    projection_errors: int
    generated: int
    generate_seconds: float


@dataclasses.dataclass(slots=True)
class Totals:
    """What the service answered over the whole run, to check the log against."""

    accepted: int = 0
    duplicate: int = 0
    unanswered: int = 0
    rounds: list[ServiceRound] = dataclasses.field(default_factory=list)
    bare: list[WrkResult] = dataclasses.field(default_factory=list)
    bare_cpu_us: list[float] = dataclasses.field(default_factory=list)
    rebuild_cpu_us: float = math.nan  # `rebuild` of the run's log afterwards, per event

    def add(self, result: WrkResult) -> None:
        """Count one service run's answers (and the requests wrk left unanswered at its end)."""
        self.accepted += result.accepted
        self.duplicate += result.duplicate
        self.unanswered += result.sent - result.requests


def row_text(result: WrkResult) -> str:
    """One run's figures on a line, as each round prints them."""
    return (
        f"{result.rps:9.0f} req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
        f"non-2xx {result.non2xx}"
    )


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def _cpu_checks(totals: Totals) -> list[tuple[bool, str]]:
    """Issue #17's ratios, each of two figures measured in this same run."""
    service_cpu = statistics.median(r.cpu_us for r in totals.rounds)
    bare_cpu = statistics.median(totals.bare_cpu_us)
    live_cpu = statistics.median(r.projector_cpu_us for r in totals.rounds)
    rebuild_cpu = totals.rebuild_cpu_us
    service_p99 = statistics.median(r.wrk.p99_ms for r in totals.rounds)
    bare_p99 = statistics.median(b.p99_ms for b in totals.bare)
    return [
        (
            live_cpu <= TARGET_LIVE_CPU_TIMES_REBUILD * rebuild_cpu,
            (
                f"live projector CPU per event {live_cpu:.0f} us / rebuild's {rebuild_cpu:.0f} "
                f"us = {live_cpu / rebuild_cpu:.2f}x (target <= "
                f"{TARGET_LIVE_CPU_TIMES_REBUILD:g}x, #17 section 2)"
            ),
        ),
        (
            service_cpu <= TARGET_CPU_TIMES_BARE * bare_cpu,
            (
                f"CPU per accepted delivery (serve and its projector, until caught up) "
                f"{service_cpu:.0f} us / bare {bare_cpu:.0f} us per request = "
                f"{service_cpu / bare_cpu:.2f}x (target <= {TARGET_CPU_TIMES_BARE:g}x, "
                "#17 section 3)"
            ),
        ),
        (
            service_p99 <= TARGET_P99_TIMES_BARE * bare_p99,
            (
                f"p99 (medians) service {service_p99:.2f} ms / bare {bare_p99:.2f} ms = "
                f"{service_p99 / bare_p99:.2f}x (target <= {TARGET_P99_TIMES_BARE:g}x, "
                "#17 section 3)"
            ),
        ),
    ]


def report(totals: Totals, args: argparse.Namespace) -> bool:
    """Print the table and the verdicts; True when every target is met."""
    print()
    print(
        f"{args.connections} connections, {args.threads} wrk threads, "
        f"{args.duration:g} s per run, {args.rounds} rounds (A = service, B = bare)"
    )
    header = (
        f"{'round':>5} {'side':<8} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'non-2xx':>8} {'requests':>9} {'cpu us':>7} {'proj us':>7} {'max lag':>8} "
        f"{'drain s':>8}"
    )
    print(header)
    print("-" * len(header))
    rows = zip(totals.rounds, totals.bare, totals.bare_cpu_us, strict=True)
    for number, (svc, bare, bare_cpu) in enumerate(rows, 1):
        w = svc.wrk
        print(
            f"{number:>5} {'service':<8} {w.rps:>9.0f} {w.p50_ms:>8.2f} {w.p90_ms:>8.2f} "
            f"{w.p99_ms:>8.2f} {w.max_ms:>8.1f} {w.non2xx:>8} {w.requests:>9} "
            f"{svc.cpu_us:>7.0f} {svc.projector_cpu_us:>7.0f} {svc.max_lag:>8} "
            f"{svc.drain_seconds:>8.2f}"
        )
        print(
            f"{number:>5} {'bare':<8} {bare.rps:>9.0f} {bare.p50_ms:>8.2f} {bare.p90_ms:>8.2f} "
            f"{bare.p99_ms:>8.2f} {bare.max_ms:>8.1f} {bare.non2xx:>8} {bare.requests:>9} "
            f"{bare_cpu:>7.0f} {'-':>7} {'-':>8} {'-':>8}"
        )
    service_rps = statistics.median(r.wrk.rps for r in totals.rounds)
    bare_rps = statistics.median(b.rps for b in totals.bare)
    ratio = service_rps / bare_rps if bare_rps else 0.0
    worst_p99 = max(r.wrk.p99_ms for r in totals.rounds)
    non2xx = sum(r.wrk.non2xx + r.wrk.socket_errors for r in totals.rounds)
    max_lag = max(r.max_lag for r in totals.rounds)
    lag_seconds = max(r.max_lag / r.wrk.rps if r.wrk.rps else math.inf for r in totals.rounds)
    drain = max(r.drain_seconds for r in totals.rounds)
    errors = max(r.projection_errors for r in totals.rounds)
    wrapped = sum(r.wrk.wrapped for r in totals.rounds)
    statuses = {r.wrk.statuses for r in totals.rounds} - {"-"}
    status_text = f" (statuses {', '.join(sorted(statuses))})" if statuses else ""
    checks = [
        *(
            (
                ratio >= target,
                (
                    f"median req/s: service {service_rps:.0f} / bare {bare_rps:.0f} = "
                    f"{ratio:.1%} (target >= {target:.0%}, {which})"
                ),
            )
            for target, which in (
                (TARGET_RATIO, "issue #2"),
                (TARGET_RATIO_LIVE, "issue #3, with live projections"),
            )
        ),
        (
            worst_p99 < TARGET_P99_MS,
            f"service p99 (worst round): {worst_p99:.2f} ms (target < {TARGET_P99_MS:g} ms)",
        ),
        (non2xx == 0, f"service non-2xx + socket errors: {non2xx}{status_text}"),
        (
            lag_seconds < TARGET_LAG_SECONDS,
            (
                f"max projection lag during load: {max_lag} events = {lag_seconds:.2f} s of "
                f"events at the round's rate (target < {TARGET_LAG_SECONDS:g} s)"
            ),
        ),
        (
            drain <= TARGET_DRAIN_SECONDS,
            (
                f"lag back to 0 after load stopped: {drain:.2f} s "
                f"(target <= {TARGET_DRAIN_SECONDS:g} s)"
            ),
        ),
        (errors == 0, f"projection errors: {errors}"),
        (wrapped == 0, f"request files exhausted: {wrapped} times (raise --max-rate if > 0)"),
    ]
    print()
    for ok, text in checks:
        print(f"  [{_verdict(ok):>6}] {text}")
    print()
    for ok, text in _cpu_checks(totals):
        checks.append((ok, text))
        print(f"  [{_verdict(ok):>6}] {text}")
    print(
        f"  generated {sum(r.generated for r in totals.rounds)} signed deliveries in "
        f"{sum(r.generate_seconds for r in totals.rounds):.1f} s; readyz samples per round: "
        f"{', '.join(str(r.lag_samples) for r in totals.rounds)}"
    )
    return all(ok for ok, _ in checks)
