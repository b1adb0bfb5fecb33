"""Measure the main job: time to a ready cluster, and the wall time of ``scan-harness run``.

Run with ``.venv/bin/python benchmarks/main_job.py [--repeat 5]``. It prints a Markdown
table of the median, minimum and maximum of each figure; docs/benchmarks.md records it.

- *ready*: from starting the embedded store to one connection pinned to each of the
  4 workers, which is the moment the first scenario step can run;
- *run*: the wall time of ``scan-harness run`` with no options, as a user types it.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.client import RoutingClient
from harness.cluster import Cluster, ClusterConfig
from harness.history import HistoryRecorder, RunRecord
from harness.store import EmbeddedStore
from service_under_test.auth import mint_token


def measure_ready(workers: int) -> float:
    """Return the seconds from starting the store to every worker answering."""
    with tempfile.TemporaryDirectory() as directory:
        run_dir = Path(directory)
        secret = secrets.token_hex(8)
        started = time.monotonic()
        store = EmbeddedStore(key_prefix="bench:")
        store.start(run_dir)
        cluster = Cluster(ClusterConfig(workers=workers, env={
            "SCAN_SERVICE_REDIS_URL": store.url, "SCAN_SERVICE_TOKEN_SECRET": secret}), run_dir)
        try:
            cluster.start()
            client = RoutingClient(cluster.base_url, HistoryRecorder(RunRecord(seed=0)),
                                   token_for=lambda user: mint_token(secret, user))
            client.pin_workers(workers)
            elapsed = time.monotonic() - started
            client.close()
        finally:
            cluster.stop()
            store.stop()
    return elapsed


def measure_run() -> float:
    """Return the wall time of a default ``scan-harness run``; fail if it does not pass."""
    with tempfile.TemporaryDirectory() as directory:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--out",
                                 str(Path(directory) / "run")], capture_output=True, text=True)
        elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"scan-harness run exited {result.returncode}:\n{result.stdout[-2000:]}")
    return elapsed


def row(name: str, samples: list[float]) -> str:
    return (f"| {name} | {statistics.median(samples):.2f} s | {min(samples):.2f} s | "
            f"{max(samples):.2f} s | {len(samples)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="samples per figure")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    ready = [measure_ready(args.workers) for _ in range(args.repeat)]
    runs = [measure_run() for _ in range(args.repeat)]

    print("| figure | median | min | max | samples |")
    print("|---|---|---|---|---|")
    print(row(f"store start to {args.workers} workers answering", ready))
    print(row("`scan-harness run` (defaults), wall time", runs))


if __name__ == "__main__":
    main()
