"""The run: one store, one cluster, the scenarios, one history, one verdict.

``execute(config)`` is the main job of ``scan-harness run``. It makes a run directory,
starts the store and the cluster, pins a connection to every worker, runs each scenario
in turn under the run's wall-clock cap, closes the history, judges it, writes the
summary and the JUnit report, and stops every process it started, whatever happened.

A scenario's verdict is the checker's verdict on the scenario's own ops for the
invariants the scenario declares. The run's verdict is the checker's verdict on the
whole history for every invariant. Exit codes: 0 pass, 1 an invariant was violated,
3 the harness could not run, 4 inconclusive (not every worker could be reached, or no
invariant had data).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import random
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from harness.checker import INVARIANTS, CheckResult, Verdict, check
from harness.client import RoutingClient, RoutingError
from harness.clock import ClockError, VirtualClock
from harness.clock_follower import DRIVERS
from harness.clock_state import CLOCK_DRIVER_ENV, CLOCK_FILE_ENV, ClockState, write_state
from harness.cluster import REFERENCE_APP, Cluster, ClusterConfig
from harness.follow_up import follow_open_scans
from harness.history import History, HistoryRecorder, RunRecord
from harness.load.phase import LoadTarget, run_load_phase
from harness.load.recording import DEFAULT_SCENARIO as LOAD_SCENARIO
from harness.nemesis import Nemesis, NemesisError
from harness.processes import StartError
from harness.profile import Profile, ProfileError, token_source
from harness.profiles import REFERENCE_SECRET_ENV
from harness.report import write_reports
from harness.scenario import (
    Scenario,
    ScenarioAborted,
    ScenarioContext,
    load_scenario_dir,
    select,
)
from harness.store import Store, make_store
from harness.store_proxy import StoreProxy, proxied_url
from harness.target import (
    TargetError,
    app_environment,
    check_app,
    check_url,
    detect_worker_class,
    probe_url,
    profile_for,
    python_path_with_cwd,
)
from service_under_test.faults import UnknownFaultError, parse_fault_names

log = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = Path(".harness-runs")


class ExitCode:
    """Process exit codes, ranked 3 over 1 over 2 over 4 when several apply."""

    PASS = 0
    VIOLATION = 1
    THRESHOLD = 2
    HARNESS_ERROR = 3
    INCONCLUSIVE = 4


class Terminated(BaseException):
    """SIGTERM reached the harness; raised so that every process of the run is stopped."""


class ConfigError(ValueError):
    """Bad input to a run: the message names the value and the fix."""


@dataclass
class RunConfig:
    """The settings of a run. The defaults are the main job."""

    seed: int | None = None
    workers: int = 4
    worker_class: str = "uvicorn"
    store: str = "fakeredis"
    faults: tuple[str, ...] = ()
    scenarios: tuple[str, ...] = ()
    out: Path | None = None
    max_seconds: float = 300.0
    retention_s: float = 600.0
    stale_s: float = 30.0
    deadline_s: float = 60.0
    strategy_duration_s: float = 0.07
    scan_timeout_s: float = 10.0
    # Real seconds for a scenario without a natural end, such as the naive baseline.
    scenario_budget_s: float = 10.0
    clock_driver: str = "time-machine"
    store_retry_budget_s: float = 1.0
    # Workers reach the store through the store proxy, which the nemesis needs for its
    # store faults; it added about 0.15 ms to a status read on 2 cores (docs/benchmarks.md).
    store_proxy: bool = True
    # The Locust load phase after the scenarios. scan-harness run sets 10 s; the library
    # default of 0 skips it, so that runs compared step by step stay free of random load.
    load_seconds: float = 0.0
    load_users: int = 10
    # The target (see harness.target): the reference service unless ``app`` or ``url``
    # names another one, described by the API profile at ``profile``.
    app: str | None = None
    url: str | None = None
    profile: Path | None = None
    gunicorn_config: Path | None = None
    allow_remote: bool = False
    scenarios_dir: Path | None = None


@dataclass
class ScenarioOutcome:
    """One scenario's part of a run."""

    name: str
    invariants: tuple[str, ...]
    verdict: Verdict
    result: CheckResult | None
    duration_s: float
    ops: int
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class RunOutcome:
    """The outcome of ``execute``: the verdict, the run directory and the exit code."""

    config: RunConfig
    seed: int
    run_dir: Path
    exit_code: int
    verdict: Verdict | None = None
    result: CheckResult | None = None
    scenarios: list[ScenarioOutcome] = field(default_factory=list)
    history: History | None = None
    error: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    worker_pids: list[int] = field(default_factory=list)
    # What was tested and how it was reached, for summary.json: target, app or url,
    # profile, and routing ("pinned" or "observed").
    target: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def validate(config: RunConfig) -> list[Scenario]:
    """Check the config before anything starts; raise ConfigError naming the bad value."""
    try:
        parse_fault_names(config.faults)
    except UnknownFaultError as error:
        raise ConfigError(f"{error}; scan-harness faults lists them") from error
    _validate_target(config)
    try:
        if config.scenarios_dir is not None:
            load_scenario_dir(config.scenarios_dir)
        chosen = select(config.scenarios)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    for scenario in chosen:
        unknown = [name for name in scenario.invariants if name not in INVARIANTS]
        if unknown:
            raise ConfigError(f"scenario {scenario.name!r} declares the unknown invariant "
                              f"{unknown[0]!r}; known invariants: {', '.join(INVARIANTS)}")
    try:
        make_store(config.store, key_prefix="")
    except ValueError as error:
        raise ConfigError(str(error)) from error
    if config.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {config.workers}")
    if config.clock_driver not in DRIVERS:
        raise ConfigError(f"unknown clock driver {config.clock_driver!r}: use one of "
                          f"{', '.join(DRIVERS)}")
    if config.max_seconds <= 0:
        raise ConfigError(f"--max-seconds must be positive, got {config.max_seconds}")
    return chosen


