"""``scan-harness serve``: the reference service on a cluster, kept up until Ctrl-C.

For exploring by hand, and for pointing a plain Locust run or a browser at a cluster.
It prints the URL, the token secret, ready-made tokens and the command that mints more.
It also prints the commands that load the cluster with plain Locust and judge what the
Locust users saw.
"""

from __future__ import annotations

import datetime
import secrets
import shlex
import sys
import threading
from pathlib import Path

from rich.console import Console

from harness.client import API_PREFIX, RoutingClient
from harness.history import HistoryRecorder, RunRecord
from harness.load import LOCUSTFILE
from harness.runner import DEFAULT_RUNS_DIR, RunConfig, running_cluster, validate
from service_under_test.auth import mint_token


def serve_until_interrupted(config: RunConfig, port: int, console: Console) -> None:
    """Start the store and cluster, print how to reach them, and wait for Ctrl-C."""
    validate(config)
    seed = config.seed if config.seed is not None else 0
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = config.out or DEFAULT_RUNS_DIR / f"{stamp}-serve"
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"serve-{stamp}-{secrets.token_hex(3)}"
    secret = secrets.token_hex(16)

    with running_cluster(config, run_dir, seed, run_id, secret, port=port) as (store, cluster):
        recorder = HistoryRecorder(RunRecord(seed=seed, workers=config.workers))
        client = RoutingClient(cluster.base_url, recorder,
                               token_for=lambda user: mint_token(secret, user))
        try:
            pids = client.pin_workers(config.workers, is_alive=cluster.check_alive)
        finally:
            client.close()

        mint = (f"{shlex.quote(sys.executable)} -c 'from service_under_test.auth import "
                f"mint_token; print(mint_token(\"{secret}\", \"USER\"))'")
        console.print(f"serving the reference service at {cluster.base_url}{API_PREFIX}")
        console.print(f"workers (pid): {', '.join(f'{i} ({pid})' for i, pid in enumerate(pids))}")
        console.print(f"store: {store.name} at {store.url}, key prefix {store.key_prefix}")
        console.print(f"faults: {', '.join(config.faults) or 'none'}")
        console.print(f"token secret: {secret}")
        for user in ("alice", "bob"):
            console.print(f"token for {user}: {mint_token(secret, user)}")
        console.print(f"mint a token for USER: {mint}")
        console.print(f"virtual clock file: {run_dir / 'clock.json'} (real time until moved)")
        console.print(f"logs: {run_dir}")
        _print_locust_commands(console, cluster.base_url, secret, run_dir, pids)
        console.print("press Ctrl-C to stop")
        threading.Event().wait()


def _print_locust_commands(console: Console, base_url: str, secret: str, run_dir: Path,
                           pids: list[int]) -> None:
    """Print the commands that load this cluster with plain Locust and judge the history."""
    history_dir = run_dir / "load-history"
    merged = run_dir / "load-history.jsonl"
    environment = (f"SCAN_LOAD_TOKEN_SECRET={secret} "
                   f"SCAN_LOAD_HISTORY_DIR={shlex.quote(str(history_dir))} "
                   f"SCAN_HARNESS_CLOCK_FILE={shlex.quote(str(run_dir / 'clock.json'))}")
    locust = (f"{environment} {shlex.quote(sys.executable)} -m locust "
              f"-f {shlex.quote(str(LOCUSTFILE))} --host {base_url} --web-host 127.0.0.1")
    worker_options = " ".join(f"--worker-pid {pid}" for pid in pids)
    console.print("load it with Locust (web UI on http://127.0.0.1:8089), then judge what "
                  "its users saw:")
    console.print(f"  {locust}", soft_wrap=True, highlight=False)
    console.print(f"  scan-harness merge-history {worker_options} {shlex.quote(str(merged))} "
                  f"{shlex.quote(str(history_dir))}/*.jsonl", soft_wrap=True, highlight=False)
    console.print(f"  scan-harness check {shlex.quote(str(merged))}", soft_wrap=True,
                  highlight=False)
