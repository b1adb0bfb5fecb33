"""The pytest plugin, run inside a pytester project against tests/apps/jobs_app.py."""

from __future__ import annotations

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

TEST_FILE = """
import pytest
from harness.pytest_plugin import assert_no_violations

@pytest.mark.scan_harness(scenarios=["poll-every-worker", "results-twice"])
def test_jobs_survive_two_workers(scan_harness):
    outcome = scan_harness.run()
    assert_no_violations(outcome)
"""


@pytest.mark.parametrize(("store", "passed"), [("memory", False), ("redis", True)])
def test_plugin_catches_memory_bug(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                   store: str, passed: bool) -> None:
    monkeypatch.setenv("JOBS_APP_STORE", store)
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    pytester.makeini(f"""
        [pytest]
        scan_harness_app = tests.apps.jobs_app:app
        scan_harness_profile = {REPO_ROOT / "tests" / "apps" / "jobs_profile.toml"}
        scan_harness_workers = 2
    """)
    pytester.makepyfile(test_jobs=TEST_FILE)
    monkeypatch.chdir(REPO_ROOT)

    result = pytester.runpytest_subprocess(str(pytester.path), "-p", "no:cacheprovider",
                                           f"--junitxml={pytester.path / 'junit.xml'}")

    if passed:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*violations (seed*", "*[[]known-scan-found[]]*"])
    assert (pytester.path / "junit.xml").exists()
