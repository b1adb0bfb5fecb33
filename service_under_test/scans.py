"""The scan runner: one background task per scan, in the worker that accepted the POST.

The runner runs the scan's strategies one after another. After each strategy it stores the
strategy's results and adds its id to the done set in one guarded write. A separate
heartbeat task writes ``heartbeat_at`` every ``heartbeat_s`` and refreshes the TTLs. When
the strategies are done, the runner stops the heartbeat and then writes the terminal
status, so nothing writes to the scan after that.

A guarded write reports when the scan is gone, already terminal, or stale (readers may
already report it failed). The runner then stops, and writes ``failed`` in the stale case.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from service_under_test.retry import RetryPolicy, StoreUnavailableError, call_with_retry
from service_under_test.store import ScanKeys, ScanStatus, Store, WriteOutcome
from service_under_test.strategies import StrategyPlan, run_strategy

logger = logging.getLogger(__name__)

# The pause between reading and writing the racy counter, on top of the results write and
# a PING. It widens the window in which the other strategy of a pair reads the same value.
RACY_COUNTER_GAP_S = 0.005


@dataclass(frozen=True)
class ScanJob:
    """What the runner needs to know about one scan."""

    scan_id: str
    user: str
    keys: ScanKeys
    plans: tuple[StrategyPlan, ...]
    placeholder: Mapping[str, str | int | float]
    write_lookup: bool

    @property
    def total(self) -> int:
        return len(self.plans)


@dataclass(frozen=True)
class RunnerOptions:
    """How a runner behaves: timing, retry policies and the fault switches it obeys."""

    heartbeat_s: float
    request_policy: RetryPolicy
    background_policy: RetryPolicy
    late_placeholder: bool = False
    racy_counter: bool = False
    delete_lookup_on_finish: bool = False
    # False under the orphaned-on-worker-death fault: no heartbeat, and a cancelled scan
    # (its worker shuts down) is left scanning instead of marked failed.
    track_liveness: bool = True


class ScanRunner:
    """Runs the strategies of one scan and records its progress in the store."""

    def __init__(self, job: ScanJob, store: Store, options: RunnerOptions) -> None:
        self.job = job
        self.store = store
        self.options = options
        self.opportunities = 0
        self._placeholder_pending = options.late_placeholder
        self._placeholder_lock = asyncio.Lock()
        self._heartbeat_stop = asyncio.Event()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._started_at = time.monotonic()
        self.started = False

    async def write_placeholder(self) -> None:
        """Write the scan's placeholder record, with retries within the request budget."""
        await call_with_retry(
            "placeholder write",
            lambda: self.store.create_placeholder(
                self.job.keys, self.job.placeholder, self.job.write_lookup
            ),
            self.options.request_policy,
        )

    async def run(self) -> None:
        """Run the scan to its terminal write. Cancelling it marks the scan failed."""
        job = self.job
        self.started = True
        logger.info("scan %s started for user %s: %d strategies", job.scan_id, job.user, job.total)
        if not self._placeholder_pending:
            self._start_heartbeat()

        try:
            final_status = await self._run_strategies()
        except asyncio.CancelledError:
            await self._stop_heartbeat()
            if self.options.track_liveness:
                await self._finish(ScanStatus.FAILED, self.options.request_policy,
                                   "worker shutdown")
            else:
                logger.warning("scan %s cancelled by the worker's shutdown and left as it is",
                               job.scan_id)
            raise
        except StoreUnavailableError as error:
            await self._stop_heartbeat()
            logger.error(
                "scan %s stopped because the store is unreachable (%s); readers will report "
                "it failed once its heartbeat is stale",
                job.scan_id,
                error,
            )
            return
        except Exception:
            await self._stop_heartbeat()
            logger.exception("scan %s crashed; marking it failed", job.scan_id)
            await self._finish(ScanStatus.FAILED, self.options.background_policy, "crash")
            return

        await self._stop_heartbeat()
        if final_status is not None:
            await self._finish(final_status, self.options.background_policy, "end of strategies")

    async def abandon(self, reason: str) -> None:
        """Mark the scan failed without running it, for a task cancelled before it started."""
        await self._finish(ScanStatus.FAILED, self.options.request_policy, reason)

    async def _run_strategies(self) -> ScanStatus | None:
        """Run every strategy and return the terminal status to write, or None to write none."""
        if self.options.racy_counter:
            return await self._run_racy_pairs()

        for plan in self.job.plans:
            await run_strategy(plan)
            outcome = await self._record(plan, add_to_done=True)
            if outcome is not WriteOutcome.OK:
                return self._status_after_rejected_write(outcome)
        return ScanStatus.COMPLETE

    async def _run_racy_pairs(self) -> ScanStatus | None:
        # FAULT racy-progress-counter: strategies run in pairs that finish at the same
        # moment, and each bumps a plain counter by read, round trips, write. Both usually
        # read the same value, so one update of a pair is lost, and the scan completes
        # with the count it has reached. Clients see complete with fewer than the total.
        plans = self.job.plans
        for start in range(0, len(plans), 2):
            pair = plans[start : start + 2]
            await asyncio.sleep(max(plan.duration_s for plan in pair))
            outcomes = await asyncio.gather(*(self._record_racy(plan) for plan in pair))
            for outcome in outcomes:
                if outcome is not WriteOutcome.OK:
                    return self._status_after_rejected_write(outcome)
        return ScanStatus.COMPLETE

    async def _record_racy(self, plan: StrategyPlan) -> WriteOutcome:
        policy = self.options.background_policy
        completed = await call_with_retry(
            "counter read", lambda: self.store.read_counter(self.job.keys), policy
        )
        outcome = await self._record(plan, add_to_done=False)
        if outcome is not WriteOutcome.OK:
            return outcome

        await call_with_retry("ping", self.store.ping, policy)
        await asyncio.sleep(RACY_COUNTER_GAP_S)
        await call_with_retry(
            "counter write", lambda: self.store.write_counter(self.job.keys, completed + 1), policy
        )
        return outcome

    async def _record(self, plan: StrategyPlan, add_to_done: bool) -> WriteOutcome:
        """Store one finished strategy, writing the late placeholder first if it is pending."""
        async with self._placeholder_lock:
            if self._placeholder_pending:
                await self.write_placeholder()
                self._placeholder_pending = False
                self._start_heartbeat()

        self.opportunities += len(plan.opportunities)
        opportunities = self.opportunities
        entry = plan.result_entry()
        return await call_with_retry(
            "progress write",
            lambda: self.store.write_progress(
                self.job.keys, time.time(), entry, opportunities, add_to_done
            ),
            self.options.background_policy,
        )

    def _status_after_rejected_write(self, outcome: WriteOutcome) -> ScanStatus | None:
        scan_id = self.job.scan_id
        if outcome is WriteOutcome.STALE:
            logger.warning(
                "scan %s has a stale heartbeat, so readers may report it failed; marking it "
                "failed instead of running on",
                scan_id,
            )
            return ScanStatus.FAILED
        logger.warning(
            "scan %s stopped: its record is %s (expired, lost by the store, or finished "
            "by another writer)",
            scan_id,
            outcome.value,
        )
        return None

    async def _finish(self, status: ScanStatus, policy: RetryPolicy, reason: str) -> None:
        job = self.job
        try:
            outcome, written = await call_with_retry(
                "terminal write",
                lambda: self.store.finish(
                    job.keys,
                    status,
                    job.total,
                    time.time(),
                    delete_lookup=self.options.delete_lookup_on_finish,
                ),
                policy,
            )
        except StoreUnavailableError as error:
            logger.error(
                "scan %s: terminal write (%s, after %s) failed: %s; readers will report it "
                "failed once its heartbeat is stale",
                job.scan_id,
                status.value,
                reason,
                error,
            )
            return

        if outcome is WriteOutcome.MISSING:
            logger.warning(
                "scan %s has no record to mark %s after %s; it expired, the store lost its "
                "data, or the placeholder was never written",
                job.scan_id,
                status.value,
                reason,
            )
            return
        logger.info(
            "scan %s finished as %s after %s (write %s): %d opportunities in %.2f s",
            job.scan_id,
            written.value,
            reason,
            outcome.value,
            self.opportunities,
            time.monotonic() - self._started_at,
        )

    def _start_heartbeat(self) -> None:
        if not self.options.track_liveness:
            return
        self._heartbeat_task = asyncio.create_task(
            self._heartbeat_loop(), name=f"heartbeat-{self.job.scan_id}"
        )

    async def _stop_heartbeat(self) -> None:
        """Stop the heartbeat and await its write in flight, so none follows the terminal write."""
        self._heartbeat_stop.set()
        if self._heartbeat_task is not None:
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)

    async def _heartbeat_loop(self) -> None:
        scan_id = self.job.scan_id
        while True:
            try:
                await asyncio.wait_for(self._heartbeat_stop.wait(), self.options.heartbeat_s)
                return
            except TimeoutError:
                pass

            try:
                outcome = await call_with_retry(
                    "heartbeat write",
                    lambda: self.store.write_heartbeat(self.job.keys, time.time()),
                    self.options.request_policy,
                )
            except StoreUnavailableError as error:
                logger.warning(
                    "scan %s: heartbeat write failed (%s); trying again in %.1f s",
                    scan_id,
                    error,
                    self.options.heartbeat_s,
                )
                continue

            if outcome is not WriteOutcome.OK:
                logger.warning(
                    "scan %s: heartbeat stopped, the record is %s", scan_id, outcome.value
                )
                return
            logger.debug("scan %s: heartbeat written", scan_id)
