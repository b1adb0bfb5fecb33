"""``scan-harness serve``: the reference service on a cluster, kept up until Ctrl-C.

For exploring by hand, and for pointing a plain Locust run or a browser at a cluster:
it prints the URL, the token secret, ready-made tokens and the command that mints more.
"""

from __future__ import annotations

import datetime
import secrets
import shlex
import sys
import threading

from rich.console import Console

from harness.client import API_PREFIX, RoutingClient
from harness.history import HistoryRecorder, RunRecord
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
        console.print("press Ctrl-C to stop")
        threading.Event().wait()