def _validate_target(config: RunConfig) -> None:
    if config.app is not None and config.url is not None:
        raise ConfigError("--app starts your app and --url names a running one; give one")
    if config.faults and (config.app is not None or config.url is not None):
        raise ConfigError("--fault switches on bugs of the reference service only; drop it "
                          "with --app or --url")
    if config.app is not None:
        try:
            check_app(config.app)
        except TargetError as error:
            raise ConfigError(str(error)) from error
    if config.app is not None and config.profile is None:
        raise ConfigError(f"--app {config.app} needs --profile: the TOML API profile that "
                          "describes your app's job API (docs/own-service.md shows one)")
    try:
        profile = profile_for(config.profile)
        if config.url is not None:
            check_url(config.url, allow_remote=config.allow_remote)
    except (ProfileError, TargetError) as error:
        raise ConfigError(str(error)) from error
    if config.url is not None and profile.is_reference and not os.environ.get(
            REFERENCE_SECRET_ENV):
        raise ConfigError(f"--url without --profile tests the reference service, whose tokens "
                          f"need its secret: set {REFERENCE_SECRET_ENV} (scan-harness serve "
                          "prints it), or pass your service's API profile with --profile")
    if config.gunicorn_config is not None and not config.gunicorn_config.is_file():
        raise ConfigError(f"--gunicorn-config {config.gunicorn_config} does not exist; pass "
                          "the path of your gunicorn config file")


def make_run_dir(out: Path | None, seed: int) -> Path:
    """Create the run directory: ``out`` as given, or a new one under .harness-runs/."""
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = DEFAULT_RUNS_DIR / f"{stamp}-{seed}"
    if (out / "history.jsonl").exists():
        raise ConfigError(f"the run directory {out} already holds a run (history.jsonl); "
                          "give another --out, or delete that directory first")
    out.mkdir(parents=True, exist_ok=True)
    return out


