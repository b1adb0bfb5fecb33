"""Follow a scan's progress closely, alternating between workers."""

from __future__ import annotations

from harness.client import Route
from harness.scenario import ScenarioContext, scenario


@scenario(
    "follow-progress",
    invariants=("progress-sane", "monotonic-reads", "complete-is-whole", "no-server-errors"),
)
def follow_progress(ctx: ScenarioContext) -> None:
    """Poll progress often from alternating workers: finds lost or stale progress.

    Several scans run side by side, each accepted by a worker the seed picks, and each is
    polled in quick succession from worker after worker until it finishes. Counters
    updated by read-modify-write lose increments (a finished scan short of its total, a
    count going backwards), and per-worker caches show progress moving backwards.
    """
    scan_ids = []
    for _ in range(2):
        accepted = ctx.discover(route=ctx.rng.randrange(ctx.workers))
        assert accepted.scan_id is not None
        scan_ids.append(accepted.scan_id)

    for scan_id in scan_ids:
        ctx.poll_until_terminal(scan_id, route=Route.NEXT)
        ctx.status(scan_id, route=Route.OTHER)
