"""Move virtual time forward in short steps while a scan runs."""

from __future__ import annotations

from harness.client import Answer, Route
from harness.scenario import TERMINAL_STATES, ScenarioContext, scenario

STEPS = 3


@scenario(
    "clock-moves-while-scanning",
    invariants=("known-scan-found", "progress-sane", "monotonic-reads", "complete-is-whole",
                "results-after-complete", "no-server-errors"),
)
def clock_moves_while_scanning(ctx: ScenarioContext) -> None:
    """Jump ahead in steps shorter than the staleness bound while a scan runs.

    Each jump is a stretch of virtual time in which the scan's worker sent no heartbeat,
    so the jumps together stay under half the staleness bound. A correct service keeps
    the scan alive, lets it finish and keeps it found on every worker; one that judges
    liveness or expiry by the wrong clock loses it or reports it failed.
    """
    step_s = ctx.stale_s / (2 * STEPS)
    accepted = ctx.discover(route=ctx.rng.randrange(ctx.workers))
    scan_id = accepted.scan_id
    assert scan_id is not None

    last: Answer | None = None
    for _ in range(STEPS):
        last = ctx.status(scan_id, route=Route.NEXT)
        if last.status in TERMINAL_STATES:
            break
        ctx.advance(step_s)

    ctx.poll_until_terminal(scan_id, route=Route.NEXT)
    for worker in ctx.each_worker():
        ctx.results(scan_id, route=worker)
