"""Measure the load: requests per second with history recording on and off, and the checker.

Run with ``.venv/bin/python benchmarks/load.py [--users 50] [--seconds 15] [--rounds 5]``.
It prints Markdown tables; docs/benchmarks.md records them.

- *recording*: Locust loads one cluster of the reference service (4 workers, embedded
  store) in ``--rounds`` pairs of runs, one with history recording off and one with it
  on. The pairs alternate which run goes first, so that drift on a shared machine hits
  both alike.
  The figures are Locust's aggregated requests per second, and the CPU time that the
  Locust process spent per request, its start-up included. That CPU time comes from
  ``getrusage(RUSAGE_CHILDREN)``, which counts a child once it has been reaped, and the
  cluster's processes are reaped only at the end.
  The overhead of recording is ``1 - rps(on) / rps(off)`` over the medians.
- *recording cost*: the CPU time that recording one request (an invoke and a completion
  op, written to a file) takes in this process, without Locust, over 20,000 requests.
- *checker*: the history recorded by the last recording run is tiled, each copy with its
  own scan ids, users and processes and shifted past the previous copy in time, until
  it holds ``--ops`` ops. The figures are the time to read the file and the time
  ``check`` takes to judge it.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import secrets
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness.checker import check
from harness.client import RoutingClient
from harness.history import Function, History, HistoryRecorder, Op, RunRecord, read_history
from harness.load.locust_process import LocustOptions
from harness.load.merge import write_history
from harness.load.phase import LoadResult, LoadTarget, run_load
from harness.load.recording import LoadSettings, ProcessHistory
from harness.runner import RunConfig, running_cluster
from service_under_test.auth import mint_token


@dataclasses.dataclass
class Samples:
    """Requests per second and Locust's CPU time per request of each run."""

    rps: list[float] = dataclasses.field(default_factory=list)
    cpu_us_per_request: list[float] = dataclasses.field(default_factory=list)


def measure_recording(users: int, seconds: int, rounds: int,
                      work_dir: Path) -> tuple[dict[bool, Samples], History]:
    """Return the samples of the runs with recording on (True) and off (False), and the
    history of the last run with recording on."""
    secret = secrets.token_hex(8)
    run_dir = work_dir / "cluster"
    run_dir.mkdir()
    samples = {True: Samples(), False: Samples()}
    recorded = History(RunRecord(seed=0))
    with running_cluster(RunConfig(seed=1), run_dir, 1, "bench", secret) as (_, cluster):
        client = RoutingClient(cluster.base_url, HistoryRecorder(RunRecord(seed=0)),
                               token_for=lambda user: mint_token(secret, user))
        pids = client.pin_workers(4, is_alive=cluster.check_alive)
        client.close()
        for number in range(rounds):
            order = (False, True) if number % 2 == 0 else (True, False)
            for record in order:
                cpu_before = _children_cpu_s()
                result = _load_once(cluster.base_url, secret, users, seconds, record, pids,
                                    work_dir / f"round-{number}-{'on' if record else 'off'}",
                                    run_dir / "clock.json")
                cpu_s = _children_cpu_s() - cpu_before
                assert result.stats is not None, result.error
                samples[record].rps.append(result.stats.total.rps)
                samples[record].cpu_us_per_request.append(
                    cpu_s / result.stats.total.requests * 1e6)
                if record:
                    recorded = result.history
    return samples, recorded


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load_once(host: str, secret: str, users: int, seconds: int, record: bool,
               pids: list[int], run_dir: Path, clock_file: Path) -> LoadResult:
    run_dir.mkdir()
    options = LocustOptions(users=users, spawn_rate=users, run_time_s=seconds)
    target = LoadTarget(host, pids, clock_file, token_secret=secret)
    return run_load(target, options, run_dir, run=RunRecord(seed=1),
                    origin_ns=time.monotonic_ns(), record=record)


def measure_recording_cost(work_dir: Path, requests: int = 20_000) -> float:
    """Return the CPU microseconds that recording one status request takes."""
    settings = LoadSettings(token_secret="s", history_dir=work_dir / "cost",
                            run=RunRecord(seed=0))
    history = ProcessHistory(settings, settings.load_profile())
    scan_id = "5f1c" * 8
    body = {"scan_id": scan_id, "status": "scanning",
            "progress": {"strategies_completed": 3, "total_strategies": 14,
                         "opportunities_found_so_far": 2, "percentage": 21.4}}
    started = time.process_time()
    for _ in range(requests):
        invoke = history.invoke(Function.STATUS, process=4242_000_001, user="load-4242000001",
                                scan_id=scan_id, value=None)
        history.complete(invoke, status_code=200, body=body, worker_pid=4101, text=None)
    elapsed = time.process_time() - started
    history.close()
    return elapsed / requests * 1e6


