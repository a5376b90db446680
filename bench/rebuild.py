"""Rebuild benchmark: `python -m app rebuild` against a lean one-table replay, as commands.

`scripts/bench rebuild [--events 200000 1000000] [--rounds 2]`

1. Generates a log of N realistic deliveries (bench/deliveries.py, via generate.py),
   cached between runs under --cache-dir, keyed by N.
2. Runs, alternating a, b, a, b, ... each as a whole command from process start to exit
   on the same log (hard-linked into a fresh data directory each time):
   (a) the lean replay, `bench/lean_replay.py` (ten short columns per event, one table);
   (b) `python -m app rebuild` of every projection.
3. Prints each run's wall time, CPU time (user + system of the command and every process
   it started) and the peak of the RSS of all its processes together, sampled from
   /proc; then the ratio a/b of wall times (target >= 1.0: the rebuild no slower) and
   the peak memory (target < 1 GiB at 1M).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from generate import generate  # bench/generate.py, beside this script

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
GIB = 1 << 30
SAMPLE_SECONDS = 0.02
PAGE = os.sysconf("SC_PAGE_SIZE")


class Result(msgspec.Struct):
    """One command's run."""

    kind: str
    seconds: float
    cpu_seconds: float
    peak_rss: int


def _tree_rss(root: int) -> int:
    """The resident set of `root` and all its descendants now, in bytes."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a process that ended meanwhile
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        rss[pid] = int(fields[21]) * PAGE
    total = 0
    for pid, size in rss.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            total += size
    return total


def run_command(kind: str, argv: list[str], env: dict[str, str]) -> Result:
    """Run `argv` to its end; its wall time, its tree's CPU time and peak joint RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE)
    peak = 0
    try:
        while process.poll() is None:
            peak = max(peak, _tree_rss(process.pid))
            time.sleep(SAMPLE_SECONDS)
    except BaseException:  # interrupted: leave nothing running
        process.kill()
        process.wait()
        raise
    seconds = time.perf_counter() - started
    output = process.stdout.read().decode() if process.stdout else ""
    if process.returncode != 0:
        raise RuntimeError(f"{argv!r} exited with {process.returncode}:\n{output}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Result(kind, seconds, cpu, peak)


def cached_log(cache_dir: Path, events: int) -> Path:
    """The generated log of `events` deliveries, generated on first use."""
    path = cache_dir / f"events-{events}.db"
    if not path.exists():
        print(f"generating {events:,} deliveries into {path} ...", flush=True)
        started = time.perf_counter()
        partial = path.with_suffix(".partial")
        for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
            leftover.unlink(missing_ok=True)
        generate(partial, events)
        partial.rename(path)
        print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def data_dir_with(log_path: Path, parent: Path, prefix: str) -> Path:
    """A fresh data directory under `parent` holding the log (hard-linked where it can be)."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    events = work / "events.db"
    try:
        events.hardlink_to(log_path)
    except OSError:
        shutil.copyfile(log_path, events)
    events.chmod(0o600)  # the product refuses a log that other users can read
    return work


def measure(kind: str, log_path: Path, cache_dir: Path) -> Result:
    """One run of `kind` on a fresh data directory holding the log."""
    work = data_dir_with(log_path, cache_dir, f"{kind}-")
    try:
        events = work / "events.db"
        env = dict(os.environ)
        env.pop("BITBYBIT_DATA_DIR", None)
        if kind == "lean":
            argv = [sys.executable, str(BENCH_DIR / "lean_replay.py"), str(events)]
            argv.append(str(work / "lean.db"))
        else:
            argv = [sys.executable, "-m", "app", "rebuild", "--data-dir", str(work)]
        return run_command(kind, argv, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _line(size: int, round_: int, result: Result) -> str:
    label = "(a) lean replay" if result.kind == "lean" else "(b) rebuild    "
    return (
        f"{size:>9,} round {round_} {label}: {result.seconds:6.2f} s wall, "
        f"{result.cpu_seconds:6.2f} s CPU, peak RSS of all processes "
        f"{result.peak_rss / 2**20:,.0f} MiB"
    )


def bench(size: int, rounds: int, cache_dir: Path) -> None:
    """Alternate the two commands on a log of `size` deliveries and print the figures."""
    log_path = cached_log(cache_dir, size)
    lean: list[Result] = []
    rebuilt: list[Result] = []
    for round_ in range(1, rounds + 1):
        for kind, results in (("lean", lean), ("rebuild", rebuilt)):
            result = measure(kind, log_path, cache_dir)
            results.append(result)
            print(_line(size, round_, result), flush=True)
    pairs = [a.seconds / b.seconds for a, b in zip(lean, rebuilt, strict=True)]
    best = min(r.seconds for r in lean) / min(r.seconds for r in rebuilt)
    cpu = [b.cpu_seconds / a.cpu_seconds for a, b in zip(lean, rebuilt, strict=True)]
    peak = max(r.peak_rss for r in rebuilt)
    print(
        f"{size:>9,} ratio lean/rebuild wall time: best-vs-best {best:.2f}, per round "
        f"{', '.join(f'{p:.2f}' for p in pairs)} (target >= 1.0); rebuild CPU / lean CPU "
        f"per round {', '.join(f'{c:.2f}' for c in cpu)}; rebuild peak RSS of all "
        f"processes {peak / 2**20:,.0f} MiB (target < {GIB / 2**20:,.0f} MiB)",
        flush=True,
    )


def main() -> None:
    """Generate (or reuse) the logs, alternate the measurements, print the figures."""
    parser = argparse.ArgumentParser(description="Benchmark `rebuild` against a lean replay.")
    parser.add_argument("--events", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=2, help="a/b pairs per size (default 2)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "bitbybit-rebuild-bench",
        help="where generated logs are kept between runs",
    )
    args = parser.parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    for size in args.events:
        bench(size, args.rounds, args.cache_dir)


if __name__ == "__main__":
    main()
