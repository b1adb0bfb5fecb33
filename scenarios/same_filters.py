"""Start two scans with the same filters, the second while the first runs."""

from __future__ import annotations

from harness.client import Answer, Route
from harness.scenario import ScenarioContext, progress_of, scenario

SYMBOLS = ["BTC-USD", "ETH-USD"]


@scenario(
    "same-filters",
    invariants=("known-scan-found", "monotonic-reads", "progress-sane", "complete-is-whole",
                "results-after-complete", "no-server-errors"),
)
def same_filters(ctx: ScenarioContext) -> None:
    """Run two scans with identical filters: finds state keyed by filters, not scan id.

    The first scan is polled until a few strategies have finished; then the same user
    starts a second scan with the same filters on another worker. Both are followed to
    the end and their results fetched. A service that keys progress or results by user
    and filters lets the second scan reset the first one's progress and replace its
    results.
    """
    first = ctx.discover(route=0, symbols=SYMBOLS)
    assert first.scan_id is not None

    def has_progress(answer: Answer) -> bool:
        return progress_of(answer) >= 2 or answer.status in ("complete", "failed")

    ctx.poll_until_terminal(first.scan_id, route=Route.ACCEPTING, until=has_progress)
    second = ctx.discover(route=1 % ctx.workers, symbols=SYMBOLS)
    assert second.scan_id is not None

    for scan_id in (first.scan_id, second.scan_id):
        ctx.poll_until_terminal(scan_id, route=Route.NEXT)
    for scan_id in (first.scan_id, second.scan_id):
        ctx.results(scan_id, route=Route.NEXT)
