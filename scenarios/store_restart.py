"""Restart the store while scans run: once keeping its data, once losing it."""

from __future__ import annotations

from harness.client import Answer, Route
from harness.scenario import TERMINAL_STATES, ScenarioContext, progress_of, scenario
from service_under_test.strategies import STRATEGY_IDS

# Half the strategies: each scan still runs across its restart, and the run is shorter.
STRATEGIES = list(STRATEGY_IDS[:7])


@scenario(
    "store-restart",
    invariants=("known-scan-found", "terminates", "honest-errors", "progress-sane",
                "monotonic-reads", "complete-is-whole", "results-after-complete",
                "no-server-errors"),
)
def store_restart(ctx: ScenarioContext) -> None:
    """Restart the store under running scans: finds workers that never reconnect.

    A scan runs while the store process restarts with its data kept; every worker must
    find the scan again, and the scan must finish. A second scan runs while the store
    restarts empty: its loss is known, so reads that miss it are excused. A third scan,
    started after that, must run from start to end, which shows that every worker
    reconnected to the new store and loaded its Lua scripts again.
    """
    nemesis = ctx.require_nemesis()

    def running_with_progress(answer: Answer) -> bool:
        return progress_of(answer) >= 1 or answer.status in TERMINAL_STATES

    kept = ctx.discover(route=ctx.rng.randrange(ctx.workers), strategy_ids=STRATEGIES)
    assert kept.scan_id is not None
    ctx.poll_until_terminal(kept.scan_id, route=Route.OTHER, until=running_with_progress)
    nemesis.restart_store(keep_data=True)
    for worker in ctx.each_worker():
        ctx.status(kept.scan_id, route=worker)
    ctx.poll_until_terminal(kept.scan_id, route=Route.NEXT)

    lost = ctx.discover(route=ctx.rng.randrange(ctx.workers), strategy_ids=STRATEGIES)
    assert lost.scan_id is not None
    nemesis.restart_store(keep_data=False)
    for worker in ctx.each_worker():
        ctx.status(lost.scan_id, route=worker)

    fresh = ctx.discover(route=ctx.rng.randrange(ctx.workers), strategy_ids=STRATEGIES)
    assert fresh.scan_id is not None
    ctx.poll_until_terminal(fresh.scan_id, route=Route.NEXT)
    for worker in ctx.each_worker():
        ctx.results(fresh.scan_id, route=worker)
