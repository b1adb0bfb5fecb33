"""The detection matrix: every fault caught every time, the correct service never flagged.

A reliability harness is worth what it catches and what it does not cry wolf about. The
matrix runs every default scenario against the correct reference service and against
each fault of the registry, over K seeds, one cluster boot per run (fault and seed), and
two runs at a time so both cores work. Each run is a ``scan-harness run`` child process
with its own run directory, so runs share nothing but the machine.

For each fault it reports the scenarios that caught it, the detection rate (seeds in
which the run failed), and the time and number of ops from the run's first op to the
first violation. For the correct service it counts false positives (seeds in which
the run did not pass).

With the baseline on, each fault is also run under ``naive-random-load``: random
requests on fresh connections, no worker routing and no virtual time, for as long as
the harness's own scenarios took on that fault. Its detection rate, beside the
harness's, shows what routing and virtual time add.

Example::

    result = run_matrix(MatrixConfig(seeds=3, out=Path("matrix")))
    print(result.exit_code)   # 0 when every fault was caught in 3 of 3 seeds
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import logging
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service_under_test.faults import KNOWN

log = logging.getLogger(__name__)

CORRECT = "correct"
BASELINE_SCENARIO = "naive-random-load"
RUN_TIMEOUT_S = 600.0

# The run processes in progress, so that an interrupted matrix can stop them.
_RUNNING: set[subprocess.Popen[str]] = set()
_RUNNING_LOCK = threading.Lock()


@dataclass(frozen=True)
class MatrixConfig:
    """What the matrix runs: how many seeds, on which store, where to write, how wide."""

    seeds: int = 5
    first_seed: int = 1
    store: str = "fakeredis"
    out: Path | None = None
    jobs: int = 2
    baseline: bool = True
    faults: tuple[str, ...] = ()  # empty: every fault of the registry


@dataclass
class Cell:
    """One run: a variant (a fault, or the correct service) with one seed."""

    variant: str
    seed: int
    baseline: bool
    exit_code: int
    verdict: str | None
    wall_s: float
    scenario_s: float = 0.0
    caught_by: list[str] = field(default_factory=list)
    invariants: list[str] = field(default_factory=list)
    time_to_detect_s: float | None = None
    ops_to_detect: int | None = None
    error: str | None = None
    run_dir: str = ""

    @property
    def detected(self) -> bool:
        return self.exit_code == 1


@dataclass
class Row:
    """The matrix's line for one variant, over every seed."""

    variant: str
    cells: list[Cell]
    baseline_cells: list[Cell] = field(default_factory=list)

    @property
    def detections(self) -> int:
        return sum(cell.detected for cell in self.cells)

    @property
    def false_positives(self) -> int:
        return sum(cell.exit_code != 0 for cell in self.cells)

    @property
    def caught_by(self) -> list[str]:
        return sorted({name for cell in self.cells for name in cell.caught_by})

    @property
    def detect_times_s(self) -> list[float]:
        return [cell.time_to_detect_s for cell in self.cells if cell.time_to_detect_s is not None]

    @property
    def detect_ops(self) -> list[int]:
        return [cell.ops_to_detect for cell in self.cells if cell.ops_to_detect is not None]

    def to_json(self) -> dict[str, Any]:
        times = self.detect_times_s
        ops = self.detect_ops
        return {
            "variant": self.variant,
            "seeds": len(self.cells),
            "detections": self.detections,
            "caught_by": self.caught_by,
            "median_time_to_detect_s": statistics.median(times) if times else None,
            "worst_time_to_detect_s": max(times) if times else None,
            "median_ops_to_detect": statistics.median(ops) if ops else None,
            "baseline_detections": sum(cell.detected for cell in self.baseline_cells),
            "baseline_seeds": len(self.baseline_cells),
            "cells": [vars(cell) for cell in self.cells + self.baseline_cells],
        }


