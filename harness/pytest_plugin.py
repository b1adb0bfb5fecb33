"""The pytest plugin: run the harness on your own app from your own test suite.

The ``scan_harness`` fixture returns a ``HarnessRunner``: ``scan_harness.run()`` starts a
store and a cluster of your app (configured by the ini options ``scan_harness_app``,
``scan_harness_profile`` and ``scan_harness_workers``, or by the marker
``@pytest.mark.scan_harness(app=..., profile=..., workers=..., scenarios=[...])``), runs
the scenarios, stops every process, and returns the run's outcome.
``assert_no_violations(outcome)`` fails the test with the checker's violations::

    def test_jobs_survive_many_workers(scan_harness):
        outcome = scan_harness.run(scenarios=["poll-every-worker"])
        assert_no_violations(outcome)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.runner import RunConfig, RunOutcome, execute


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("scan_harness_app", "module:app of the service to test", default="")
    parser.addini("scan_harness_profile", "path of the service's TOML API profile", default="")
    parser.addini("scan_harness_workers", "number of gunicorn workers", default="2")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scan_harness(app, profile, workers, scenarios): "
                            "configure the scan_harness fixture for one test")


@dataclass
class HarnessRunner:
    """Runs the harness on the configured app; each ``run()`` uses a fresh cluster."""

    app: str | None
    profile: Path | None
    workers: int
    out_root: Path
    scenarios: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    runs: int = 0

    def run(self, *, scenarios: list[str] | tuple[str, ...] | None = None,
            **config: Any) -> RunOutcome:
        """Run the scenarios (default: the marker's, else every one) and return the outcome."""
        self.runs += 1
        settings: dict[str, Any] = {
            "app": self.app, "profile": self.profile, "workers": self.workers,
            "worker_class": "auto" if self.app else "uvicorn",
            "scenarios": tuple(scenarios) if scenarios is not None else self.scenarios,
            "out": self.out_root / f"run-{self.runs}", "load_seconds": 0.0,
            "max_seconds": 120.0, **self.overrides, **config,
        }
        return execute(RunConfig(**settings))


@pytest.fixture
def scan_harness(request: pytest.FixtureRequest, tmp_path: Path) -> HarnessRunner:
    """Return a runner for the app that the marker or the ini options name."""
    marker = request.node.get_closest_marker("scan_harness")
    options = dict(marker.kwargs) if marker is not None else {}
    ini = request.config.getini
    app = options.pop("app", None) or ini("scan_harness_app") or None
    profile = options.pop("profile", None) or ini("scan_harness_profile") or None
    workers = int(options.pop("workers", None) or ini("scan_harness_workers"))
    scenarios = tuple(options.pop("scenarios", ()))
    root = Path(str(request.config.rootpath))
    profile_path = None if profile is None else root / profile
    return HarnessRunner(app, profile_path, workers, tmp_path, scenarios, options)


def assert_no_violations(outcome: RunOutcome, *, max_shown: int = 10) -> None:
    """Fail the test with the run's violations (or its error) when it did not pass."""
    __tracebackhide__ = True
    if outcome.error:
        pytest.fail(f"scan-harness could not judge the run: {outcome.error} "
                    f"(run directory {outcome.run_dir})", pytrace=False)
    violations = outcome.result.violations if outcome.result is not None else []
    if not violations:
        return
    lines = [f"{len(violations)} violations (seed {outcome.seed}, run directory "
             f"{outcome.run_dir}):"]
    for violation in violations[:max_shown]:
        lines.append(f"[{violation.invariant}] scan {violation.scan_id} workers "
                     f"{list(violation.workers)}: {violation.message}")
    if len(violations) > max_shown:
        lines.append(f"... and {len(violations) - max_shown} more in summary.json")
    pytest.fail("\n".join(lines), pytrace=False)
