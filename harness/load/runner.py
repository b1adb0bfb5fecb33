"""``scan-harness load``: Locust's load against a job service, judged like a run.

``execute_load(config)`` starts the store and a cluster of the reference service or of
the user's app (``--app``), or uses the service at ``--url``; the users speak the API
through its profile (``--profile``). It runs Locust headless in its own process until
the run time ends and merges the process histories into ``history.jsonl``. The checker
judges that history, the thresholds judge Locust's statistics, and the verdict goes to
``summary.json`` and ``junit.xml``.

Exit codes, ranked 3 over 1 over 2 over 4: 0 pass, 1 an invariant was violated, 2 a
threshold was missed, 3 the harness could not run, 4 inconclusive (no invariant had
data, or the workers could not all be reached).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import random
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.checker import INVARIANTS, Verdict, check
from harness.client import RoutingClient, RoutingError
from harness.history import HistoryRecorder, RunRecord
from harness.load.locust_process import LocustOptions, parse_run_time
from harness.load.locust_stats import LoadStats, ThresholdResult, Thresholds, judge_thresholds
from harness.load.merge import seen_worker_pids, set_worker_indices, write_history
from harness.load.phase import LoadResult, LoadTarget, run_load
from harness.load.report import write_load_reports
from harness.processes import StartError
from harness.profile import ProfileError, token_source
from harness.runner import (
    ConfigError,
    ExitCode,
    RunConfig,
    RunOutcome,
    ScenarioOutcome,
    Terminated,
    _logging_to,
    make_run_dir,
    running_cluster,
    validate,
    workers_text,
)
from harness.target import TargetError, check_url, probe_url, profile_for

log = logging.getLogger(__name__)

EXIT_CODE_RANK = (ExitCode.HARNESS_ERROR, ExitCode.VIOLATION, ExitCode.THRESHOLD,
                  ExitCode.INCONCLUSIVE, ExitCode.PASS)
"""Exit codes, the one that wins first, when several apply."""

CLOCK_FILE_NAME = "clock.json"
"""The virtual clock file that ``running_cluster`` writes into the run directory."""

EXTERNAL_STORE = "external"
"""The store name recorded for a cluster at ``--url``, whose store the harness cannot see."""


@dataclass
class LoadConfig:
    """Every setting of ``scan-harness load``."""

    users: int = 20
    spawn_rate: float = 10.0
    run_time: str = "30s"
    """Locust's time span: ``30``, ``30s``, ``5m``, ``1h30m``."""

    processes: int = 1
    faults: tuple[str, ...] = ()
    workers: int = 4
    worker_class: str = "uvicorn"
    store: str = "fakeredis"
    seed: int | None = None
    out: Path | None = None
    url: str | None = None
    """A running service to load instead of starting a cluster."""

    token_secret: str | None = None
    """The secret that the reference service at ``url`` signs tokens with."""

    app: str | None = None
    """The user's WSGI or ASGI app (``module:app``) to serve instead of the reference one."""

    profile: Path | None = None
    """The API profile the users speak; None is the reference service's."""

    gunicorn_config: Path | None = None
    allow_remote: bool = False
    """Allow a ``url`` that is not on loopback; the command line then requires explicit caps."""

    port: int = 0
    thresholds: Thresholds = field(default_factory=Thresholds)
    record: bool = True
    """Record the history; False only measures what recording costs (no verdict)."""

    connections: int = 4
    """Keep-alive connections per simulated user."""


@dataclass
class LoadOutcome:
    """The outcome of ``execute_load``: the run's outcome plus Locust's figures."""

    config: LoadConfig
    run: RunOutcome
    """The verdict, the history, the run directory and the exit code, as for a run."""

    stats: LoadStats | None = None
    thresholds: list[ThresholdResult] = field(default_factory=list)
    exceptions: int = 0
    locust_pids: tuple[int, ...] = ()
    worker_pids_source: str = "cluster"
    """``cluster`` when the harness pinned the workers, ``history`` when the indices
    come from the pids seen in the answers (a cluster at ``--url``)."""

    @property
    def exit_code(self) -> int:
        return self.run.exit_code


