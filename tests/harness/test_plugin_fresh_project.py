"""The pytest plugin in a project of its own, which installs scan-harness like a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TEST_FILE = """
import pytest
from harness.pytest_plugin import assert_no_violations


@pytest.mark.scan_harness(scenarios=["poll-every-worker", "results-twice"])
def test_jobs_survive_two_workers(scan_harness):
    assert_no_violations(scan_harness.run())
"""

INI = """
[pytest]
scan_harness_app = jobs_app:app
scan_harness_profile = jobs_profile.toml
scan_harness_workers = 2
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a project folder with its own venv, the example app and one plugin test."""
    root = tmp_path_factory.mktemp("user-project")
    shutil.copy(REPO_ROOT / "tests" / "apps" / "jobs_app.py", root / "jobs_app.py")
    shutil.copy(REPO_ROOT / "tests" / "apps" / "jobs_profile.toml", root / "jobs_profile.toml")
    (root / "pytest.ini").write_text(INI, encoding="utf-8")
    (root / "test_jobs.py").write_text(TEST_FILE, encoding="utf-8")

    subprocess.run([sys.executable, "-m", "venv", str(root / ".venv")], check=True,
                   timeout=120)
    subprocess.run([str(root / ".venv" / "bin" / "pip"), "install", "-q", str(REPO_ROOT)],
                   check=True, timeout=900, capture_output=True)
    return root


@pytest.mark.parametrize(("store", "outcome"), [("memory", "1 failed"), ("redis", "1 passed")])
def test_plugin_in_fresh_project(project: Path, store: str, outcome: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["JOBS_APP_STORE"] = store

    result = subprocess.run([str(project / ".venv" / "bin" / "pytest"), "-p",
                             "no:cacheprovider", f"--junitxml={project / store}.xml"],
                            cwd=project, env=env, capture_output=True, text=True, timeout=300)

    assert outcome in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]
    assert (project / f"{store}.xml").exists()
    if store == "memory":
        assert "[known-scan-found]" in result.stdout
