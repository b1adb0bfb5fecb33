"""The ``scan-harness`` command line.

``scan-harness run`` with no options is the main job: the correct reference service on
4 workers and the embedded store, every scenario, a summary on the console, exit 0.
Exit codes: 0 pass, 1 an invariant was violated, 2 a performance threshold was missed,
3 the harness could not run (bad input, a process that would not start), 4 inconclusive.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.checker import INVARIANTS, Verdict, check
from harness.client import RoutingError
from harness.clock_follower import DRIVERS
from harness.history import HistoryError, read_history
from harness.processes import StartError
from harness.report import print_summary, print_violation
from harness.runner import ConfigError, ExitCode, RunConfig, Terminated, execute
from harness.scenario import registry

# soft_wrap keeps long lines (replay commands, tokens) whole when output is not a terminal.
console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str) -> NoReturn:
    errors.print(Text.assemble(("error: ", "bold red"), message))
    sys.exit(ExitCode.HARNESS_ERROR)


def reference_cluster_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the options that shape a cluster of the reference service: workers, worker
    class, store and faults."""
    options = [
        click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True,
                     help="Number of gunicorn workers."),
        click.option("--worker-class", type=click.Choice(["uvicorn", "gthread", "auto"]),
                     default=None,
                     help="Gunicorn worker class. Default: uvicorn, or with --app auto, "
                          "which picks uvicorn for an ASGI app and gthread for a WSGI app."),
        click.option("--store", default="fakeredis", show_default=True,
                     help="fakeredis (embedded), redis-server (spawned) or a redis:// URL."),
        click.option("--fault", "faults", multiple=True, metavar="NAME",
                     help="Switch on a fault in the reference service; repeatable."),
    ]
    return _with_options(command, options)


def _with_options(command: Callable[..., None],
                  options: Sequence[Callable[[Any], Any]]) -> Callable[..., None]:
    """Return ``command`` with ``options``, which --help lists in the order given."""
    for option in reversed(options):  # applied last-first
        command = option(command)
    return command


def own_service_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the options that describe a user's own service: its app, API profile and
    gunicorn config."""
    options = [
        click.option("--app", default=None, metavar="MODULE:APP",
                     help="Serve your own WSGI or ASGI app under the cluster instead of the "
                          "reference service."),
        click.option("--profile", type=click.Path(dir_okay=False, path_type=Path),
                     default=None,
                     help="TOML API profile of the service. Default: the reference "
                          "service's."),
        click.option("--gunicorn-config", type=click.Path(dir_okay=False, path_type=Path),
                     default=None,
                     help="Your gunicorn config file, chained with the harness's."),
    ]
    return _with_options(command, options)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Reproduce and guard against multi-worker state bugs in job-polling services."""


@cli.command()
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True,
              help="Number of gunicorn workers (with --url: how many the service runs).")
@click.option("--worker-class", type=click.Choice(["uvicorn", "gthread", "auto"]),
              default=None,
              help="Gunicorn worker class. Default: uvicorn, or with --app auto, which "
                   "picks uvicorn for an ASGI app and gthread for a WSGI app.")
@click.option("--store", default="fakeredis", show_default=True,
              help="fakeredis (embedded), redis-server (spawned) or a redis:// URL.")
@click.option("--fault", "faults", multiple=True, metavar="NAME",
              help="Switch on a fault in the reference service; repeatable.")
@click.option("--scenario", "scenarios", multiple=True, metavar="NAME",
              help="Run only this scenario; repeatable. Default: every scenario.")
@click.option("--url", default=None, metavar="URL",
              help="Test the service already running at this base URL; starts nothing.")
@own_service_options
@click.option("--allow-remote", is_flag=True,
              help="Allow a --url that is not on loopback (load then needs explicit caps).")
@click.option("--scenarios-dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Folder of your own scenario modules to add to the registry.")
@click.option("--load-users", type=click.IntRange(min=1), default=10, show_default=True,
              help="Locust users of the load phase.")
