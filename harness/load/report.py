"""Reports of a load run: Locust's table and the verdict on the console, files for CI.

``summary.json`` has every key of a run's summary (see ``harness.report``), with
``replay`` holding the ``scan-harness load`` command that runs the same load again, plus:

- ``command``: ``load``;
- ``load``: users, spawn rate, run time, processes, the URL of an external cluster,
  whether the history was recorded, and where the worker indices come from
  (``cluster`` or ``history``). ``stats`` contains Locust's statistics: one entry per
  request name and the aggregate, with requests, failures, requests per second and the
  50th, 95th and 99th percentile response times in ms. ``thresholds`` lists each
  threshold with its limit, the measured figure and whether it was met.
  ``user_exceptions`` counts the exceptions that the simulated users raised.

``junit.xml`` has one test case for the invariants and one per threshold.
"""

from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ElementTree
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.checker import Verdict, Violation
from harness.load.locust_stats import EndpointStats, format_number
from harness.report import VERDICT_STYLES, requests_line, summary

if TYPE_CHECKING:
    from harness.load.runner import LoadOutcome


def rerun_command(outcome: LoadOutcome) -> str:
    """Return the command that runs the same load again with the same seed.

    Locust's users are not scripted step by step, so a rerun sends a similar load, not
    the same requests. A token secret is never printed.
    """
    config = outcome.config
    argv = ["scan-harness", "load", "--users", str(config.users),
            "--spawn-rate", f"{config.spawn_rate:g}", "--run-time", config.run_time,
            "--seed", str(outcome.run.seed)]
    if config.processes != 1:
        argv += ["--processes", str(config.processes)]
    if config.url is not None:
        argv += ["--url", config.url]
        if config.allow_remote:
            argv += ["--allow-remote"]
        if config.token_secret is not None:
            argv += ["--token-secret", "SECRET"]
    else:
        if config.app is not None:
            argv += ["--app", config.app]
        if config.gunicorn_config is not None:
            argv += ["--gunicorn-config", str(config.gunicorn_config)]
        if config.workers != 4:
            argv += ["--workers", str(config.workers)]
        # With --app the command line's default worker class is auto.
        if config.worker_class != ("auto" if config.app is not None else "uvicorn"):
            argv += ["--worker-class", config.worker_class]
        if config.store != "fakeredis":
            argv += ["--store", config.store]
        for fault in config.faults:
            argv += ["--fault", fault]
    if config.profile is not None:
        argv += ["--profile", str(config.profile)]
    thresholds = config.thresholds
    for option, value in (("--max-p95-ms", thresholds.max_p95_ms),
                          ("--max-fail-ratio", thresholds.max_fail_ratio),
                          ("--min-rps", thresholds.min_rps)):
        if value is not None:
            argv += [option, format_number(value)]
    return shlex.join(argv)


def load_summary(outcome: LoadOutcome) -> dict[str, Any]:
    """Build the ``summary.json`` document of a load run."""
    config = outcome.config
    document = summary(outcome.run)
    document["command"] = "load"
    document["replay"] = rerun_command(outcome)
    document["load"] = {
        "users": config.users,
        "spawn_rate": config.spawn_rate,
        "run_time": config.run_time,
        "processes": config.processes,
        "url": config.url,
        "app": config.app,
        "profile": str(config.profile) if config.profile is not None else None,
        "recorded": config.record,
        "connections_per_user": config.connections,
        "stats": outcome.stats.to_json() if outcome.stats is not None else None,
        "thresholds": [threshold.to_json() for threshold in outcome.thresholds],
        "user_exceptions": outcome.exceptions,
        "worker_indices_from": outcome.worker_pids_source,
    }
    return document


