"""Poll a scan from another worker the moment its POST has answered."""

from __future__ import annotations

from harness.client import Route
from harness.scenario import ScenarioContext, scenario


@scenario(
    "poll-at-once-elsewhere",
    invariants=("known-scan-found", "progress-sane", "no-server-errors"),
)
def poll_at_once_elsewhere(ctx: ScenarioContext) -> None:
    """Poll from another worker right after the POST: finds records written too late.

    For each worker in turn, a scan is started there and, as soon as the POST has
    answered, its status and results are requested from the next worker. A service that
    writes the scan's record only after the first strategy finishes answers `not_found`
    (or 404) to these reads although the POST already promised the scan.
    """
    scan_ids = []
    for worker in ctx.each_worker():
        accepted = ctx.discover(route=worker)
        assert accepted.scan_id is not None
        ctx.status(accepted.scan_id, route=Route.OTHER)
        ctx.results(accepted.scan_id, route=Route.OTHER)
        scan_ids.append(accepted.scan_id)

    for scan_id in scan_ids:
        ctx.poll_until_terminal(scan_id, route=Route.OTHER)
