"""The naive baseline: random requests with no worker routing and no virtual time."""

from __future__ import annotations

import time

from harness.client import Route
from harness.scenario import ScenarioContext, scenario

ALL_INVARIANTS = ("known-scan-found", "results-after-complete", "progress-sane",
                  "monotonic-reads", "complete-is-whole", "owner-isolation", "expires",
                  "no-server-errors")


@scenario("naive-random-load", invariants=ALL_INVARIANTS, default=False)
def naive_random_load(ctx: ScenarioContext) -> None:
    """Send random requests over fresh connections, as a plain load test would.

    This is what a team without the harness does: start scans, poll and fetch results of
    scans at random, each request on a new connection so gunicorn picks the worker, and
    no clock moves. It runs for ``budget_s`` real seconds. ``scan-harness matrix`` runs it
    as the baseline that shows what worker routing and virtual time add; it is not part
    of a default run.
    """
    scan_ids: list[str] = []
    deadline = time.monotonic() + ctx.budget_s
    while time.monotonic() < deadline:
        roll = ctx.rng.random()
        if not scan_ids or roll < 0.2:
            accepted = ctx.client.discover(ctx.user, route=Route.ANY, process=ctx.process,
                                           scenario=ctx.name)
            if accepted.scan_id is not None:
                scan_ids.append(accepted.scan_id)
        elif roll < 0.8:
            ctx.status(ctx.rng.choice(scan_ids), route=Route.ANY)
        else:
            ctx.results(ctx.rng.choice(scan_ids), route=Route.ANY)
        time.sleep(ctx.poll_interval_s)