def tile(history: History, target_ops: int) -> History:
    """Repeat ``history`` with fresh scan ids, users and processes until it has
    ``target_ops`` ops or more, each copy later in real and virtual time than the last."""
    ops = history.ops
    span_real = max(op.real_ns for op in ops) - min(op.real_ns for op in ops) + 1
    span_virtual = max(op.virtual_ns for op in ops) - min(op.virtual_ns for op in ops) + 1
    process_stride = max(op.process for op in ops) + 1
    tiled: list[Op] = []
    copy = 0
    while len(tiled) < target_ops:
        base = len(tiled)
        for op in ops:
            tiled.append(dataclasses.replace(
                op, index=base + op.index,
                invoke_index=None if op.invoke_index is None else base + op.invoke_index,
                scan_id=None if op.scan_id is None else f"{op.scan_id}-{copy}",
                value=_rename_scan(op.value, copy), user=f"{op.user}-{copy}",
                process=op.process + copy * process_stride,
                real_ns=op.real_ns + copy * span_real,
                virtual_ns=op.virtual_ns + copy * span_virtual,
            ))
        copy += 1
    return History(history.run, tiled)


def _rename_scan(value: dict[str, object] | None, copy: int) -> dict[str, object] | None:
    if value is None or "scan_id" not in value or value["scan_id"] is None:
        return value
    return {**value, "scan_id": f"{value['scan_id']}-{copy}"}


def measure_checker(history: History, target_ops: int,
                    work_dir: Path) -> tuple[int, float, float, str]:
    """Return the op count, the seconds to read and to check the tiled history, and the
    violated invariants with their counts (or ``none``)."""
    path = work_dir / "large-history.jsonl"
    write_history(tile(history, target_ops), path)

    started = time.monotonic()
    large = read_history(path)
    read_s = time.monotonic() - started

    started = time.monotonic()
    result = check(large)
    check_s = time.monotonic() - started
    violated = Counter(violation.invariant for violation in result.violations)
    found = ", ".join(f"{name} ({count})" for name, count in sorted(violated.items()))
    return len(large.ops), read_s, check_s, f"{result.verdict.value}: {found or 'none'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="simulated users per run")
    parser.add_argument("--seconds", type=int, default=15, help="run time of each run")
    parser.add_argument("--rounds", type=int, default=5, help="pairs of runs, off and on")
    parser.add_argument("--ops", type=int, default=1_000_000, help="ops of the tiled history")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        work_dir = Path(directory)
        samples, recorded = measure_recording(args.users, args.seconds, args.rounds, work_dir)
        cost_us = measure_recording_cost(work_dir)
        ops, read_s, check_s, verdict = measure_checker(recorded, args.ops, work_dir)

    off = statistics.median(samples[False].rps)
    on = statistics.median(samples[True].rps)
    print(f"{args.users} users, {args.seconds} s per run, {args.rounds} runs each")
    print()
    print("| history recording | req/s, median | min | max | Locust CPU per request, median |")
    print("|---|---|---|---|---|")
    for record, label in ((False, "off"), (True, "on")):
        rps = samples[record].rps
        cpu = statistics.median(samples[record].cpu_us_per_request)
        print(f"| {label} | {statistics.median(rps):.1f} | {min(rps):.1f} | {max(rps):.1f} | "
              f"{cpu:.0f} µs |")
    print()
    print(f"overhead of recording: {1 - on / off:.1%} of the requests per second")
    print(f"recording cost without Locust: {cost_us:.1f} µs of CPU per request")
    print()
    print("| history | ops | read | check | ops judged per second | verdict: violations |")
    print("|---|---|---|---|---|---|")
    print(f"| {len(recorded.ops)} recorded ops, tiled | {ops} | {read_s:.2f} s | "
          f"{check_s:.2f} s | {ops / check_s:,.0f} | {verdict} |")


if __name__ == "__main__":
    main()
