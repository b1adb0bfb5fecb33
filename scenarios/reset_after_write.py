"""Cut store connections right after progress writes reached the store."""

from __future__ import annotations

from harness.client import Answer, Route
from harness.scenario import TERMINAL_STATES, ScenarioContext, progress_of, scenario

CUT_WRITES = 3
# Progress writes and heartbeats are the Lua script calls whose keys include the scan's
# done set; reads name only the lookup key.
PROGRESS_WRITE = b":done:"


@scenario(
    "reset-after-write",
    invariants=("complete-is-whole", "progress-sane", "monotonic-reads",
                "results-after-complete", "terminates", "honest-errors", "no-server-errors"),
)
def reset_after_write(ctx: ScenarioContext) -> None:
    """Lose the replies to progress writes: finds progress counted twice or not at all.

    While a scan runs, the store proxy three times lets the next progress write reach
    the store and resets the connection in place of its reply, so the worker cannot tell
    whether the write happened and retries it. The scan must complete with exactly the
    strategies it promised, and its results must hold one entry per strategy, on every
    worker.
    """
    nemesis = ctx.require_nemesis()
    accepted = ctx.discover(route=ctx.rng.randrange(ctx.workers))
    scan_id = accepted.scan_id
    assert scan_id is not None

    seen = 0
    for _ in range(CUT_WRITES):
        def moved_on(answer: Answer, before: int = seen) -> bool:
            return progress_of(answer) > before or answer.status in TERMINAL_STATES

        with nemesis.reset_after_reply("EVALSHA", count=1, arg_contains=PROGRESS_WRITE):
            last = ctx.poll_until_terminal(scan_id, route=Route.NEXT, until=moved_on)
        if last is None or last.status in TERMINAL_STATES:
            break
        seen = progress_of(last)

    ctx.poll_until_terminal(scan_id, route=Route.NEXT)
    for worker in ctx.each_worker():
        ctx.status(scan_id, route=worker)
        ctx.results(scan_id, route=worker)