def service_environment(config: RunConfig, store: Store, secret: str, seed: int,
                        clock_file: Path) -> dict[str, str]:
    """Return the environment that configures the reference service's workers."""
    return {
        CLOCK_FILE_ENV: str(clock_file),
        CLOCK_DRIVER_ENV: config.clock_driver,
        "SCAN_SERVICE_REDIS_URL": store.url,
        "SCAN_SERVICE_KEY_PREFIX": store.key_prefix,
        "SCAN_SERVICE_TOKEN_SECRET": secret,
        "SCAN_SERVICE_FAULTS": ",".join(config.faults),
        "SCAN_SERVICE_SEED": str(seed),
        "SCAN_SERVICE_STRATEGY_DURATION_S": str(config.strategy_duration_s),
        "SCAN_SERVICE_RETENTION_S": str(config.retention_s),
        "SCAN_SERVICE_STALE_S": str(config.stale_s),
        "SCAN_SERVICE_STORE_RETRY_BUDGET_S": str(config.store_retry_budget_s),
    }


@contextlib.contextmanager
def running_cluster(config: RunConfig, run_dir: Path, seed: int, run_id: str,
                    secret: str, *, port: int = 0,
                    proxy: StoreProxy | None = None) -> Iterator[tuple[Store, Cluster]]:
    """Start the store and the cluster, and stop both on the way out, in any case.

    With ``proxy`` (not started yet), the proxy is started in front of the store and the
    workers get its URL instead of the store's.
    """
    store = make_store(config.store, key_prefix=f"scan-harness:{run_id}:")
    clock_file = run_dir / "clock.json"
    write_state(clock_file, ClockState())
    cluster: Cluster | None = None
    try:
        store.start(run_dir, clock_file)
        store_url = store.url
        if proxy is not None:
            proxy.upstream = _host_port(store.url)
            proxy.start()
            store_url = proxied_url(store.url, proxy.host, proxy.port)
        if config.app is None:
            env = service_environment(config, store, secret, seed, clock_file)
            env["SCAN_SERVICE_REDIS_URL"] = store_url
            app = REFERENCE_APP
        else:
            env = app_environment(profile_for(config.profile), store_url=store_url,
                                  clock_file=clock_file, clock_driver=config.clock_driver)
            app = config.app
        cluster = Cluster(
            ClusterConfig(app=app, workers=config.workers,
                          worker_class=_worker_class(config, env),  # type: ignore[arg-type]
                          port=port, env=env, user_config=config.gunicorn_config),
            run_dir,
        )
        cluster.start()
        yield store, cluster
    finally:
        if cluster is not None:
            cluster.stop()
        if proxy is not None:
            proxy.stop()
        store.stop()


def _worker_class(config: RunConfig, env: dict[str, str]) -> str:
    """Return the run's worker class; ``auto`` asks the app whether it is ASGI or WSGI."""
    if config.worker_class != "auto":
        return config.worker_class
    if config.app is None:
        return "uvicorn"
    try:
        return detect_worker_class(config.app, python_path_with_cwd({**os.environ, **env}))
    except TargetError as error:
        raise StartError(str(error)) from error


def workers_text(config: RunConfig) -> str:
    """Return the cluster's workers as a progress message names them, such as
    ``4 uvicorn workers``."""
    if config.worker_class == "auto":
        return f"{config.workers} workers of the class that suits the app"
    return f"{config.workers} {config.worker_class} workers"