@click.option("--seed", type=int, default=None, help="Seed of the run; random when omitted.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory. Default: .harness-runs/<time>-<seed>/.")
@click.option("--max-seconds", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Wall-clock cap of the run, in seconds.")
@click.option("--clock-driver", type=click.Choice(DRIVERS), default="time-machine",
              show_default=True, help="Library that fakes time inside the workers.")
@click.option("--load-seconds", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Length of the Locust load phase after the scenarios, in seconds; "
                   "0 skips it.")
@click.option("--scenario-budget", type=click.FloatRange(min=0), default=10.0,
              show_default=True,
              help="Real seconds for scenarios without a natural end (naive-random-load).")
@click.pass_context
def run(ctx: click.Context, workers: int, worker_class: str | None, store: str,
        faults: tuple[str, ...], scenarios: tuple[str, ...], app: str | None, url: str | None,
        profile: Path | None, gunicorn_config: Path | None, allow_remote: bool,
        scenarios_dir: Path | None, load_users: int, seed: int | None, out: Path | None,
        max_seconds: float, clock_driver: str, load_seconds: float,
        scenario_budget: float) -> None:
    """Run scenarios against a service (the reference one by default) and judge the history."""
    if worker_class is None:
        worker_class = "auto" if app is not None else "uvicorn"
    remote_load = url is not None and allow_remote and load_seconds > 0
    if remote_load and not _given_on_command_line(ctx, "load_users", "load_seconds"):
        _fail("--allow-remote needs explicit caps on load: give --load-users N and "
              "--load-seconds S (or --load-seconds 0 for no load)")
    config = RunConfig(seed=seed, workers=workers, worker_class=worker_class, store=store,
                       faults=faults, scenarios=scenarios, out=out, max_seconds=max_seconds,
                       clock_driver=clock_driver, load_seconds=load_seconds,
                       scenario_budget_s=scenario_budget, load_users=load_users, app=app,
                       url=url, profile=profile, gunicorn_config=gunicorn_config,
                       allow_remote=allow_remote, scenarios_dir=scenarios_dir)
    try:
        outcome = execute(config, progress=lambda message: console.print(f"· {message}"))
    except ConfigError as error:
        _fail(str(error))
    console.print(f"seed {outcome.seed}")
    print_summary(outcome, console)
    sys.exit(outcome.exit_code)


def _given_on_command_line(ctx: click.Context, *names: str) -> bool:
    """Return whether every one of the parameters ``names`` was given on the command line."""
    return all(ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
               for name in names)


@cli.command("scenarios")
def list_scenarios() -> None:
    """List the scenarios with what each looks for and the invariants it checks."""
    table = Table(show_lines=False)
    table.add_column("scenario")
    table.add_column("looks for")
    table.add_column("invariants")
    for scenario in registry().values():
        table.add_row(scenario.name, scenario.summary, ", ".join(scenario.invariants))
    console.print(table)


@cli.command("faults")
def list_faults() -> None:
    """List the faults of the reference service with the symptom each causes."""
    from service_under_test.faults import KNOWN

    table = Table()
    table.add_column("fault")
    table.add_column("what a client sees")
    for fault in KNOWN.values():
        table.add_row(fault.name, fault.symptom)
    console.print(table)


@cli.command("invariants")
def list_invariants() -> None:
    """List the invariants the checker judges."""
    table = Table()
    table.add_column("invariant")
    table.add_column("what must hold")
    for name, invariant in INVARIANTS.items():
        table.add_row(name, invariant.description)
    console.print(table)


@cli.command("check")
@click.argument("history_path", metavar="HISTORY.jsonl",
                type=click.Path(dir_okay=False, path_type=Path))
def check_history(history_path: Path) -> None:
    """Judge a recorded history again and print its violations."""
    try:
        history = read_history(history_path)
    except HistoryError as error:
        _fail(f"{error}; pass the history.jsonl of a run directory")
    result = check(history)
    for violation in result.violations:
        print_violation(console, violation)
    for name, invariant in result.invariants.items():
        console.print(f"{name}: {invariant.verdict.value} ({invariant.scans_passed} passed, "
                      f"{invariant.scans_failed} failed, {invariant.scans_unknown} no data)")
    console.print(f"verdict: {result.verdict.value}")
    codes = {Verdict.PASS: ExitCode.PASS, Verdict.FAIL: ExitCode.VIOLATION,
             Verdict.UNKNOWN: ExitCode.INCONCLUSIVE}
    sys.exit(codes[result.verdict])


# --- scan-harness load and merge-history ---

# Options that configure a cluster the harness starts, which --url replaces.
_CLUSTER_OPTIONS = {"workers": "--workers", "worker_class": "--worker-class",
                    "store": "--store", "faults": "--fault", "port": "--port",
                    "app": "--app", "gunicorn_config": "--gunicorn-config"}


@cli.command()
@click.option("--users", type=click.IntRange(min=1), default=20, show_default=True,
              help="Number of simulated users.")
@click.option("--spawn-rate", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, help="Users started per second.")
@click.option("--run-time", default="30s", show_default=True,
              help="How long the load runs: seconds, or a span such as 30s, 5m or 1h30m.")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Locust processes that run the users; above 1, Locust's --processes.")
@reference_cluster_options
@click.option("--seed", type=int, default=None, help="Seed of the run; random when omitted.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory. Default: .harness-runs/<time>-<seed>/.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=0,
              help="Port of the cluster; 0 picks a free one.")
@click.option("--url", default=None, metavar="URL",
              help="Load the service running at this base URL instead of starting one.")
@own_service_options
@click.option("--allow-remote", is_flag=True,
              help="Allow a --url that is not on loopback (needs explicit --users and "
                   "--run-time).")
@click.option("--token-secret", envvar="SCAN_LOAD_TOKEN_SECRET", default=None,
              help="Token secret of the reference service at --url (or set "
                   "SCAN_LOAD_TOKEN_SECRET).")
@click.option("--max-p95-ms", type=click.FloatRange(min=0), default=None,
              help="Exit 2 when the 95th percentile response time is above this, in ms.")
@click.option("--max-fail-ratio", type=click.FloatRange(min=0, max=1), default=None,
              help="Exit 2 when the share of failed requests (5xx, no response) is above this.")
@click.option("--min-rps", type=click.FloatRange(min=0), default=None,
              help="Exit 2 when the requests per second are below this.")
@click.pass_context
def load(ctx: click.Context, users: int, spawn_rate: float, run_time: str, processes: int,
         workers: int, worker_class: str | None, store: str, faults: tuple[str, ...],
         seed: int | None, out: Path | None, port: int, app: str | None, url: str | None,
         profile: Path | None, gunicorn_config: Path | None, allow_remote: bool,
         token_secret: str | None, max_p95_ms: float | None, max_fail_ratio: float | None,
         min_rps: float | None) -> None:
    """Load a service (the reference one by default) with Locust users and judge what
    they saw."""
    from harness.load.locust_stats import Thresholds
    from harness.load.report import print_load_summary
    from harness.load.runner import LoadConfig, execute_load

    if url is not None:
        given = [flag for name, flag in _CLUSTER_OPTIONS.items()
                 if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
        if given:
            _fail(f"--url names a running cluster, so {', '.join(given)} cannot be used with "
                  "it: drop those options or drop --url")
        if allow_remote and not _given_on_command_line(ctx, "users", "run_time"):
            _fail("--allow-remote needs explicit caps on load: give --users N and "
                  "--run-time S")
    config = LoadConfig(
        users=users, spawn_rate=spawn_rate, run_time=run_time, processes=processes,
        faults=faults, workers=workers,
        worker_class=worker_class or ("auto" if app is not None else "uvicorn"), store=store,
        seed=seed, out=out, url=url, token_secret=token_secret, port=port, app=app,
        profile=profile, gunicorn_config=gunicorn_config, allow_remote=allow_remote,
        thresholds=Thresholds(max_p95_ms=max_p95_ms, max_fail_ratio=max_fail_ratio,
                              min_rps=min_rps),
    )
    try:
        outcome = execute_load(config, progress=lambda message: console.print(f"· {message}"))
    except ConfigError as error:
        _fail(str(error))
    print_load_summary(outcome, console)
    sys.exit(outcome.exit_code)


@cli.command("merge-history")
@click.argument("out", metavar="OUT.jsonl", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("files", metavar="FILE.jsonl...", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--worker-pid", "worker_pids", multiple=True, type=int, metavar="PID",
              help="Pid of a worker of the cluster, once per worker; indices follow the pids "
                   "in ascending order. Default: the pids that served requests.")
def merge_history(out: Path, files: tuple[Path, ...], worker_pids: tuple[int, ...]) -> None:
    """Merge the per-process histories of a load into one history for scan-harness check."""
    from harness.load.merge import (
        merge_files,
        seen_worker_pids,
        set_worker_indices,
        write_history,
    )

    if out.resolve() in {path.resolve() for path in files}:
        _fail(f"{out} is also an input file; write the merged history to a new file")
    try:
        history = merge_files(list(files))
    except HistoryError as error:
        _fail(f"{error}; pass the .jsonl files that the load's Locust processes wrote")
    pids = sorted(worker_pids) or seen_worker_pids(history)
    set_worker_indices(history.ops, pids)
    write_history(history, out)
    workers = ", ".join(f"{index} ({pid})" for index, pid in enumerate(pids)) or "none"
    console.print(f"merged {len(history.ops)} ops from {len(files)} files into {out}; "
                  f"workers (pid): {workers}")


# --- end of scan-harness load and merge-history ---


@cli.command()
@reference_cluster_options
@click.option("--port", type=click.IntRange(min=0, max=65535), default=0,
              help="Port to serve on; 0 picks a free one.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the logs. Default: .harness-runs/<time>-serve/.")
def serve(workers: int, worker_class: str | None, store: str, faults: tuple[str, ...],
          port: int, out: Path | None) -> None:
    """Run the reference service on a cluster until Ctrl-C."""
    from harness.serve import serve_until_interrupted

    config = RunConfig(workers=workers, worker_class=worker_class or "uvicorn", store=store,
                       faults=faults, out=out)
    try:
        serve_until_interrupted(config, port, console)
    except ConfigError as error:
        _fail(str(error))
    except (StartError, RoutingError) as error:
        _fail(f"the cluster did not start: {error}")


@cli.command()
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True,
              help="Seeds per fault and for the correct service.")
@click.option("--first-seed", type=int, default=1, show_default=True,
              help="The first seed; the others follow it.")
@click.option("--store", default="fakeredis", show_default=True,
              help="fakeredis (embedded), redis-server (spawned) or a redis:// URL.")
@click.option("--fault", "faults", multiple=True, metavar="NAME",
              help="Only this fault; repeatable. Default: every fault of the registry.")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Runs at a time, each with its own cluster.")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also run each fault under naive random load, for comparison.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the runs, matrix.json and matrix.md. "
                   "Default: .harness-runs/matrix-<time>/.")
def matrix(seeds: int, first_seed: int, store: str, faults: tuple[str, ...], jobs: int,
           baseline: bool, out: Path | None) -> None:
    """Run every scenario against the correct service and each fault, over several seeds."""
    from harness.matrix import MatrixConfig, markdown, run_matrix
    from harness.store import make_store

    try:
        make_store(store, key_prefix="")
    except ValueError as error:
        _fail(str(error))
    config = MatrixConfig(seeds=seeds, first_seed=first_seed, store=store, out=out, jobs=jobs,
                          baseline=baseline, faults=faults)
    try:
        result = run_matrix(config, progress=lambda message: console.print(f"· {message}"))
    except ValueError as error:
        _fail(f"{error}; scan-harness faults lists them")
    console.print(markdown(result))
    console.print(f"matrix written to {result.out / 'matrix.md'} and "
                  f"{result.out / 'matrix.json'}")
    sys.exit(result.exit_code)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def main() -> None:
    """Entry point: run the CLI with exit code 3 for usage errors, and stop cleanly on
    SIGTERM as on Ctrl-C."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
        # A shell starts background jobs with SIGINT ignored; Ctrl-C and `kill -INT` must
        # still stop the run and its processes.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        errors.print("interrupted; every process of the run was stopped")
        sys.exit(130)
    except click.ClickException as error:
        # click exits with 2 on usage errors; 2 means a missed threshold here.
        error.show()
        sys.exit(ExitCode.HARNESS_ERROR)
    except KeyboardInterrupt:
        errors.print("interrupted; every process of the run was stopped")
        sys.exit(130)
    except Terminated:
        errors.print("terminated; every process of the run was stopped")
        sys.exit(143)


if __name__ == "__main__":
    main()
