"""The per-worker scan service, which starts scans and serves status and results reads.

Each gunicorn worker builds one ``ScanService``. It contains the worker's store client, its
running scan tasks, and the little per-worker state that some faults add. Any worker
serves any scan, because every read goes to the store, and the owner (the user of
the bearer token) is checked on every read path.

A store read that still fails after the request's retry budget raises
StoreUnavailableError, which the app turns into a 503 response.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Literal

from service_under_test import faults
from service_under_test.models import (
    Progress,
    ResultsEntry,
    ResultsResponse,
    ScanningResultsResponse,
    StatusResponse,
)
from service_under_test.retry import STORE_ERRORS, RetryPolicy, call_with_retry
from service_under_test.scans import RunnerOptions, ScanJob, ScanRunner
from service_under_test.settings import Settings
from service_under_test.store import KeyTtls, ScanSnapshot, ScanStatus, Store, open_store
from service_under_test.strategies import plan_strategy

logger = logging.getLogger(__name__)

# How long shutdown waits for cancelled scans to write their terminal status.
SHUTDOWN_GRACE_S = 5.0


@dataclass(frozen=True)
class StartedScan:
    scan_id: str
    total_strategies: int


class ScanService:
    """Starts scans in this worker and reads any scan from the store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.active_faults = settings.active_faults
        self.request_policy = RetryPolicy(settings.store_retry_budget_s)
        # Runner writes have no client waiting, so they ride out a store outage for as
        # long as the heartbeat stays fresh.
        self.background_policy = RetryPolicy(
            max(settings.stale_s, settings.store_retry_budget_s), base_s=0.05, cap_s=2.0
        )
        self._store: Store | None = None
        self._running: dict[str, tuple[asyncio.Task[None], ScanRunner]] = {}
        # Scan id to record key, filled only under the memory-only-lookup fault.
        self._memory_lookup: dict[str, str] = {}
        # (user, scan id) to the first status response, filled only under stale-worker-snapshot.
        self._status_cache: dict[tuple[str, str], StatusResponse] = {}
        self._stale_scans_logged: set[str] = set()
        # FAULT orphaned-on-worker-death: scans get no heartbeat, readers never judge them
        # stale, and shutdown leaves them as they are, so a scan whose worker is killed or
        # recycled stays scanning forever.
        self._tracks_liveness = not self.active_faults.active(faults.ORPHANED_ON_WORKER_DEATH)

    async def startup(self) -> None:
        # FAULT worker-without-store: the store client is created lazily by the first
        # POST this worker serves. Until then, reads find no store and clients see
        # not_found and 404 from this worker.
        if not self.active_faults.active(faults.WORKER_WITHOUT_STORE):
            self._store = open_store(self.settings, self._key_ttls())

    async def shutdown(self) -> None:
        """Cancel running scans, wait briefly for their terminal writes, then close the store."""
        running = list(self._running.values())
        if running:
            logger.info("cancelling %d running scans for shutdown", len(running))
            await self._cancel_runners(running)
        if self._store is not None:
            await self._store.close()

    async def _cancel_runners(self, running: list[tuple[asyncio.Task[None], ScanRunner]]) -> None:
        tasks = [task for task, _ in running]
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
        if pending:
            logger.error(
                "%d scans did not stop within %.1f s of shutdown; readers will report them "
                "failed once their heartbeat is stale",
                len(pending),
                SHUTDOWN_GRACE_S,
            )

        # A task cancelled before its first step never ran its own cancellation handler.
        for _, runner in running:
            if not runner.started and self._tracks_liveness:
                await runner.abandon("worker shutdown before the scan started")

    def _store_for_write(self) -> Store:
        if self._store is None:
            self._store = open_store(self.settings, self._key_ttls())
        return self._store

    def _key_ttls(self) -> KeyTtls:
        retention_ms = self.settings.retention_ms
        ttls = KeyTtls.uniform(retention_ms)
        # FAULT lookup-ttl-shorter: the lookup key expires after a tenth of the retention,
        # so clients see not_found and 404 while the scan's record still exists.
        if self.active_faults.active(faults.LOOKUP_TTL_SHORTER):
            ttls = dataclasses.replace(ttls, lookup_ms=retention_ms // 10)
        # FAULT results-ttl-shorter: the results expire after a tenth of the retention, so
        # a scan reads complete while its results answer 404.
        if self.active_faults.active(faults.RESULTS_TTL_SHORTER):
            ttls = dataclasses.replace(ttls, results_ms=retention_ms // 10)
        # FAULT progress-drops-ttl: progress writes remove the TTL of the record and its
        # lookup, so the scan never expires.
        if self.active_faults.active(faults.PROGRESS_DROPS_TTL):
            ttls = dataclasses.replace(ttls, persist_on_progress=True)
        return ttls

    async def start_scan(
        self, user: str, strategy_ids: Sequence[str], symbols: Sequence[str]
    ) -> StartedScan:
        """Write the scan's placeholder and start its runner as a background task."""
        store = self._store_for_write()
        scan_id = uuid.uuid4().hex
        total = len(strategy_ids)

        record_id = scan_id
        # FAULT shared-result-slot: the record, progress and results are keyed by user and
        # filters, so a second scan with the same filters resets the first one's progress
        # and results, and both lookups point at the same record.
        if self.active_faults.active(faults.SHARED_RESULT_SLOT):
            record_id = _filters_slot(user, strategy_ids, symbols)
        keys = store.keys(scan_id, record_id)

        write_lookup = True
        # FAULT memory-only-lookup: only this worker's memory maps the scan id to its
        # record, so other workers return not_found and 404.
        if self.active_faults.active(faults.MEMORY_ONLY_LOOKUP):
            write_lookup = False
            self._memory_lookup[scan_id] = keys.record

        placeholder_total = total
        # FAULT zero-total-placeholder: total is 0 until the terminal write, so clients
        # see total_strategies 0 while the scan runs.
        if self.active_faults.active(faults.ZERO_TOTAL_PLACEHOLDER):
            placeholder_total = 0

        now_s = time.time()
        job = ScanJob(
            scan_id=scan_id,
            user=user,
            keys=keys,
            plans=tuple(
                plan_strategy(
                    self.settings.seed, strategy_id, symbols, self.settings.strategy_duration_s
                )
                for strategy_id in strategy_ids
            ),
            placeholder={
                "scan_id": scan_id,
                "user": user,
                "status": ScanStatus.SCANNING.value,
                "total": placeholder_total,
                "strategy_ids": json.dumps(list(strategy_ids)),
                "symbols": json.dumps(list(symbols)),
                "opportunities": 0,
                "created_at": repr(now_s),
                "heartbeat_at": repr(now_s),
            },
            write_lookup=write_lookup,
        )
        runner = ScanRunner(job, store, self._runner_options())

        # FAULT late-placeholder: the runner writes the placeholder when the first
        # strategy finishes, after the POST returned, so an immediate poll is not_found.
        if not self.active_faults.active(faults.LATE_PLACEHOLDER):
            await runner.write_placeholder()

        task = asyncio.create_task(runner.run(), name=f"scan-{scan_id}")
        self._running[scan_id] = (task, runner)
        task.add_done_callback(lambda _: self._running.pop(scan_id, None))
        return StartedScan(scan_id, total)

    def _runner_options(self) -> RunnerOptions:
        return RunnerOptions(
            heartbeat_s=self.settings.heartbeat_s,
            request_policy=self.request_policy,
            background_policy=self.background_policy,
            late_placeholder=self.active_faults.active(faults.LATE_PLACEHOLDER),
            racy_counter=self.active_faults.active(faults.RACY_PROGRESS_COUNTER),
            # FAULT lookup-deleted-on-complete: the terminal write deletes the lookup
            # key, so clients see not_found and 404 soon after complete.
            delete_lookup_on_finish=self.active_faults.active(faults.LOOKUP_DELETED_ON_COMPLETE),
            track_liveness=self._tracks_liveness,
        )

    async def read_status(self, user: str, scan_id: str) -> StatusResponse:
        """Return the status response for ``scan_id`` as ``user`` may see it."""
        # FAULT stale-worker-snapshot: this worker keeps the first response it gave for a
        # scan, so progress goes backwards across workers and scanning follows complete.
        if self.active_faults.active(faults.STALE_WORKER_SNAPSHOT):
            return await self._read_status_cached(user, scan_id)
        return await self._read_status_fresh(user, scan_id)

    async def _read_status_cached(self, user: str, scan_id: str) -> StatusResponse:
        cached = self._status_cache.get((user, scan_id))
        if cached is not None:
            return cached
        response = await self._read_status_fresh(user, scan_id)
        # A not_found response is not cached, so the scan can still appear later.
        if response.status is not ScanStatus.NOT_FOUND:
            self._status_cache[(user, scan_id)] = response
        return response

    async def _read_status_fresh(self, user: str, scan_id: str) -> StatusResponse:
        snapshot = await self._read_scan(scan_id, with_results=False)
        # FAULT no-owner-check: the status path skips the owner check, so one user reads
        # another user's scan.
        check_owner = not self.active_faults.active(faults.NO_OWNER_CHECK)
        if snapshot is None or (check_owner and snapshot.user != user):
            return StatusResponse(scan_id=scan_id, status=ScanStatus.NOT_FOUND, progress=None)

        status = self._effective_status(scan_id, snapshot)
        progress: Progress | None = _progress(snapshot)
        # FAULT no-progress-on-complete: a complete response carries no progress, which
        # clients display as 0/0.
        if status is ScanStatus.COMPLETE and self.active_faults.active(
            faults.NO_PROGRESS_ON_COMPLETE
        ):
            progress = None
        return StatusResponse(scan_id=scan_id, status=status, progress=progress)

    async def read_results(
        self, user: str, scan_id: str
    ) -> ResultsResponse | ScanningResultsResponse | None:
        """Return the results response for ``scan_id``, or None when ``user`` has no such scan."""
        snapshot = await self._read_scan(scan_id, with_results=True)
        if snapshot is None or snapshot.user != user:
            return None

        status = self._effective_status(scan_id, snapshot)
        if status is ScanStatus.SCANNING:
            return ScanningResultsResponse(scan_id=scan_id, progress=_progress(snapshot))

        results = snapshot.results or {}
        entries = [
            ResultsEntry.model_validate(results[strategy_id])
            for strategy_id in snapshot.strategy_ids
            if strategy_id in results
        ]
        if status is ScanStatus.COMPLETE and not entries:
            logger.warning("scan %s is complete but its results are gone; responding 404", scan_id)
            return None

        # FAULT read-once-results: the first successful read deletes the results, so the
        # second results request is 404.
        if status is ScanStatus.COMPLETE and self.active_faults.active(faults.READ_ONCE_RESULTS):
            store = self._store
            assert store is not None, "a snapshot was read, so this worker has a store"
            await call_with_retry(
                "results delete", lambda: store.delete_results(snapshot.keys), self.request_policy
            )

        terminal: Literal[ScanStatus.COMPLETE, ScanStatus.FAILED] = (
            ScanStatus.COMPLETE if status is ScanStatus.COMPLETE else ScanStatus.FAILED
        )
        return ResultsResponse(scan_id=scan_id, status=terminal, results=entries)

    async def _read_scan(self, scan_id: str, with_results: bool) -> ScanSnapshot | None:
        store = self._store
        if store is None:
            # Only under the worker-without-store fault: this worker has served no POST.
            return None
        record_key = self._memory_lookup.get(scan_id)

        def read() -> Awaitable[ScanSnapshot | None]:
            return store.read_scan(scan_id, record_key, with_results)

        # FAULT store-error-as-not-found: a store error is taken for a missing key and is
        # not retried, so clients see not_found and 404 during a store blip.
        if self.active_faults.active(faults.STORE_ERROR_AS_NOT_FOUND):
            try:
                return await read()
            except STORE_ERRORS as error:
                logger.warning("store read of scan %s failed (%s: %s); answering as if it "
                               "did not exist", scan_id, type(error).__name__, error)
                return None
        return await call_with_retry("scan read", read, self.request_policy)

    def _effective_status(self, scan_id: str, snapshot: ScanSnapshot) -> ScanStatus:
        """Return the stored status, or failed for a scanning scan whose heartbeat is stale."""
        if snapshot.status is not ScanStatus.SCANNING or not self._tracks_liveness:
            return snapshot.status
        age_s = time.time() - snapshot.heartbeat_at
        if age_s <= self.settings.stale_s:
            return ScanStatus.SCANNING

        if scan_id not in self._stale_scans_logged:
            self._stale_scans_logged.add(scan_id)
            logger.warning(
                "scan %s has a heartbeat %.1f s old (stale after %.1f s); reporting it failed",
                scan_id,
                age_s,
                self.settings.stale_s,
            )
        return ScanStatus.FAILED


def _progress(snapshot: ScanSnapshot) -> Progress:
    total = snapshot.total
    percentage = round(100 * snapshot.completed / total, 1) if total > 0 else 0.0
    return Progress(
        strategies_completed=snapshot.completed,
        total_strategies=total,
        opportunities_found_so_far=snapshot.opportunities,
        percentage=percentage,
    )


def _filters_slot(user: str, strategy_ids: Sequence[str], symbols: Sequence[str]) -> str:
    filters = json.dumps([sorted(strategy_ids), sorted(symbols)])
    return f"slot:{user}:{hashlib.sha256(filters.encode()).hexdigest()[:16]}"
