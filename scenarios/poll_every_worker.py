"""Poll one scan from every worker, then read it from every worker once it is done."""

from __future__ import annotations

from harness.client import Route
from harness.scenario import ScenarioContext, scenario


@scenario(
    "poll-every-worker",
    invariants=("known-scan-found", "progress-sane", "monotonic-reads", "complete-is-whole",
                "results-after-complete", "no-server-errors"),
)
def poll_every_worker(ctx: ScenarioContext) -> None:
    """Poll a scan round-robin over every worker: finds state kept in one worker's memory.

    A scan accepted by worker 0 is polled by each worker in turn until it finishes, then
    its status and results are read once more from every worker. A lookup held only in
    the accepting worker, a worker that never opened the store, a lookup deleted on
    completion, progress missing or wrong in some answers, and a worker serving a stale
    copy all show up here as a `not_found`, a 404 or progress going backwards.
    """
    accepted = ctx.discover(route=0)
    scan_id = accepted.scan_id
    assert scan_id is not None

    ctx.poll_until_terminal(scan_id, route=Route.NEXT)
    for worker in ctx.each_worker():
        ctx.status(scan_id, route=worker)
    for worker in ctx.each_worker():
        ctx.results(scan_id, route=worker)