def uses_store_proxy(config: RunConfig) -> bool:
    """Return whether the run's workers reach the store through the store proxy.

    The proxy parses plain RESP over TCP, so a TLS (rediss://) or Unix socket store is
    reached directly, and the nemesis then has no store faults.
    """
    return config.store_proxy and not config.store.startswith(("rediss://", "unix://"))


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def execute(config: RunConfig, *, progress: Callable[[str], None] | None = None) -> RunOutcome:
    """Run the scenarios against a fresh cluster and judge the history."""
    say = progress or (lambda message: None)
    chosen = validate(config)
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(10**6)
    run_dir = make_run_dir(config.out, seed)
    outcome = RunOutcome(config, seed, run_dir, ExitCode.HARNESS_ERROR)
    started = time.monotonic()
    deadline = started + config.max_seconds

    run_id = f"{datetime.datetime.now().strftime('%Y%m%d%H%M%S')}-{seed}-{secrets.token_hex(3)}"
    secret = secrets.token_hex(16)
    record = RunRecord(
        seed=seed, faults=tuple(config.faults), store=config.store, workers=config.workers,
        worker_class=config.worker_class, retention_s=_retention_s(config),
        stale_s=config.stale_s, deadline_s=config.deadline_s,
        retry_budget_s=config.store_retry_budget_s, run_id=run_id,
        key_prefix=f"scan-harness:{run_id}:",
        started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    recorder = HistoryRecorder(record, run_dir / "history.jsonl")
    outcome.history = recorder.history

    with _logging_to(run_dir / "harness.log"):
        try:
            return _run(config, chosen, outcome, recorder, run_id, secret, started, deadline,
                        say)
        except (KeyboardInterrupt, Terminated) as interrupt:
            outcome.error = f"interrupted by {interrupt.__class__.__name__}"
            _finish(outcome, recorder, started)
            raise


@contextlib.contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """Send the harness's log records to ``path`` for the duration of a run."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package_logger = logging.getLogger("harness")
    previous_level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        handler.close()


def _retention_s(config: RunConfig) -> float:
    """Return the retention the checker judges by: the run's for the reference service,
    the profile's for any other target."""
    if config.app is None and config.url is None:
        return config.retention_s
    return profile_for(config.profile).retention_s


def _run(config: RunConfig, chosen: list[Scenario], outcome: RunOutcome,
         recorder: HistoryRecorder, run_id: str, secret: str, started: float,
         deadline: float, say: Callable[[str], None]) -> RunOutcome:
    seed = outcome.seed
    run_dir = outcome.run_dir
    profile = profile_for(config.profile)
    outcome.target = {"target": "url" if config.url else "app" if config.app else "reference",
                      "profile": profile.source, "routing": "pinned"}
    if config.url is not None:
        outcome.target["url"] = config.url
        return _run_url(config, chosen, outcome, recorder, profile, started, deadline, say)
    if config.app is not None:
        outcome.target["app"] = config.app
    try:
        say(f"starting the {config.store} store and {workers_text(config)}")
        proxy = StoreProxy(("127.0.0.1", 0)) if uses_store_proxy(config) else None
        with running_cluster(config, run_dir, seed, run_id, secret,
                             proxy=proxy) as (store, cluster):
            clock_file = run_dir / "clock.json"
            client = RoutingClient(cluster.base_url, recorder, profile=profile,
                                   headers_for=token_source(profile.auth, cluster.config.env))
            clock = VirtualClock(clock_file, stale_s=config.stale_s, store=store,
                                 sync_workers=client.sync_clock, recorder=recorder)
            client.set_virtual_clock(clock.now_ns)
            nemesis = Nemesis(cluster=cluster, client=client, recorder=recorder, store=store,
                              proxy=proxy, clock=clock, run_dir=run_dir)
            try:
                outcome.worker_pids = client.pin_workers(config.workers,
                                                         is_alive=cluster.check_alive)
                outcome.timings_s["ready"] = time.monotonic() - started
                outcome.target["worker_class"] = cluster.config.worker_class
                say(f"cluster of {cluster.config.worker_class} workers ready at "
                    f"{cluster.base_url} in {outcome.timings_s['ready']:.2f} s; workers (pid): "
                    + ", ".join(f"{index} ({pid})"
                                for index, pid in enumerate(outcome.worker_pids)))
                for chosen_scenario in chosen:
                    outcome.scenarios.append(_run_scenario(chosen_scenario, client, clock,
                                                           nemesis, config, seed, deadline,
                                                           say))
                # Workers the nemesis replaced have new pids in their slots.
                outcome.worker_pids = client.worker_pids
                if config.load_seconds > 0:
                    load = LoadTarget(
                        cluster.base_url, outcome.worker_pids, clock_file=clock_file,
                        profile_path=config.profile,
                        token_secret=secret if config.app is None else None,
                        app_env=cluster.config.env)
                    outcome.scenarios.append(_run_load_phase(config, load, recorder,
                                                             outcome, deadline, say))
                _follow_up(outcome, client, clock, recorder, config, deadline)
            finally:
                client.close()
    except RoutingError as error:
        outcome.error = f"not every worker could be reached: {error}"
        outcome.exit_code = ExitCode.INCONCLUSIVE
        return _finish(outcome, recorder, started)
    except StartError as error:
        outcome.error = str(error)
        outcome.exit_code = ExitCode.HARNESS_ERROR
        return _finish(outcome, recorder, started)

    return _judge(outcome, recorder, chosen, started)


def _run_url(config: RunConfig, chosen: list[Scenario], outcome: RunOutcome,
             recorder: HistoryRecorder, profile: Profile, started: float, deadline: float,
             say: Callable[[str], None]) -> RunOutcome:
    """Run the scenarios against the running service at ``config.url``.

    The harness starts nothing, so there is no virtual time and no nemesis: scenarios
    that need either are skipped with a note, and their verdict is unknown.
    """
    assert config.url is not None
    # The harness did not start the service, so a token function reads the service's
    # settings from the harness's own environment, and the profile's ``env``.
    auth_env = {**os.environ, **profile.env}
    client = RoutingClient(config.url, recorder, profile=profile,
                           headers_for=token_source(profile.auth, auth_env))
    try:
        say(f"reaching the service at {config.url}")
        probe_url(config.url, profile.probe_path)
        if client.sends_worker_header():
            outcome.worker_pids = client.pin_workers(config.workers)
        else:
            client.observe(config.workers)
            outcome.target["routing"] = "observed"
            outcome.notes.append(
                f"routing was not possible: the service sends no {profile.worker_header} "
                "header, so each scenario's requests went over "
                f"{config.workers} keep-alive connections to unknown workers")
        outcome.timings_s["ready"] = time.monotonic() - started
        for chosen_scenario in chosen:
            outcome.scenarios.append(_run_without_cluster(chosen_scenario, client, config,
                                                          outcome.seed, deadline, say))
        if config.load_seconds > 0:
            secret = auth_env.get(REFERENCE_SECRET_ENV) if profile.is_reference else None
            load = LoadTarget(config.url, outcome.worker_pids or None,
                              profile_path=config.profile, token_secret=secret,
                              app_env=auth_env)
            outcome.scenarios.append(_run_load_phase(config, load, recorder, outcome,
                                                     deadline, say))
        _follow_up(outcome, client, None, recorder, config, deadline)
    except RoutingError as error:
        outcome.error = f"not every worker could be reached: {error}"
        outcome.exit_code = ExitCode.INCONCLUSIVE
        return _finish(outcome, recorder, started)
    except StartError as error:
        outcome.error = str(error)
        outcome.exit_code = ExitCode.HARNESS_ERROR
        return _finish(outcome, recorder, started)
    finally:
        client.close()
    return _judge(outcome, recorder, chosen, started)


def _run_without_cluster(chosen: Scenario, client: RoutingClient, config: RunConfig,
                         seed: int, deadline: float,
                         say: Callable[[str], None]) -> ScenarioOutcome:
    """Run one scenario with no clock and no nemesis, or skip it if it needs either."""
    missing = [name for name, needed in (("virtual time", chosen.needs_clock),
                                         ("a nemesis", chosen.needs_nemesis)) if needed]
    if missing:
        note = (f"skipped: it needs {' and '.join(missing)}, which a run against --url "
                "does not have; run it with --app")
        say(f"scenario {chosen.name}: {note}")
        return ScenarioOutcome(chosen.name, chosen.invariants, Verdict.UNKNOWN, None, 0.0, 0,
                               None, [note])
    say(f"scenario {chosen.name}: {chosen.summary}")
    context = ScenarioContext(
        name=chosen.name, client=client, rng=random.Random(f"{seed}:{chosen.name}"),
        deadline=deadline, retention_s=_retention_s(config), stale_s=config.stale_s,
        scan_timeout_s=config.scan_timeout_s, process=client.new_process(),
    )
    started = time.monotonic()
    error = None
    try:
        chosen.run(context)
    except ScenarioAborted as aborted:
        error = str(aborted)
        log.warning("scenario %s stopped early: %s", chosen.name, aborted)
    return ScenarioOutcome(chosen.name, chosen.invariants, Verdict.UNKNOWN, None,
                           time.monotonic() - started, 0, error, context.notes)


def _run_scenario(chosen: Scenario, client: RoutingClient, clock: VirtualClock,
                  nemesis: Nemesis, config: RunConfig, seed: int, deadline: float,
                  say: Callable[[str], None]) -> ScenarioOutcome:
    say(f"scenario {chosen.name}: {chosen.summary}")
    nemesis.scenario = chosen.name
    context = ScenarioContext(
        name=chosen.name, client=client, clock=clock, nemesis=nemesis,
        rng=random.Random(f"{seed}:{chosen.name}"), deadline=deadline,
        retention_s=config.retention_s, stale_s=config.stale_s,
        scan_timeout_s=config.scan_timeout_s, budget_s=config.scenario_budget_s,
        process=client.new_process(),
    )
    started = time.monotonic()
    error = None
    try:
        chosen.run(context)
    except (ScenarioAborted, ClockError, NemesisError) as aborted:
        error = str(aborted)
        log.warning("scenario %s stopped early: %s", chosen.name, aborted)
    finally:
        # Every scenario starts with no fault in effect and on a ticking clock, wherever
        # the last one left them.
        try:
            nemesis.heal()
        except NemesisError as heal_error:
            log.error("could not end the faults of scenario %s: %s", chosen.name, heal_error)
            error = error or str(heal_error)
        nemesis.scenario = None
        if clock.state.frozen:
            clock.tick(scenario=chosen.name)
    return ScenarioOutcome(chosen.name, chosen.invariants, Verdict.UNKNOWN, None,
                           time.monotonic() - started, 0, error, context.notes)


def _run_load_phase(config: RunConfig, target: LoadTarget, recorder: HistoryRecorder,
                    outcome: RunOutcome, deadline: float,
                    say: Callable[[str], None]) -> ScenarioOutcome:
    """Load the service with Locust; its ops join the history as the scenario ``load``."""
    say(f"load: {config.load_users} Locust users for {config.load_seconds:g} s")
    phase = run_load_phase(target, recorder, outcome.run_dir, users=config.load_users,
                           seconds=config.load_seconds,
                           time_left_s=deadline - time.monotonic())
    if phase.error:
        log.warning("the load phase did not run as configured: %s", phase.error)
    return ScenarioOutcome(LOAD_SCENARIO, tuple(INVARIANTS), Verdict.UNKNOWN, None,
                           phase.duration_s, 0, phase.error, phase.notes)


def _follow_up(outcome: RunOutcome, client: RoutingClient, clock: VirtualClock | None,
               recorder: HistoryRecorder, config: RunConfig, deadline: float) -> None:
    """Poll every open scan until it ended or its deadline passed (see harness.follow_up)."""
    started = time.monotonic()
    notes = follow_open_scans(client, clock, recorder.history, deadline_s=config.deadline_s,
                              stop_at=deadline)
    outcome.timings_s["follow_up"] = time.monotonic() - started
    by_name = {scenario_outcome.name: scenario_outcome for scenario_outcome in outcome.scenarios}
    for scenario, note in notes:
        log.warning("follow-up of scenario %s: %s", scenario, note)
        if scenario in by_name:
            by_name[scenario].notes.append(note)


def _judge(outcome: RunOutcome, recorder: HistoryRecorder, chosen: list[Scenario],
           started: float) -> RunOutcome:
    history = recorder.history
    checked = time.monotonic()
    for scenario_outcome in outcome.scenarios:
        ops = [op for op in history.ops if op.scenario == scenario_outcome.name]
        scenario_outcome.ops = len(ops)
        scenario_history = History(history.run, ops,
                                   nemesis_windows=history.nemesis_windows)
        scenario_outcome.result = check(scenario_history, scenario_outcome.invariants)
        scenario_outcome.verdict = scenario_outcome.result.verdict
    outcome.result = check(history)
    outcome.verdict = outcome.result.verdict
    outcome.timings_s["check"] = time.monotonic() - checked

    if outcome.verdict is Verdict.FAIL:
        outcome.exit_code = ExitCode.VIOLATION
    elif outcome.verdict is Verdict.UNKNOWN:
        outcome.exit_code = ExitCode.INCONCLUSIVE
    else:
        outcome.exit_code = ExitCode.PASS
    return _finish(outcome, recorder, started)


def _finish(outcome: RunOutcome, recorder: HistoryRecorder, started: float) -> RunOutcome:
    recorder.close()
    outcome.timings_s["total"] = time.monotonic() - started
    write_reports(outcome)
    return outcome
