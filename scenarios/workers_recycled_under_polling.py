"""Recycle workers, as --max-requests does, while their scans run and are polled."""

from __future__ import annotations

from harness.client import Route
from harness.scenario import ScenarioContext, scenario

RECYCLED = 2
POLL_AFTER_RECYCLE_S = 3.0


@scenario(
    "workers-recycled-under-polling",
    invariants=("terminates", "honest-errors", "known-scan-found", "progress-sane",
                "monotonic-reads", "complete-is-whole", "no-server-errors"),
)
def workers_recycled_under_polling(ctx: ScenarioContext) -> None:
    """Recycle workers while their scans run: finds scans a graceful exit orphans.

    Two workers the seed picks each accept a scan and are then recycled in turn with
    SIGTERM, the graceful exit that gunicorn's max_requests also causes. The worker
    finishes its requests, runs the app's shutdown and exits, and the arbiter starts a
    replacement. The scans are polled from the other workers while each worker shuts
    down, and from every worker afterwards. A correct service marks the scans it had to
    stop failed; one that does not leaves them scanning forever.
    """
    nemesis = ctx.require_nemesis()
    victims = ctx.rng.sample(range(ctx.workers), k=min(RECYCLED, ctx.workers))
    scan_ids = []
    for victim in victims:
        accepted = ctx.discover(route=victim)
        assert accepted.scan_id is not None
        scan_ids.append(accepted.scan_id)

    for victim in victims:
        nemesis.recycle_worker(victim, wait=False)
        for worker in ctx.each_worker():
            if worker != victim:
                for scan_id in scan_ids:
                    ctx.status(scan_id, route=worker)
        nemesis.await_replacements()

    for scan_id in scan_ids:
        ctx.poll_until_terminal(scan_id, route=Route.NEXT, timeout_s=POLL_AFTER_RECYCLE_S)
    for scan_id in scan_ids:
        for worker in ctx.each_worker():
            ctx.status(scan_id, route=worker)
