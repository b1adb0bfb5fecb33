"""Slow every store command down while a scan runs: first a little, then past the timeout."""

from __future__ import annotations

from harness.client import Route
from harness.scenario import ScenarioContext, scenario
from service_under_test.strategies import STRATEGY_IDS

SLOW_S = 0.1
# Longer than the service's store timeout, half its one-second retry budget.
STALLED_S = 0.8
# Half the strategies: the scan still runs through both spikes, and the run is shorter.
STRATEGIES = list(STRATEGY_IDS[:7])


@scenario(
    "latency-spike",
    invariants=("honest-errors", "known-scan-found", "terminates", "progress-sane",
                "monotonic-reads", "complete-is-whole", "no-server-errors"),
)
def latency_spike(ctx: ScenarioContext) -> None:
    """Add store latency while a scan runs: finds timeouts reported as not_found.

    While a scan runs, the store proxy delays every store command by 0.1 s, below the
    service's store timeout, and every worker is asked for the scan. Then the delay is
    0.8 s, above the timeout, and the scan is read once more. The first reads must return the
    scan, the last the scan or 503. Writes that timed out may still reach the store
    late; the scan must still finish with every strategy counted once.
    """
    nemesis = ctx.require_nemesis()
    accepted = ctx.discover(route=ctx.rng.randrange(ctx.workers), strategy_ids=STRATEGIES)
    scan_id = accepted.scan_id
    assert scan_id is not None

    with nemesis.store_latency(SLOW_S):
        for worker in ctx.each_worker():
            ctx.status(scan_id, route=worker)
    with nemesis.store_latency(STALLED_S):
        ctx.status(scan_id, route=Route.OTHER)

    ctx.poll_until_terminal(scan_id, route=Route.NEXT)
    for worker in ctx.each_worker():
        ctx.results(scan_id, route=worker)
