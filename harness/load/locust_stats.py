"""Locust's statistics of a load run, and the performance thresholds judged on them.

Locust writes one row per request name (``/discover``, ``/status/[id]``,
``/results/[id]``) and an ``Aggregated`` row to ``<prefix>_stats.csv``. Response times
are in milliseconds, and ``Requests/s`` is the count divided by the run's duration.

A *threshold* bounds one figure of the aggregated row: ``max-p95-ms`` the 95th
percentile response time, ``max-fail-ratio`` the share of requests that Locust counted
as failed (a 5xx or no response), ``min-rps`` the requests per second. A missed threshold
makes the run exit 2, unless an invariant violation (exit 1) or a harness error (exit 3)
outranks it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class StatsError(ValueError):
    """Locust's statistics file is missing or unreadable."""


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """One row of Locust's statistics: a request name, or the aggregate of all of them."""

    method: str
    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float | None
    """None when the row has no requests (Locust writes N/A)."""

    p95_ms: float | None
    p99_ms: float | None

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "name": self.name, "requests": self.requests,
                "failures": self.failures, "rps": round(self.rps, 2), "p50_ms": self.p50_ms,
                "p95_ms": self.p95_ms, "p99_ms": self.p99_ms}


@dataclass(frozen=True, slots=True)
class LoadStats:
    """Every request name's row, and the aggregated row."""

    endpoints: list[EndpointStats]
    total: EndpointStats

    def to_json(self) -> dict[str, Any]:
        return {"endpoints": [row.to_json() for row in self.endpoints],
                "total": self.total.to_json()}


def read_stats(path: Path) -> LoadStats:
    """Read Locust's ``_stats.csv``, raising StatsError that names the file."""
    try:
        with path.open(encoding="utf-8", newline="") as file:
            rows = list(csv.DictReader(file))
    except OSError as error:
        raise StatsError(f"cannot read Locust's statistics {path}: {error.strerror}; "
                         "see locust.log in the run directory") from error

    endpoints: list[EndpointStats] = []
    total: EndpointStats | None = None
    for number, row in enumerate(rows, start=2):
        try:
            entry = _parse_row(row)
        except (KeyError, ValueError) as error:
            raise StatsError(f"{path}:{number}: not a row of Locust's statistics "
                             f"({error})") from error
        if entry.name == "Aggregated" and not entry.method:
            total = entry
        else:
            endpoints.append(entry)
    if total is None:
        raise StatsError(f"{path} has no Aggregated row: Locust stopped before it wrote "
                         "its statistics; see locust.log in the run directory")
    return LoadStats(endpoints, total)


def count_exceptions(path: Path) -> int:
    """Return how many exceptions Locust's ``_exceptions.csv`` counts, 0 if it is absent."""
    try:
        with path.open(encoding="utf-8", newline="") as file:
            return sum(int(row["Count"]) for row in csv.DictReader(file))
    except (OSError, KeyError, ValueError):
        return 0


def _parse_row(row: dict[str, str]) -> EndpointStats:
    return EndpointStats(
        method=row["Type"], name=row["Name"], requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]), rps=float(row["Requests/s"]),
        p50_ms=_milliseconds(row["50%"]), p95_ms=_milliseconds(row["95%"]),
        p99_ms=_milliseconds(row["99%"]),
    )


def _milliseconds(text: str) -> float | None:
    return None if text in ("", "N/A") else float(text)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Bounds on the aggregated figures; None leaves a figure unbounded."""

    max_p95_ms: float | None = None
    max_fail_ratio: float | None = None
    min_rps: float | None = None


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    """One threshold judged: its option name, its limit, the measured figure."""

    name: str
    limit: float
    measured: float | None
    """None when the run had no request to measure, which misses the threshold."""

    passed: bool

    @property
    def message(self) -> str:
        relation = {"max-p95-ms": "<=", "max-fail-ratio": "<=", "min-rps": ">="}[self.name]
        measured = "no data" if self.measured is None else format_number(self.measured)
        verdict = "met" if self.passed else "missed"
        return (f"--{self.name}: measured {measured}, required {relation} "
                f"{format_number(self.limit)}: {verdict}")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "limit": self.limit, "measured": self.measured,
                "passed": self.passed}


def format_number(value: float) -> str:
    """Format a figure or limit the way a user types it: ``1000000``, ``0.05``, ``12.5``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def judge_thresholds(stats: LoadStats | None, thresholds: Thresholds) -> list[ThresholdResult]:
    """Judge each threshold that is set against the aggregated row of ``stats``."""
    total = stats.total if stats is not None else None
    results = []
    if thresholds.max_p95_ms is not None:
        p95 = total.p95_ms if total is not None else None
        results.append(ThresholdResult("max-p95-ms", thresholds.max_p95_ms, p95,
                                       p95 is not None and p95 <= thresholds.max_p95_ms))
    if thresholds.max_fail_ratio is not None:
        ratio = round(total.fail_ratio, 4) if total is not None and total.requests else None
        results.append(ThresholdResult("max-fail-ratio", thresholds.max_fail_ratio, ratio,
                                       ratio is not None and ratio <= thresholds.max_fail_ratio))
    if thresholds.min_rps is not None:
        rps = round(total.rps, 2) if total is not None else None
        results.append(ThresholdResult("min-rps", thresholds.min_rps, rps,
                                       rps is not None and rps >= thresholds.min_rps))
    return results
