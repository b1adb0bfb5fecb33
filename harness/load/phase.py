"""One load against a running cluster: Locust's run, its merged history, its statistics.

``run_load`` is shared by ``scan-harness load`` and by ``run_load_phase``, the load phase
at the end of ``scan-harness run``. It writes into the run directory:

- ``load-history/<host>-<pid>.jsonl``: the process history of each Locust process;
- ``locust_stats.csv``, ``locust_failures.csv``, ``locust_exceptions.csv``: Locust's
  final statistics;
- ``locust.log``: Locust's log and its summary tables.

The caller gets the merged ops (to write as a history or to append to a live one), the
statistics, and what went wrong, if anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.history import History, HistoryError, HistoryRecorder, RunRecord
from harness.load.locust_process import (
    STARTUP_BUDGET_S,
    STOP_TIMEOUT_S,
    LocustExit,
    LocustOptions,
    run_locust,
)
from harness.load.locust_stats import LoadStats, StatsError, count_exceptions, read_stats
from harness.load.merge import append_to_recorder, merge_files
from harness.load.recording import DEFAULT_SCENARIO, LoadSettings

HISTORY_DIR_NAME = "load-history"
CSV_PREFIX_NAME = "locust"


@dataclass(frozen=True)
class LoadTarget:
    """The service under load, and what its simulated users need to reach it."""

    host: str
    worker_pids: Sequence[int] | None
    """The workers' pids in index order; None when unknown (a service at ``--url``)."""

    clock_file: Path | None = None
    """The run's virtual clock file; None when the harness started no cluster."""

    profile_path: Path | None = None
    """The API profile the users speak; None is the reference service's."""

    token_secret: str | None = None
    """The secret that signs the reference service's tokens."""

    app_env: Mapping[str, str] = field(default_factory=dict)
    """The environment that a profile's token function reads as the app's."""


@dataclass(slots=True)
class LoadResult:
    """The outcome of one load: merged ops, statistics and errors."""

    history: History
    """The merged ops of every Locust process, indices from 0, ordered by ``real_ns``."""

    stats: LoadStats | None
    """Locust's final statistics, or None when Locust wrote none."""

    exceptions: int
    """Exceptions raised inside the simulated users: a bug in the locustfile, not the service."""

    locust: LocustExit
    error: str | None = None
    """The reason the load did not run as configured, or None."""

    files: int = 0
    """Number of process histories merged."""


def run_load(target: LoadTarget, options: LocustOptions, run_dir: Path, *, run: RunRecord,
             origin_ns: int, scenario: str = DEFAULT_SCENARIO, record: bool = True,
             connections: int = 4, scan_timeout_s: float = 15.0) -> LoadResult:
    """Run Locust against ``target`` and merge what its users recorded.

    ``origin_ns`` is the monotonic origin of the history the ops will join.
    ``record=False`` records no history, to measure what recording costs.
    """
    history_dir = run_dir / HISTORY_DIR_NAME
    history_dir.mkdir(parents=True, exist_ok=True)
    for stale in history_dir.glob("*.jsonl"):
        stale.unlink()  # a reused --out directory must not merge an earlier run's files
    csv_prefix = run_dir / CSV_PREFIX_NAME
    settings = LoadSettings(
        token_secret=target.token_secret, profile_path=target.profile_path,
        history_dir=history_dir if record else None,
        origin_ns=origin_ns, run=run, scenario=scenario, connections=connections,
        scan_timeout_s=scan_timeout_s, clock_file=target.clock_file, csv_prefix=csv_prefix,
    )

    locust = run_locust(target.host, options, settings, run_dir / "locust.log",
                        target.app_env)

    errors = [locust.error] if locust.error else []
    paths = sorted(history_dir.glob("*.jsonl"))
    history = History(run)
    if paths:
        try:
            history = merge_files(paths, run=run, worker_pids=target.worker_pids)
        except HistoryError as error:
            errors.append(f"cannot merge the load's histories: {error}")
    elif record and locust.error is None:
        errors.append(f"no Locust process wrote a history into {history_dir}; see "
                      f"{run_dir / 'locust.log'}")

    stats = None
    try:
        stats = read_stats(Path(f"{csv_prefix}_stats.csv"))
    except StatsError as error:
        if locust.error is None:
            errors.append(str(error))
    exceptions = count_exceptions(Path(f"{csv_prefix}_exceptions.csv"))
    return LoadResult(history, stats, exceptions, locust, "; ".join(errors) or None,
                      len(paths))


@dataclass(slots=True)
class PhaseReport:
    """Summary of the load phase of a run, for its scenario entry in the run's summary."""

    duration_s: float
    error: str | None
    notes: list[str]


def run_load_phase(target: LoadTarget, recorder: HistoryRecorder, run_dir: Path, *,
                   users: int, seconds: float, time_left_s: float) -> PhaseReport:
    """Load ``target`` and append the ops to the run's live history.

    The run time is ``seconds`` rounded up to whole seconds, and shortened so that
    Locust's worst case still ends within ``time_left_s``. The phase is skipped when that
    leaves less than a second. All users start at once. The ops carry ``scenario="load"``.
    """
    run_time_s = min(math.ceil(seconds), math.floor(time_left_s - STOP_TIMEOUT_S
                                                    - STARTUP_BUDGET_S))
    if run_time_s < 1:
        return PhaseReport(0.0, None, ["skipped: the run's time cap leaves too little time "
                                       "for the load phase"])

    options = LocustOptions(users=users, spawn_rate=users, run_time_s=run_time_s)
    result = run_load(target, options, run_dir, run=recorder.history.run,
                      origin_ns=recorder.origin_ns)
    append_to_recorder(recorder, result.history.ops)

    notes = [f"{users} Locust users for {run_time_s} s"]
    if result.stats is not None:
        total = result.stats.total
        p95 = "-" if total.p95_ms is None else f"{total.p95_ms:g} ms"
        notes.append(f"{total.requests} requests, {total.rps:.1f} per second, "
                     f"{total.failures} failed, p95 {p95}")
    if result.exceptions:
        notes.append(f"the simulated users raised {result.exceptions} exceptions; see "
                     f"{run_dir / 'locust_exceptions.csv'}")
    return PhaseReport(result.locust.duration_s, result.error, notes)