def validate_load(config: LoadConfig) -> int:
    """Check the config before anything starts; return the run time in seconds.

    Raises ConfigError naming the bad value and the fix.
    """
    try:
        run_time_s = parse_run_time(config.run_time)
    except ValueError as error:
        raise ConfigError(f"--run-time: {error}") from error
    if config.users < 1:
        raise ConfigError(f"--users must be at least 1, got {config.users}")
    if config.spawn_rate <= 0:
        raise ConfigError(f"--spawn-rate must be positive, got {config.spawn_rate:g}")
    if config.processes < 1:
        raise ConfigError(f"--processes must be at least 1, got {config.processes}")
    if config.url is None:
        if config.token_secret is not None:
            raise ConfigError("--token-secret is only used with --url; a cluster that the "
                              "harness starts gets a fresh secret")
        validate(run_config(config))
        return run_time_s

    if config.app is not None:
        raise ConfigError("--app starts your app and --url names a running one; give one")
    try:
        check_url(config.url, allow_remote=config.allow_remote,
                  load_caps="--users and --run-time")
        profile = profile_for(config.profile)
    except (ProfileError, TargetError) as error:
        raise ConfigError(str(error)) from error
    if profile.is_reference and not config.token_secret:
        raise ConfigError("--url needs --token-secret: the secret the cluster signs tokens "
                          "with (scan-harness serve prints it); for another service, pass "
                          "its API profile with --profile")
    if config.faults:
        raise ConfigError("--fault cannot be used with --url: faults are switched on when a "
                          "cluster starts, so pass them to scan-harness serve")
    return run_time_s


def run_config(config: LoadConfig) -> RunConfig:
    """Return the RunConfig of the cluster a load runs against."""
    return RunConfig(seed=config.seed, workers=config.workers,
                     worker_class=config.worker_class,
                     store=EXTERNAL_STORE if config.url else config.store,
                     faults=config.faults, scenarios=(), out=config.out, app=config.app,
                     url=config.url, profile=config.profile,
                     gunicorn_config=config.gunicorn_config,
                     allow_remote=config.allow_remote)


def combine_exit_codes(*codes: int) -> int:
    """Return the code that wins by rank: 3 over 1 over 2 over 4 over 0."""
    return min(codes, key=EXIT_CODE_RANK.index)


def execute_load(config: LoadConfig, *,
                 progress: Callable[[str], None] | None = None) -> LoadOutcome:
    """Load the service with Locust and judge the history and the thresholds."""
    say = progress or (lambda message: None)
    run_time_s = validate_load(config)
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(10**6)
    run_dir = make_run_dir(config.out, seed)
    options = LocustOptions(config.users, config.spawn_rate, run_time_s, config.processes)
    outcome = LoadOutcome(config, RunOutcome(run_config(config), seed, run_dir,
                                             ExitCode.HARNESS_ERROR))
    started = time.monotonic()

    with _logging_to(run_dir / "harness.log"):
        try:
            result = _load(config, options, outcome, say)
        except RoutingError as error:
            outcome.run.error = f"not every worker could be reached: {error}"
            outcome.run.exit_code = ExitCode.INCONCLUSIVE
        except StartError as error:
            outcome.run.error = str(error)
            outcome.run.exit_code = ExitCode.HARNESS_ERROR
        except (KeyboardInterrupt, Terminated) as interrupt:
            outcome.run.error = f"interrupted by {type(interrupt).__name__}"
            _finish(outcome, started)
            raise
        else:
            _judge(outcome, result)
        return _finish(outcome, started)


