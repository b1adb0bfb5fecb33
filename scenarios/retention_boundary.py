"""Read a finished scan one second before its retention ends, then one second after."""

from __future__ import annotations

from harness.client import Route
from harness.scenario import ScenarioContext, scenario

NS_PER_S = 1_000_000_000


@scenario(
    "retention-boundary",
    invariants=("known-scan-found", "results-after-complete", "expires", "no-server-errors"),
)
def retention_boundary(ctx: ScenarioContext) -> None:
    """Jump to both edges of retention: finds keys that expire early, late or never.

    A scan runs to completion. Virtual time then jumps to one second before the earliest
    moment its data may expire (retention after the POST), and every worker must still
    return its status and results; then to one second past the latest moment (retention
    after the first read that saw it complete), and every worker must have forgotten it.
    A lookup or results key with a shorter TTL than the record fails the first half; a
    write that drops the TTL fails the second.
    """
    accepted = ctx.discover(route=0)
    scan_id = accepted.scan_id
    assert scan_id is not None
    finished = ctx.poll_until_terminal(scan_id, route=Route.ACCEPTING)
    if finished is None:
        return
    written_at_least_s = accepted.invoke.virtual_ns / NS_PER_S
    written_at_most_s = finished.op.virtual_ns / NS_PER_S

    ctx.move_to(written_at_least_s + ctx.retention_s - 1)
    for worker in ctx.each_worker():
        ctx.status(scan_id, route=worker)
        ctx.results(scan_id, route=worker)

    ctx.move_to(written_at_most_s + ctx.retention_s + 1)
    for worker in ctx.each_worker():
        ctx.status(scan_id, route=worker)
        ctx.results(scan_id, route=worker)
