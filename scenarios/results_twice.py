"""Fetch a finished scan's results several times, from different workers."""

from __future__ import annotations

from harness.client import Route
from harness.scenario import ScenarioContext, scenario


@scenario(
    "results-twice",
    invariants=("known-scan-found", "results-after-complete", "no-server-errors"),
)
def results_twice(ctx: ScenarioContext) -> None:
    """Fetch results twice from two workers: finds results lost after `complete`.

    The scan is polled on the worker that accepted it until it is `complete`; then its
    results are fetched from another worker, from the accepting worker and from another
    worker again. Results deleted on first read, or a lookup removed when the scan
    finished, turn the later fetches into 404 right after `complete`.
    """
    accepted = ctx.discover(route=ctx.rng.randrange(ctx.workers))
    scan_id = accepted.scan_id
    assert scan_id is not None

    ctx.poll_until_terminal(scan_id, route=Route.ACCEPTING)
    ctx.results(scan_id, route=Route.OTHER)
    ctx.results(scan_id, route=Route.ACCEPTING)
    ctx.results(scan_id, route=Route.OTHER)