def _load(config: LoadConfig, options: LocustOptions, outcome: LoadOutcome,
          say: Callable[[str], None]) -> LoadResult:
    seed = outcome.run.seed
    run_dir = outcome.run.run_dir
    run_id = f"{datetime.datetime.now().strftime('%Y%m%d%H%M%S')}-{seed}-{secrets.token_hex(3)}"
    record = RunRecord(
        seed=seed, faults=tuple(config.faults),
        store=EXTERNAL_STORE if config.url else config.store, workers=config.workers,
        worker_class=config.worker_class, run_id=run_id,
        key_prefix="" if config.url else f"scan-harness:{run_id}:",
        started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    origin_ns = time.monotonic_ns()
    with _target(config, outcome, run_id, say) as target:
        say(f"Locust: {options.users} users at {options.spawn_rate:g}/s for "
            f"{options.run_time_s} s in {_processes_text(options.processes)}")
        result = run_load(target, options, run_dir, run=record, origin_ns=origin_ns,
                          record=config.record, connections=config.connections)
    outcome.locust_pids = result.locust.pids
    if target.worker_pids is None:
        outcome.worker_pids_source = "history"
        outcome.run.worker_pids = seen_worker_pids(result.history)
        set_worker_indices(result.history.ops, outcome.run.worker_pids)
        result.history.run = dataclasses.replace(record, workers=len(outcome.run.worker_pids))
    return result


@contextmanager
def _target(config: LoadConfig, outcome: LoadOutcome, run_id: str,
            say: Callable[[str], None]) -> Iterator[LoadTarget]:
    """Yield the service under load: the one at ``--url``, or a cluster started here."""
    profile = profile_for(config.profile)
    if config.url is not None:
        probe_url(config.url, profile.probe_path)
        say(f"loading the service at {config.url}")
        yield LoadTarget(config.url, None, profile_path=config.profile,
                         token_secret=config.token_secret, app_env=profile.env)
        return

    secret = secrets.token_hex(16)
    cluster_config = outcome.run.config
    say(f"starting the {config.store} store and {workers_text(cluster_config)}")
    with running_cluster(cluster_config, outcome.run.run_dir, outcome.run.seed, run_id, secret,
                         port=config.port) as (_, cluster):
        client = RoutingClient(cluster.base_url, HistoryRecorder(RunRecord(seed=0)),
                               profile=profile,
                               headers_for=token_source(profile.auth, cluster.config.env))
        try:
            pids = client.pin_workers(config.workers, is_alive=cluster.check_alive)
        finally:
            client.close()
        outcome.run.worker_pids = pids
        say(f"cluster of {cluster.config.worker_class} workers ready at {cluster.base_url}; "
            "workers (pid): "
            + ", ".join(f"{index} ({pid})" for index, pid in enumerate(pids)))
        yield LoadTarget(cluster.base_url, pids,
                         clock_file=outcome.run.run_dir / CLOCK_FILE_NAME,
                         profile_path=config.profile,
                         token_secret=secret if config.app is None else None,
                         app_env=cluster.config.env)


def _judge(outcome: LoadOutcome, result: LoadResult) -> None:
    run = outcome.run
    history = result.history
    run.history = history
    outcome.stats = result.stats
    outcome.exceptions = result.exceptions
    outcome.thresholds = judge_thresholds(result.stats, outcome.config.thresholds)
    write_history(history, run.run_dir / "history.jsonl")

    checked = time.monotonic()
    scenario = ScenarioOutcome("load", tuple(INVARIANTS), Verdict.UNKNOWN, None,
                               result.locust.duration_s, len(history.ops), result.error)
    run.scenarios = [scenario]
    if outcome.config.record:
        run.result = check(history)
        run.verdict = scenario.verdict = run.result.verdict
        scenario.result = run.result
    run.timings_s["check"] = time.monotonic() - checked
    run.timings_s["locust"] = result.locust.duration_s

    codes = [_verdict_exit_code(run.verdict, outcome.config.record)]
    if any(not threshold.passed for threshold in outcome.thresholds):
        codes.append(ExitCode.THRESHOLD)
    if result.error:
        run.error = result.error
        codes.append(ExitCode.HARNESS_ERROR)
    run.exit_code = combine_exit_codes(*codes)


def _verdict_exit_code(verdict: Verdict | None, recorded: bool) -> int:
    if not recorded:
        return ExitCode.PASS  # nothing was recorded, so only the thresholds judge
    if verdict is Verdict.FAIL:
        return ExitCode.VIOLATION
    if verdict is Verdict.PASS:
        return ExitCode.PASS
    return ExitCode.INCONCLUSIVE


def _finish(outcome: LoadOutcome, started: float) -> LoadOutcome:
    outcome.run.timings_s["total"] = time.monotonic() - started
    write_load_reports(outcome)
    return outcome


def _processes_text(processes: int) -> str:
    if processes == 1:
        return "1 process"
    return f"{processes} worker processes and a master"

