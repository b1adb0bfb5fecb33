"""Measure what the store proxy costs: per status read, and for the scenarios of a run.

Run with ``.venv/bin/python benchmarks/store_proxy.py [--repeat 3] [--reads 200]``. It
prints Markdown tables; docs/benchmarks.md records them. Both figures alternate between
the two modes ``--repeat`` times, so that load from other processes on the machine falls
on both alike.

- *status read*: the latency of one ``GET /status`` through the routing client, to one
  worker, of a finished scan (one Lua script call to the store), with the workers
  talking to the embedded store directly or through the proxy;
- *scenarios*: the wall time of ``scan-harness run`` with the scenarios that need no
  nemesis and no load phase, with ``RunConfig.store_proxy`` off and on, alternating.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from harness.client import RoutingClient
from harness.cluster import Cluster, ClusterConfig
from harness.history import HistoryRecorder, RunRecord
from harness.runner import ExitCode, RunConfig, execute
from harness.store import EmbeddedStore
from harness.store_proxy import StoreProxy
from service_under_test.auth import mint_token

PLAIN_SCENARIOS = ("clock-moves-while-scanning", "cross-user-read", "expiry-after-an-hour",
                   "follow-progress", "poll-at-once-elsewhere", "poll-every-worker",
                   "results-twice", "retention-boundary", "same-filters")


def measure_reads(reads: int, through_proxy: bool) -> list[float]:
    """Return the latency in seconds of each of ``reads`` status reads on worker 0."""
    with tempfile.TemporaryDirectory() as directory:
        run_dir = Path(directory)
        secret = secrets.token_hex(8)
        store = EmbeddedStore(key_prefix="bench:")
        store.start(run_dir)
        proxy = StoreProxy((store.host, store.port)) if through_proxy else None
        url = store.url
        if proxy is not None:
            proxy.start()
            url = proxy.url
        cluster = Cluster(ClusterConfig(workers=2, env={
            "SCAN_SERVICE_REDIS_URL": url, "SCAN_SERVICE_KEY_PREFIX": "bench:",
            "SCAN_SERVICE_TOKEN_SECRET": secret,
            "SCAN_SERVICE_STRATEGY_DURATION_S": "0"}), run_dir)
        try:
            cluster.start()
            client = RoutingClient(cluster.base_url, HistoryRecorder(RunRecord(seed=0)),
                                   token_for=lambda user: mint_token(secret, user))
            client.pin_workers(2)
            scan_id = client.discover("bench", route=0).scan_id
            assert scan_id is not None
            for _ in range(20):  # warm up: connections, script cache
                client.status("bench", scan_id, route=0)
            latencies = []
            for _ in range(reads):
                started = time.perf_counter()
                client.status("bench", scan_id, route=0)
                latencies.append(time.perf_counter() - started)
            client.close()
        finally:
            cluster.stop()
            if proxy is not None:
                proxy.stop()
            store.stop()
    return latencies


def measure_run(through_proxy: bool) -> float:
    """Return the wall time of the plain scenarios; fail if they do not pass."""
    with tempfile.TemporaryDirectory() as directory:
        started = time.monotonic()
        outcome = execute(RunConfig(seed=21, scenarios=PLAIN_SCENARIOS,
                                    store_proxy=through_proxy, out=Path(directory) / "run"))
        elapsed = time.monotonic() - started
    if outcome.exit_code != ExitCode.PASS:
        raise SystemExit(f"the run exited {outcome.exit_code}: {outcome.error}")
    return elapsed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of the scenarios per mode")
    parser.add_argument("--reads", type=int, default=200,
                        help="status reads per mode and repeat")
    args = parser.parse_args()

    latencies: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeat):
        for through_proxy in (False, True):
            latencies[through_proxy] += measure_reads(args.reads, through_proxy)
    print("| status read | median | p95 | reads |")
    print("|---|---|---|---|")
    for label, through_proxy in (("direct", False), ("through the proxy", True)):
        samples = latencies[through_proxy]
        print(f"| {label} | {statistics.median(samples) * 1000:.2f} ms | "
              f"{percentile(samples, 0.95) * 1000:.2f} ms | {len(samples)} |")

    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeat):
        for through_proxy in (False, True):
            times[through_proxy].append(measure_run(through_proxy))
    print()
    print("| nine plain scenarios | median | min | max | runs |")
    print("|---|---|---|---|---|")
    for label, through_proxy in (("direct", False), ("through the proxy", True)):
        samples = times[through_proxy]
        print(f"| {label} | {statistics.median(samples):.2f} s | {min(samples):.2f} s | "
              f"{max(samples):.2f} s | {len(samples)} |")


if __name__ == "__main__":
    main()
