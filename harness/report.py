"""Reports of a run: ``summary.json`` and ``junit.xml`` for CI, a console summary for people.

The summary is written for every run, also one that could not start, so a CI job always
finds a file that says what happened. Keys of ``summary.json``:

- ``verdict``: ``pass``, ``fail`` or ``unknown`` (null when the harness could not run);
- ``exit_code`` and ``error`` (what stopped the harness, if anything);
- ``seed`` and ``replay``: the command that runs the same steps to the same workers;
- ``target``: what was tested (``reference``, ``app`` or ``url``), the app or URL, the
  profile, the routing (``pinned`` or ``observed``) and the worker class of the cluster;
- ``scenarios``: per scenario, its verdict, the invariants it declares, its ops, its
  duration, and the violations of its own ops;
- ``violations``: every violation of the whole history, with invariant, scan id, op
  indices, workers and message;
- ``invariants``: per invariant, its verdict and how many scans passed, failed or had
  no data;
- ``counts``: ops, requests, scans, and requests served per worker;
- ``workers``: index and pid of each worker; ``timings_s``: ready, check and total.
"""

from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ElementTree
from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.checker import Verdict, Violation
from harness.history import History, OpType

if TYPE_CHECKING:
    from harness.runner import RunOutcome

VERDICT_STYLES = {"pass": "bold green", "fail": "bold red", "unknown": "bold yellow"}


def replay_command(outcome: RunOutcome) -> str:
    """Return the command line that replays this run's steps with the same seed.

    It names the same target, profile, scenarios and settings, and leaves out each
    option that has its command-line default.
    """
    config = outcome.config
    argv = ["scan-harness", "run", "--seed", str(outcome.seed)]
    if config.app is not None:
        argv += ["--app", config.app]
    if config.url is not None:
        argv += ["--url", config.url]
    if config.allow_remote:
        argv += ["--allow-remote"]
    for flag, path in (("--profile", config.profile),
                       ("--gunicorn-config", config.gunicorn_config),
                       ("--scenarios-dir", config.scenarios_dir)):
        if path is not None:
            argv += [flag, str(path)]
    if config.workers != 4:
        argv += ["--workers", str(config.workers)]
    # With --app the command line's default worker class is auto.
    default_class = "auto" if config.app is not None else "uvicorn"
    if config.worker_class != default_class:
        argv += ["--worker-class", config.worker_class]
    if config.store != "fakeredis":
        argv += ["--store", config.store]
    if config.clock_driver != "time-machine":
        argv += ["--clock-driver", config.clock_driver]
    for fault in config.faults:
        argv += ["--fault", fault]
    for name in config.scenarios:
        argv += ["--scenario", name]
    # Compared with the command line's defaults, which the replay command relies on. A
    # remote --url needs explicit load caps, so they are always given there.
    remote = config.url is not None and config.allow_remote
    if config.load_seconds != 10.0 or remote:
        argv += ["--load-seconds", f"{config.load_seconds:g}"]
    if config.load_users != 10 or remote:
        argv += ["--load-users", str(config.load_users)]
    if config.scenario_budget_s != 10.0:
        argv += ["--scenario-budget", f"{config.scenario_budget_s:g}"]
    if config.max_seconds != 300.0:
        argv += ["--max-seconds", f"{config.max_seconds:g}"]
    return shlex.join(argv)


def count_ops(history: History | None) -> dict[str, Any]:
    """Count ops, requests, scans and the requests each worker served."""
    if history is None:
        return {"ops": 0, "requests": 0, "scans": 0, "by_worker": {}}
    completions = [op for op in history.ops if op.type is not OpType.INVOKE]
    by_worker = Counter(op.worker for op in completions if op.worker is not None)
    scans = {op.scan_id for op in completions
             if op.f.value == "discover" and op.type is OpType.OK and op.scan_id}
    return {
        "ops": len(history.ops),
        "requests": len(completions),
        "scans": len(scans),
        "by_worker": {str(worker): by_worker[worker] for worker in sorted(by_worker)},
    }


def requests_line(history: History | None, *, noun: str = "requests") -> str | None:
    """Return the console line that counts requests, scans and the requests each worker
    served, or None when no request was sent."""
    counts = count_ops(history)
    if not counts["requests"]:
        return None
    parts = [f"worker {worker}: {count}" for worker, count in counts["by_worker"].items()]
    # Requests without a response, or whose response named no worker, count for no worker.
    unnamed = counts["requests"] - sum(counts["by_worker"].values())
    if unnamed:
        parts.append(f"no worker named: {unnamed}")
    return f"{counts['requests']} {noun}, {counts['scans']} scans ({', '.join(parts)})"


