"""Jump an hour ahead and ask every worker for a scan that should be long gone."""

from __future__ import annotations

from harness.client import Route
from harness.scenario import ScenarioContext, scenario

HOUR_S = 3600.0


@scenario("expiry-after-an-hour", invariants=("expires", "no-server-errors"))
def expiry_after_an_hour(ctx: ScenarioContext) -> None:
    """Jump an hour past a finished scan: finds scans that never expire.

    Two scans finish; virtual time jumps one hour ahead, past the retention of both, and
    every worker is asked for their status and results. A scan whose keys lost their TTL
    is still found, and one found again after it was gone shows a resurrecting write.
    """
    scan_ids = []
    for worker in (0, ctx.workers - 1):
        accepted = ctx.discover(route=worker)
        assert accepted.scan_id is not None
        scan_ids.append(accepted.scan_id)
    for scan_id in scan_ids:
        ctx.poll_until_terminal(scan_id, route=Route.ACCEPTING)

    ctx.advance(HOUR_S)
    for scan_id in scan_ids:
        for worker in ctx.each_worker():
            ctx.status(scan_id, route=worker)
            ctx.results(scan_id, route=worker)