@dataclass
class MatrixResult:
    """Every row, where the files are, the wall time and the exit code."""

    config: MatrixConfig
    out: Path
    correct: Row
    faults: list[Row]
    wall_s: float

    @property
    def exit_code(self) -> int:
        """Return 1 when a fault escaped a seed or the correct service failed anywhere."""
        missed = any(row.detections < self.config.seeds for row in self.faults)
        return 1 if missed or self.correct.false_positives else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "seeds": self.config.seeds,
            "first_seed": self.config.first_seed,
            "store": self.config.store,
            "wall_s": round(self.wall_s, 1),
            "exit_code": self.exit_code,
            "correct": self.correct.to_json(),
            "faults": [row.to_json() for row in self.faults],
        }


def _run_cell(variant: str, seed: int, config: MatrixConfig, out: Path, *,
              baseline: bool = False, budget_s: float = 0.0) -> Cell:
    run_dir = out / ("baseline" if baseline else "runs") / f"{variant}-seed{seed}"
    argv = [sys.executable, "-m", "harness.cli", "run", "--seed", str(seed),
            "--store", config.store, "--load-seconds", "0", "--out", str(run_dir)]
    if variant != CORRECT:
        argv += ["--fault", variant]
    if baseline:
        argv += ["--scenario", BASELINE_SCENARIO, "--scenario-budget", f"{budget_s:.1f}"]

    started = datetime.datetime.now()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    with _RUNNING_LOCK:
        _RUNNING.add(process)
    try:
        _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
        exit_code = process.returncode
        error = None if exit_code in (0, 1) else stderr.strip()[-500:]
    except subprocess.TimeoutExpired:
        # The run stops its own cluster on SIGTERM.
        process.terminate()
        process.communicate()
        exit_code, error = 3, f"the run took longer than {RUN_TIMEOUT_S:.0f} s"
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(process)
    wall_s = (datetime.datetime.now() - started).total_seconds()

    cell = Cell(variant, seed, baseline, exit_code, None, wall_s, error=error,
                run_dir=str(run_dir))
    _read_run(cell, run_dir)
    return cell


def _read_run(cell: Cell, run_dir: Path) -> None:
    """Fill a cell from its run directory: verdict, catching scenarios, time to detect."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        cell.error = cell.error or f"no summary.json in {run_dir}: {error}"
        return
    cell.verdict = summary.get("verdict")
    cell.scenario_s = sum(scenario.get("duration_s", 0.0)
                          for scenario in summary.get("scenarios", []))
    cell.caught_by = [scenario["name"] for scenario in summary.get("scenarios", [])
                      if scenario.get("verdict") == "fail"]
    violations = summary.get("violations", [])
    cell.invariants = sorted({violation["invariant"] for violation in violations})
    if violations:
        # A violation becomes visible when the later of its first two ops completes: the
        # offending read and the op it is judged against. Ops named after those only
        # sharpen the bounds and may come later in the history.
        detected_s = min(max(violation["real_s"][:2]) for violation in violations
                         if violation.get("real_s"))
        first_op_s, ops = _ops_until(run_dir / "history.jsonl", detected_s)
        cell.time_to_detect_s = round(detected_s - first_op_s, 3)
        cell.ops_to_detect = ops


def _ops_until(history_path: Path, until_s: float) -> tuple[float, int | None]:
    """Return the real time of the history's first op and the ops up to ``until_s``.

    Times count from the first op rather than from the history's start, so that the
    cluster's boot, which a loaded machine stretches, is not counted as time to detect.
    """
    until_ns = until_s * 1e9
    first_ns: int | None = None
    count = 0
    try:
        with history_path.open(encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                if record.get("kind") != "op":
                    continue
                if first_ns is None:
                    first_ns = record.get("real_ns", 0)
                if record.get("real_ns", 0) <= until_ns:
                    count += 1
    except (OSError, ValueError):
        return 0.0, None
    return (first_ns or 0) / 1e9, count


def run_matrix(config: MatrixConfig, *,
               progress: Callable[[str], None] | None = None) -> MatrixResult:
    """Run the whole matrix and write ``matrix.json`` and ``matrix.md`` into its folder."""
    say = progress or (lambda message: None)
    unknown = [name for name in config.faults if name not in KNOWN]
    if unknown:
        raise ValueError(f"unknown fault {unknown[0]!r}; known faults are: {', '.join(KNOWN)}")
    faults = list(config.faults) or list(KNOWN)
    out = config.out or Path(".harness-runs") / (
        "matrix-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    seeds = range(config.first_seed, config.first_seed + config.seeds)
    started = datetime.datetime.now()

    jobs = [(variant, seed) for variant in [CORRECT, *faults] for seed in seeds]
    cells = _run_all(jobs, config, out, say)
    rows = {variant: Row(variant, [cell for cell in cells if cell.variant == variant])
            for variant in [CORRECT, *faults]}

    if config.baseline:
        budgets = {variant: statistics.median(cell.scenario_s for cell in rows[variant].cells)
                   for variant in faults}
        baseline_jobs = [(variant, seed) for variant in faults for seed in seeds]
        for cell in _run_all(baseline_jobs, config, out, say, baseline=True, budgets=budgets):
            rows[cell.variant].baseline_cells.append(cell)

    wall_s = (datetime.datetime.now() - started).total_seconds()
    result = MatrixResult(config, out, rows[CORRECT], [rows[variant] for variant in faults],
                          wall_s)
    (out / "matrix.json").write_text(json.dumps(result.to_json(), indent=2) + "\n",
                                     encoding="utf-8")
    (out / "matrix.md").write_text(markdown(result), encoding="utf-8")
    return result


def _stop_running() -> None:
    """Send SIGTERM to every run in progress; each stops its own cluster and store."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for process in running:
        if process.poll() is None:
            process.terminate()