def load_junit_xml(outcome: LoadOutcome) -> ElementTree.ElementTree:
    """Build a JUnit report: the invariants as one test case, each threshold as another."""
    run = outcome.run
    suite = ElementTree.Element("testsuite", name="scan-harness load")
    failures = skipped = 0

    case = ElementTree.SubElement(suite, "testcase", classname="load", name="invariants",
                                  time=f"{run.timings_s.get('locust', 0.0):.3f}")
    violations = run.result.violations if run.result else []
    if run.verdict is Verdict.FAIL:
        failures += 1
        failure = ElementTree.SubElement(case, "failure", message=(
            f"{len(violations)} violation(s); rerun: {rerun_command(outcome)}"))
        failure.text = "\n".join(violation_line(violation) for violation in violations)
    elif run.verdict is not Verdict.PASS:
        skipped += 1
        ElementTree.SubElement(case, "skipped", message="no invariant had data"
                               if outcome.config.record else "the history was not recorded")

    for threshold in outcome.thresholds:
        case = ElementTree.SubElement(suite, "testcase", classname="thresholds",
                                      name=threshold.name)
        if not threshold.passed:
            failures += 1
            ElementTree.SubElement(case, "failure", message=threshold.message)

    if run.error:
        case = ElementTree.SubElement(suite, "testcase", classname="harness", name="load")
        ElementTree.SubElement(case, "error", message=run.error)
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "1" if run.error else "0")
    ElementTree.indent(suite)
    return ElementTree.ElementTree(suite)


def write_load_reports(outcome: LoadOutcome) -> None:
    """Write ``summary.json`` and ``junit.xml`` into the run directory."""
    run_dir = outcome.run.run_dir
    (run_dir / "summary.json").write_text(json.dumps(load_summary(outcome), indent=2) + "\n",
                                          encoding="utf-8")
    load_junit_xml(outcome).write(run_dir / "junit.xml", encoding="utf-8",
                                  xml_declaration=True)


def violation_line(violation: Violation) -> str:
    """Describe a violation on one line: invariant, scan, workers, ops and message."""
    workers = ", ".join(str(worker) for worker in violation.workers) or "-"
    ops = ", ".join(str(index) for index in violation.op_indices)
    return (f"[{violation.invariant}] scan {violation.scan_id} workers {workers} "
            f"ops {ops}: {violation.message}")


def stats_table(rows: list[EndpointStats], total: EndpointStats) -> Table:
    """Build Locust's figures as a table: one row per request name and the aggregate."""
    table = Table(title="Locust", title_justify="left")
    table.add_column("request")
    for heading in ("requests", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(heading, justify="right")
    for row in [*rows, total]:
        name = escape(row.name) if row is not total else "[bold]all[/]"
        failures = f"{row.failures} ({row.fail_ratio:.1%})"
        table.add_row(f"{row.method} {name}".strip(), str(row.requests), failures,
                      f"{row.rps:.1f}", _ms(row.p50_ms), _ms(row.p95_ms), _ms(row.p99_ms))
    return table


def print_load_summary(outcome: LoadOutcome, console: Console, *,
                       max_violations: int = 10) -> None:
    """Print Locust's table, the thresholds, the violations and the verdict."""
    run = outcome.run
    if outcome.stats is not None:
        console.print(stats_table(outcome.stats.endpoints, outcome.stats.total))
    for threshold in outcome.thresholds:
        style = "green" if threshold.passed else "bold red"
        console.print(f"[{style}]{threshold.message}[/]", highlight=False)
    if outcome.exceptions:
        console.print(f"[yellow]warning:[/] the simulated users raised {outcome.exceptions} "
                      f"exceptions; see {run.run_dir / 'locust_exceptions.csv'}")

    line = requests_line(run.history, noun="requests recorded")
    if line is not None:
        console.print(line)
    violations = run.result.violations if run.result else []
    for violation in violations[:max_violations]:
        console.print(f"[red]violation[/] {escape(violation_line(violation))}", highlight=False)
    if len(violations) > max_violations:
        console.print(f"... and {len(violations) - max_violations} more in "
                      f"{run.run_dir / 'summary.json'}")

    if run.error:
        console.print(f"[bold red]error:[/] {run.error}", highlight=False)
    verdict = run.verdict.value if run.verdict else ("not judged" if not outcome.config.record
                                                     else "error")
    style = VERDICT_STYLES.get(verdict, "bold red" if outcome.config.record else "bold")
    console.print(f"verdict: [{style}]{verdict}[/] (exit {run.exit_code}); seed {run.seed}; "
                  f"run directory {run.run_dir}", highlight=False)
    if run.exit_code != 0:
        console.print(f"rerun: {rerun_command(outcome)}", highlight=False)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