def summary(outcome: RunOutcome) -> dict[str, Any]:
    """Build the ``summary.json`` document of a run."""
    result = outcome.result
    return {
        "verdict": outcome.verdict.value if outcome.verdict else None,
        "exit_code": outcome.exit_code,
        "error": outcome.error,
        "seed": outcome.seed,
        "replay": replay_command(outcome),
        "run_dir": str(outcome.run_dir),
        "config": {
            "workers": outcome.config.workers,
            "worker_class": outcome.config.worker_class,
            "store": outcome.config.store,
            "faults": list(outcome.config.faults),
            "max_seconds": outcome.config.max_seconds,
            "retention_s": outcome.config.retention_s,
            "stale_s": outcome.config.stale_s,
            "clock_driver": outcome.config.clock_driver,
        },
        "target": outcome.target,
        "notes": outcome.notes,
        "workers": [{"index": index, "pid": pid} for index, pid in enumerate(outcome.worker_pids)],
        "scenarios": [
            {
                "name": scenario.name,
                "verdict": scenario.verdict.value,
                "invariants": list(scenario.invariants),
                "ops": scenario.ops,
                "duration_s": round(scenario.duration_s, 3),
                "error": scenario.error,
                "notes": scenario.notes,
                "violations": [violation.to_json() for violation in
                               (scenario.result.violations if scenario.result else [])],
            }
            for scenario in outcome.scenarios
        ],
        "violations": [violation.to_json() for violation in (result.violations if result else [])],
        "invariants": ({name: {"verdict": invariant.verdict.value,
                               "scans_passed": invariant.scans_passed,
                               "scans_failed": invariant.scans_failed,
                               "scans_unknown": invariant.scans_unknown,
                               "error": invariant.error}
                        for name, invariant in result.invariants.items()} if result else {}),
        "counts": count_ops(outcome.history),
        "timings_s": {name: round(value, 3) for name, value in outcome.timings_s.items()},
    }


def junit_xml(outcome: RunOutcome) -> ElementTree.ElementTree:
    """Build a JUnit report: one test case per scenario, failed by its violations."""
    suite = ElementTree.Element("testsuite", name="scan-harness", tests=str(len(outcome.scenarios)))
    failures = skipped = 0
    for scenario in outcome.scenarios:
        case = ElementTree.SubElement(suite, "testcase", classname="scenarios",
                                      name=scenario.name, time=f"{scenario.duration_s:.3f}")
        violations = scenario.result.violations if scenario.result else []
        if scenario.verdict is Verdict.FAIL:
            failures += 1
            failure = ElementTree.SubElement(
                case, "failure", message=f"{len(violations)} violation(s); "
                f"replay: {replay_command(outcome)}")
            failure.text = "\n".join(_violation_line(violation) for violation in violations)
        elif scenario.verdict is Verdict.UNKNOWN:
            skipped += 1
            ElementTree.SubElement(case, "skipped", message=scenario.error
                                   or "no invariant of this scenario had data")
    if outcome.error:
        case = ElementTree.SubElement(suite, "testcase", classname="harness", name="run")
        ElementTree.SubElement(case, "error", message=outcome.error)
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "1" if outcome.error else "0")
    ElementTree.indent(suite)
    return ElementTree.ElementTree(suite)


def write_reports(outcome: RunOutcome) -> None:
    """Write ``summary.json`` and ``junit.xml`` into the run directory."""
    document = summary(outcome)
    (outcome.run_dir / "summary.json").write_text(json.dumps(document, indent=2) + "\n",
                                                  encoding="utf-8")
    junit_xml(outcome).write(outcome.run_dir / "junit.xml", encoding="utf-8",
                             xml_declaration=True)


def print_violation(console: Console, violation: Violation) -> None:
    """Print one violation; its text is never read as rich markup ("[invariant]")."""
    console.print(Text.assemble(("violation ", "red"), _violation_line(violation)))


def _violation_line(violation: Violation) -> str:
    workers = ", ".join(str(worker) for worker in violation.workers) or "-"
    ops = ", ".join(str(index) for index in violation.op_indices)
    return (f"[{violation.invariant}] scan {violation.scan_id} workers {workers} "
            f"ops {ops}: {violation.message}")


def print_summary(outcome: RunOutcome, console: Console, *, max_violations: int = 10) -> None:
    """Print the run's verdict, each scenario's verdict and the first violations."""
    table = Table(title="scenarios", title_justify="left")
    table.add_column("scenario")
    table.add_column("verdict")
    table.add_column("ops", justify="right")
    table.add_column("time", justify="right")
    table.add_column("violations")
    for scenario in outcome.scenarios:
        violations = scenario.result.violations if scenario.result else []
        names = sorted({violation.invariant for violation in violations})
        verdict = scenario.verdict.value
        table.add_row(scenario.name, f"[{VERDICT_STYLES[verdict]}]{verdict}[/]",
                      str(scenario.ops), f"{scenario.duration_s:.1f} s",
                      ", ".join(names) or (scenario.error or ""))
    if outcome.scenarios:
        console.print(table)

    line = requests_line(outcome.history)
    if line is not None:
        console.print(line)

    violations = outcome.result.violations if outcome.result else []
    for violation in violations[:max_violations]:
        print_violation(console, violation)
    if len(violations) > max_violations:
        console.print(f"... and {len(violations) - max_violations} more in "
                      f"{outcome.run_dir / 'summary.json'}")

    for note in outcome.notes:
        console.print(Text.assemble(("note: ", "bold yellow"), note))
    for scenario in outcome.scenarios:
        for note in scenario.notes:
            if note.startswith("skipped:"):
                console.print(Text(f"note: scenario {scenario.name} {note}"))
    if outcome.error:
        console.print(Text.assemble(("error: ", "bold red"), outcome.error))
    verdict = outcome.verdict.value if outcome.verdict else "error"
    style = VERDICT_STYLES.get(verdict, "bold red")
    console.print(f"verdict: [{style}]{verdict}[/] (exit {outcome.exit_code}); "
                  f"seed {outcome.seed}; run directory {outcome.run_dir}", highlight=False)
    if outcome.exit_code != 0:
        console.print(Text(f"replay: {replay_command(outcome)}"))
