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
from pathlib import Path
from types import FrameType
from typing import NoReturn

import click
from rich.console import Console
from rich.table import Table

from harness.checker import INVARIANTS, Verdict, check
from harness.history import HistoryError, read_history
from harness.report import print_summary
from harness.runner import ConfigError, ExitCode, RunConfig, Terminated, execute
from harness.scenario import registry

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)


def _fail(message: str) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}")
    sys.exit(ExitCode.HARNESS_ERROR)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Reproduce and guard against multi-worker state bugs in job-polling services."""


@cli.command()
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True,
              help="Number of gunicorn workers.")
@click.option("--worker-class", type=click.Choice(["uvicorn", "gthread"]), default="uvicorn",
              show_default=True, help="Gunicorn worker class.")
@click.option("--store", default="fakeredis", show_default=True,
              help="fakeredis (embedded), redis-server (spawned) or a redis:// URL.")
@click.option("--fault", "faults", multiple=True, metavar="NAME",
              help="Switch on a fault in the reference service; repeatable.")
@click.option("--scenario", "scenarios", multiple=True, metavar="NAME",
              help="Run only this scenario; repeatable. Default: every scenario.")
@click.option("--seed", type=int, default=None, help="Seed of the run; random when omitted.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory. Default: .harness-runs/<time>-<seed>/.")
@click.option("--max-seconds", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Wall-clock cap of the run, in seconds.")
def run(workers: int, worker_class: str, store: str, faults: tuple[str, ...],
        scenarios: tuple[str, ...], seed: int | None, out: Path | None,
        max_seconds: float) -> None:
    """Run scenarios against the reference service and judge the history."""
    config = RunConfig(seed=seed, workers=workers, worker_class=worker_class, store=store,
                       faults=faults, scenarios=scenarios, out=out, max_seconds=max_seconds)
    try:
        outcome = execute(config, progress=lambda message: console.print(f"· {message}"))
    except ConfigError as error:
        _fail(str(error))
    console.print(f"seed {outcome.seed}")
    print_summary(outcome, console)
    sys.exit(outcome.exit_code)


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
        console.print(f"[red]violation[/] [{violation.invariant}] scan {violation.scan_id} "
                      f"workers {list(violation.workers)} ops {list(violation.op_indices)}: "
                      f"{violation.message}")
    for name, invariant in result.invariants.items():
        console.print(f"{name}: {invariant.verdict.value} ({invariant.scans_passed} passed, "
                      f"{invariant.scans_failed} failed, {invariant.scans_unknown} no data)")
    console.print(f"verdict: {result.verdict.value}")
    codes = {Verdict.PASS: ExitCode.PASS, Verdict.FAIL: ExitCode.VIOLATION,
             Verdict.UNKNOWN: ExitCode.INCONCLUSIVE}
    sys.exit(codes[result.verdict])


@cli.command()
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True,
              help="Number of gunicorn workers.")
@click.option("--worker-class", type=click.Choice(["uvicorn", "gthread"]), default="uvicorn",
              show_default=True, help="Gunicorn worker class.")
@click.option("--store", default="fakeredis", show_default=True,
              help="fakeredis (embedded), redis-server (spawned) or a redis:// URL.")
@click.option("--fault", "faults", multiple=True, metavar="NAME",
              help="Switch on a fault in the reference service; repeatable.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=0,
              help="Port to serve on; 0 picks a free one.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the logs. Default: .harness-runs/<time>-serve/.")
def serve(workers: int, worker_class: str, store: str, faults: tuple[str, ...], port: int,
          out: Path | None) -> None:
    """Run the reference service on a cluster until Ctrl-C."""
    from harness.serve import serve_until_interrupted

    config = RunConfig(workers=workers, worker_class=worker_class, store=store, faults=faults,
                       out=out)
    try:
        serve_until_interrupted(config, port, console)
    except ConfigError as error:
        _fail(str(error))


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def main() -> None:
    """Entry point: run the CLI with exit code 3 for usage errors, and stop cleanly on
    SIGTERM as on Ctrl-C."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
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
