"""Read one user's scan as another user, from every worker."""

from __future__ import annotations

from harness.client import Route
from harness.scenario import ScenarioContext, scenario


@scenario("cross-user-read", invariants=("owner-isolation", "no-server-errors"))
def cross_user_read(ctx: ScenarioContext) -> None:
    """Read a scan as another user: finds read paths that skip the owner check.

    One user starts a scan; a second user, who knows its id, asks every worker for its
    status and results while it runs and again after it finished. Every one of those
    answers must be `not_found` or 404.
    """
    accepted = ctx.discover(route=0)
    scan_id = accepted.scan_id
    assert scan_id is not None

    for worker in ctx.each_worker():
        ctx.status(scan_id, route=worker, user=ctx.other_user)
        ctx.results(scan_id, route=worker, user=ctx.other_user)

    ctx.poll_until_terminal(scan_id, route=Route.ACCEPTING)
    for worker in ctx.each_worker():
        ctx.status(scan_id, route=worker, user=ctx.other_user)
        ctx.results(scan_id, route=worker, user=ctx.other_user)
