"""Measure virtual time: the one-hour expiry scenario per clock driver, and move latency.

Run with ``.venv/bin/python benchmarks/clock.py [--repeat 5]``. For each clock driver it
runs ``scan-harness run --scenario expiry-after-an-hour`` and reads, from the run's
history, the real time the scenario took and the real time each clock move took (from
writing the clock file to every worker and the store having taken it). It prints a
Markdown table; docs/benchmarks.md records it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from harness.clock_follower import DRIVERS
from harness.history import OpType, read_history
from harness.runner import ExitCode, RunConfig, execute

SCENARIO = "expiry-after-an-hour"


def measure(driver: str, store: str) -> tuple[float, float]:
    """Return the scenario's real duration and its clock move's latency, in seconds."""
    with tempfile.TemporaryDirectory() as directory:
        outcome = execute(RunConfig(clock_driver=driver, store=store, scenarios=(SCENARIO,),
                                    out=Path(directory) / "run"))
        if outcome.exit_code != ExitCode.PASS:
            raise SystemExit(f"the {SCENARIO} run with {driver} exited {outcome.exit_code}")
        history = read_history(outcome.run_dir / "history.jsonl")
    scenario = outcome.scenarios[0]
    move = history.clock_moves[0]
    # The move is recorded once every follower took it; the op before it was the last one
    # sent before the move began.
    before = max((op for op in history.ops
                  if op.index < move.index and op.type is not OpType.INVOKE),
                 key=lambda op: op.index)
    return scenario.duration_s, (move.real_ns - before.real_ns) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per driver and store")
    args = parser.parse_args()

    print("| driver | store | scenario real time, median (max) | clock move, median (max) |")
    print("|---|---|---|---|")
    for store in ("fakeredis", "redis-server"):
        for driver in DRIVERS:
            samples = [measure(driver, store) for _ in range(args.repeat)]
            durations = [duration for duration, _ in samples]
            moves = [move for _, move in samples]
            print(f"| {driver} | {store} | {statistics.median(durations):.2f} s "
                  f"({max(durations):.2f} s) | {statistics.median(moves) * 1000:.0f} ms "
                  f"({max(moves) * 1000:.0f} ms) |")


if __name__ == "__main__":
    main()
