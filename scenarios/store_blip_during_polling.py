"""Fail the store for a moment, then for longer than the retry budget, while a scan is polled."""

from __future__ import annotations

from harness.client import Route
from harness.scenario import ScenarioContext, scenario
from service_under_test.strategies import STRATEGY_IDS

BLIP_S = 0.3
# Half the strategies: the scan still runs through both faults, and the run is shorter.
STRATEGIES = list(STRATEGY_IDS[:7])


@scenario(
    "store-blip-during-polling",
    invariants=("honest-errors", "known-scan-found", "terminates", "progress-sane",
                "monotonic-reads", "complete-is-whole", "no-server-errors"),
)
def store_blip_during_polling(ctx: ScenarioContext) -> None:
    """Fail the store while a scan is polled: finds store errors reported as not_found.

    A scan runs while every worker is asked for it. First the store proxy resets every
    store connection, new ones included, for 0.3 s, a blip shorter than the service's
    retry budget, while every worker is asked for the status and one for the results.
    Then every Lua script call gets an error reply for longer than the budget, while
    the status is read once more. Reads must return the scan, or 503 with Retry-After
    once the budget is spent; never not_found, 404 or 500. The scan must still finish
    once the store is back.
    """
    nemesis = ctx.require_nemesis()
    accepted = ctx.discover(route=ctx.rng.randrange(ctx.workers), strategy_ids=STRATEGIES)
    scan_id = accepted.scan_id
    assert scan_id is not None

    blip = nemesis.for_seconds(BLIP_S, nemesis.store_outage())
    ctx.results(scan_id, route=Route.ACCEPTING)
    for worker in ctx.each_worker():
        ctx.status(scan_id, route=worker)
    blip.wait()

    with nemesis.store_errors(["EVALSHA"]):
        ctx.status(scan_id, route=Route.OTHER)

    ctx.poll_until_terminal(scan_id, route=Route.NEXT)
    for worker in ctx.each_worker():
        ctx.results(scan_id, route=worker)
