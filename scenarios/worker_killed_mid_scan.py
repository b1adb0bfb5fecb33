"""Kill the worker that runs a scan, then let virtual time pass as for a dead worker."""

from __future__ import annotations

from harness.client import Answer, Route
from harness.scenario import TERMINAL_STATES, ScenarioContext, progress_of, scenario


@scenario(
    "worker-killed-mid-scan",
    invariants=("terminates", "honest-errors", "known-scan-found", "progress-sane",
                "monotonic-reads", "no-server-errors"),
)
def worker_killed_mid_scan(ctx: ScenarioContext) -> None:
    """Kill a worker while its scan runs: finds scans left scanning forever.

    A scan starts on a worker the seed picks and is polled from another worker until a
    strategy has finished. Then its worker is SIGKILLed, the arbiter starts a
    replacement, and every worker, the replacement too, is asked for the scan. Virtual
    time then jumps past the staleness bound, as it would pass for a scan whose worker
    is gone, and every worker must report the scan failed. A service that keeps no
    heartbeat leaves it scanning forever.
    """
    nemesis = ctx.require_nemesis()
    victim = ctx.rng.randrange(ctx.workers)
    accepted = ctx.discover(route=victim)
    scan_id = accepted.scan_id
    assert scan_id is not None

    def running_with_progress(answer: Answer) -> bool:
        return progress_of(answer) >= 1 or answer.status in TERMINAL_STATES

    ctx.poll_until_terminal(scan_id, route=Route.OTHER, until=running_with_progress)
    nemesis.kill_worker(victim)
    for worker in ctx.each_worker():
        ctx.status(scan_id, route=worker)

    ctx.advance(ctx.stale_s + 1, simulates_dead_worker=True)
    for worker in ctx.each_worker():
        ctx.status(scan_id, route=worker)
        ctx.results(scan_id, route=worker)