def _run_all(jobs: list[tuple[str, int]], config: MatrixConfig, out: Path,
             say: Callable[[str], None], *, baseline: bool = False,
             budgets: dict[str, float] | None = None) -> list[Cell]:
    cells: list[Cell] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(config.jobs, 1))
    try:
        futures = [pool.submit(_run_cell, variant, seed, config, out, baseline=baseline,
                               budget_s=(budgets or {}).get(variant, 0.0))
                   for variant, seed in jobs]
        for future in concurrent.futures.as_completed(futures):
            cell = future.result()
            cells.append(cell)
            kind = "baseline " if baseline else ""
            say(f"{kind}{cell.variant} seed {cell.seed}: exit {cell.exit_code} "
                f"in {cell.wall_s:.1f} s" + (f" ({', '.join(cell.invariants)})"
                                              if cell.invariants else ""))
    except BaseException:
        # Ctrl-C or SIGTERM: drop the runs not started yet and stop the ones in progress.
        pool.shutdown(wait=False, cancel_futures=True)
        _stop_running()
        raise
    pool.shutdown(wait=True)
    return sorted(cells, key=lambda cell: (cell.variant, cell.seed))


def _seconds(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} s / {max(values):.2f} s"


def markdown(result: MatrixResult) -> str:
    """Render the matrix as a Markdown page."""
    seeds = result.config.seeds
    lines = [
        "# Detection matrix",
        "",
        f"{seeds} seed(s) from {result.config.first_seed}, store {result.config.store}, "
        f"wall time {result.wall_s:.0f} s, exit code {result.exit_code}. Time to detect is "
        "real time from the first op of a run to the completion of the op that made the "
        "first violation visible (median / worst), so the cluster's boot is left out; ops "
        "are those recorded until then.",
        "",
        "| fault | caught | scenarios that caught it | time to detect | ops to detect "
        "| naive baseline |",
        "|---|---|---|---|---|---|",
    ]
    for row in result.faults:
        ops = row.detect_ops
        baseline = (f"{sum(cell.detected for cell in row.baseline_cells)}/"
                    f"{len(row.baseline_cells)}" if row.baseline_cells else "-")
        lines.append(
            f"| `{row.variant}` | {row.detections}/{seeds} | {', '.join(row.caught_by) or '-'} "
            f"| {_seconds(row.detect_times_s)} "
            f"| {f'{statistics.median(ops):.0f}' if ops else '-'} | {baseline} |")
    lines += [
        "",
        f"Correct service: {result.correct.false_positives} false positive(s) in {seeds} "
        "seed(s).",
        "",
    ]
    return "\n".join(lines)
