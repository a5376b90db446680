"""What the change feed costs the live projector and a rebuild, before and after, in one run.

`scripts/bench feed [--events 200000] [--rounds 2] [--before REV] [--after REV]`

"Before" is a checkout of REV (default: the commit before the feed was added), "after"
this tree, or a checkout of `--after` (the feed's own commits against their parent
isolate its cost from what landed since). On the same generated log (cached like the
rebuild benchmark's), alternating before, after, before, after:
1. `bench/live_steps.py`: the whole log projected in steps of 1,500 events, as `serve`'s
   follower takes them under load, with its page cache; CPU seconds per event.
2. `python -m app rebuild` as a whole command: wall time (and CPU of all its processes).
Then the ratios after/before of the medians. Target (issue #23): at most 1.10 for each.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from rebuild import cached_log  # bench/rebuild.py, beside this script

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
TARGET = 1.10
GIT = shutil.which("git") or "/usr/bin/git"


def _before_rev() -> str:
    """The commit before the one that added the change feed."""
    added = subprocess.run(
        [GIT, "log", "--diff-filter=A", "--format=%H", "--", "app/projection/feed.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return f"{added[-1]}^"


def _checkout(rev: str, into: Path) -> Path:
    subprocess.run([GIT, "worktree", "add", "--detach", "-q", str(into), rev], cwd=ROOT, check=True)
    return into


def _data_dir(log_path: Path, parent: Path) -> Path:
    work = Path(tempfile.mkdtemp(prefix="feed-", dir=parent))
    work.chmod(0o700)
    events = work / "events.db"
    shutil.copyfile(log_path, events)
    events.chmod(0o600)  # the product refuses a log that other users can read
    return work


def _env(code: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("BITBYBIT_DATA_DIR", None)
    env["PYTHONPATH"] = str(code)
    return env


def live_cpu_per_event(code: Path, log_path: Path, parent: Path) -> float:
    """CPU seconds per event of live-sized steps over the log, with `code`'s projector."""
    work = _data_dir(log_path, parent)
    try:
        out = subprocess.run(
            [sys.executable, str(BENCH_DIR / "live_steps.py"), str(work)],
            cwd=code,
            env=_env(code),
            capture_output=True,
            check=True,
        ).stdout
        result = msgspec.json.decode(out)
        return float(result["cpu_seconds"]) / int(result["events"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def rebuild_seconds(code: Path, log_path: Path, parent: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `python -m app rebuild` with `code`, start to exit."""
    work = _data_dir(log_path, parent)
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "app", "rebuild", "--data-dir", str(work)],
            cwd=code,
            env=_env(code),
            capture_output=True,
            check=True,
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    """Command line: `--events N --rounds R --before REV --cache-dir DIR`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", help="the commit to compare with (default: before the feed)")
    parser.add_argument("--after", help="the commit to measure (default: this tree)")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "bitbybit-bench"
    )
    args = parser.parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    log_path = cached_log(args.cache_dir, args.events)
    rev = args.before or _before_rev()
    trees = Path(tempfile.mkdtemp(prefix="feed-trees-", dir=args.cache_dir))
    checkouts = [_checkout(rev, trees / "before")]
    if args.after:
        checkouts.append(_checkout(args.after, trees / "after"))
    sides = {"before": checkouts[0], "after": checkouts[1] if args.after else ROOT}
    live: dict[str, list[float]] = {"before": [], "after": []}
    wall: dict[str, list[float]] = {"before": [], "after": []}
    try:
        for round_ in range(1, args.rounds + 1):
            for side, code in sides.items():
                per_event = live_cpu_per_event(code, log_path, args.cache_dir)
                seconds, cpu = rebuild_seconds(code, log_path, args.cache_dir)
                live[side].append(per_event)
                wall[side].append(seconds)
                print(
                    f"round {round_} {side:<6}: live {per_event * 1e6:6.1f} us CPU/event, "
                    f"rebuild {seconds:6.2f} s wall ({cpu:.2f} s CPU)",
                    flush=True,
                )
    finally:
        for checkout in checkouts:
            subprocess.run(
                [GIT, "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=False
            )
    live_ratio = statistics.median(live["after"]) / statistics.median(live["before"])
    wall_ratio = statistics.median(wall["after"]) / statistics.median(wall["before"])
    for name, ratio in (("live CPU per event", live_ratio), ("rebuild wall time", wall_ratio)):
        verdict = "met" if ratio <= TARGET else "NOT met"
        print(f"{name}: after/before {ratio:.3f} (target <= {TARGET}): {verdict}")


if __name__ == "__main__":
    main()
