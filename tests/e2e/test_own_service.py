"""A user's own service (tests/apps/jobs_app.py) through its profile: --app, --url, bad input."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.processes import ChildProcess, free_port, wait_until
from harness.store import EmbeddedStore
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "harness.cli"]
PROFILE = REPO_ROOT / "tests" / "apps" / "jobs_profile.toml"
APP = "tests.apps.jobs_app:app"
# The scenarios that need no nemesis: the fixed app has no store retries or heartbeat,
# which the nemesis scenarios rightly flag.
SCENARIOS = ["poll-every-worker", "results-twice", "poll-at-once-elsewhere",
             "cross-user-read", "expiry-after-an-hour"]
URL_SCENARIOS = ["poll-every-worker", "results-twice", "expiry-after-an-hour"]


def run_cli(*args: str, store: str, timeout_s: float = 180,
            unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "JOBS_APP_STORE": store,
           "PYTHONPATH": str(REPO_ROOT)}
    for name in unset:
        env.pop(name, None)
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout_s,
                          env=env, cwd=REPO_ROOT)


def scenario_args(names: list[str]) -> list[str]:
    return [arg for name in names for arg in ("--scenario", name)]


@pytest.mark.parametrize(("store", "exit_code"), [("memory", 1), ("redis", 0)])
def test_app_mode_catches_memory_bug(tmp_path: Path, store: str, exit_code: int) -> None:
    out = tmp_path / "run"
    completed = run_cli("run", "--app", APP, "--profile", str(PROFILE), "--workers", "2",
                        "--load-seconds", "0", "--out", str(out), *scenario_args(SCENARIOS),
                        store=store)

    assert completed.returncode == exit_code, completed.stdout + completed.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"]["target"] == "app"
    assert summary["target"]["worker_class"] == "uvicorn"  # picked for the ASGI app
    invariants = {violation["invariant"] for violation in summary["violations"]}
    if store == "memory":
        assert "known-scan-found" in invariants
    else:
        assert invariants == set()


@pytest.mark.parametrize(("store", "verdict"), [("memory", "fail"), ("redis", "pass")])
def test_load_phase_speaks_the_profile(tmp_path: Path, store: str, verdict: str) -> None:
    out = tmp_path / "run"
    completed = run_cli("run", "--app", APP, "--profile", str(PROFILE), "--workers", "2",
                        "--scenario", "poll-every-worker", "--load-seconds", "3",
                        "--load-users", "4", "--out", str(out), store=store)

    assert completed.returncode == {"fail": 1, "pass": 0}[verdict], completed.stderr
    summary = json.loads((out / "summary.json").read_text())
    load = {scenario["name"]: scenario for scenario in summary["scenarios"]}["load"]
    assert load["verdict"] == verdict
    assert load["ops"] > 0
    invariants = {violation["invariant"] for violation in load["violations"]}
    assert ("known-scan-found" in invariants) == (store == "memory")
    # Locust names its rows by the profile's paths.
    stats = (out / "locust_stats.csv").read_text()
    assert "POST,/jobs," in stats
    assert "GET,/jobs/{job_id}," in stats
    assert "--app tests.apps.jobs_app:app --profile" in summary["replay"]


@pytest.mark.parametrize(("store", "exit_code"), [("memory", 1), ("redis", 0)])
def test_load_command_speaks_the_profile(tmp_path: Path, store: str, exit_code: int) -> None:
    out = tmp_path / "load"
    completed = run_cli("load", "--app", APP, "--profile", str(PROFILE), "--workers", "2",
                        "--users", "4", "--spawn-rate", "4", "--run-time", "3s", "--out",
                        str(out), store=store)

    assert completed.returncode == exit_code, completed.stdout + completed.stderr
    summary = json.loads((out / "summary.json").read_text())
    invariants = {violation["invariant"] for violation in summary["violations"]}
    assert ("known-scan-found" in invariants) == (store == "memory")
    assert summary["counts"]["requests"] > 0
    assert "GET,/jobs/{job_id}/output," in (out / "locust_stats.csv").read_text()


@pytest.mark.parametrize(("store", "exit_code"), [("memory", 1), ("redis", 0)])
def test_url_mode_catches_memory_bug(tmp_path: Path, store: str, exit_code: int) -> None:
    out = tmp_path / "run"
    # The app runs under plain gunicorn, as a user deploys it: no harness hooks, so its
    # responses name no worker and the run can only observe.
    with plain_gunicorn(tmp_path, store) as port:
        completed = run_cli("run", "--url", f"http://127.0.0.1:{port}", "--profile",
                            str(PROFILE), "--workers", "2", "--load-seconds", "0", "--out",
                            str(out), *scenario_args(URL_SCENARIOS), store=store)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"]["routing"] == "observed"
    assert any("routing was not possible" in note for note in summary["notes"])
    assert "routing was not possible" in completed.stdout
    skipped = {scenario["name"]: scenario for scenario in summary["scenarios"]}
    assert skipped["expiry-after-an-hour"]["verdict"] == "unknown"
    assert "needs virtual time" in " ".join(skipped["expiry-after-an-hour"]["notes"])
    if store == "memory":
        # Unrouted, the bug shows only when polls land on the other worker, which two
        # keep-alive connections to two workers make likely but not certain.
        assert completed.returncode in (1, 0), completed.stdout + completed.stderr
    else:
        assert skipped["poll-every-worker"]["verdict"] == "pass"
        assert completed.returncode in (0, 4), completed.stdout + completed.stderr


@pytest.mark.parametrize(("store", "exit_code"), [("memory", 1), ("redis", 0)])
def test_url_mode_routes_named_workers(tmp_path: Path, store: str, exit_code: int) -> None:
    out = tmp_path / "run"
    # Plain gunicorn again, but the app names its worker in every response, so the
    # harness can pin a connection to each worker and the bug shows on the first try.
    with plain_gunicorn(tmp_path, store, name_worker=True) as port:
        completed = run_cli("run", "--url", f"http://127.0.0.1:{port}", "--profile",
                            str(PROFILE), "--workers", "2", "--load-seconds", "2",
                            "--load-users", "3", "--out", str(out),
                            "--scenario", "poll-every-worker", "--scenario", "results-twice",
                            store=store)

    summary = json.loads((out / "summary.json").read_text())
    invariants = {violation["invariant"] for violation in summary["violations"]}
    assert summary["target"]["routing"] == "pinned"
    assert completed.returncode == exit_code, completed.stdout + completed.stderr
    if store == "memory":
        assert "known-scan-found" in invariants
    else:
        assert invariants == set()
    # The load phase reaches the running service too, through the same profile.
    load = {scenario["name"]: scenario for scenario in summary["scenarios"]}["load"]
    assert load["ops"] > 0
    assert load["error"] is None


@contextlib.contextmanager
def plain_gunicorn(tmp_path: Path, store: str, *, name_worker: bool = False) -> Iterator[int]:
    """Serve the example app on 2 workers under plain gunicorn, with an embedded store at
    ``REDIS_URL``, and yield its port once it responds."""
    redis_store = EmbeddedStore(key_prefix="")
    redis_store.start(tmp_path)
    port = free_port()
    env = {**os.environ, "JOBS_APP_STORE": store, "REDIS_URL": redis_store.url,
           "PYTHONPATH": str(REPO_ROOT)}
    if name_worker:
        env["JOBS_APP_NAME_WORKER"] = "1"
    server = ChildProcess("gunicorn", [sys.executable, "-m", "gunicorn", APP,
                                       "--worker-class", "uvicorn_worker.UvicornWorker",
                                       "--workers", "2", "--bind", f"127.0.0.1:{port}",
                                       "--no-control-socket", "--keep-alive", "600"],
                          log_path=tmp_path / "gunicorn.log", env=env, cwd=REPO_ROOT)
    try:
        assert wait_until(lambda: _answers(port), timeout_s=30)
        yield port
    finally:
        server.stop()
        redis_store.stop()


def _answers(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/jobs/x", timeout=0.5).status_code == 401
    except httpx.HTTPError:
        return False


def test_malformed_profile_names_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(PROFILE.read_text().replace('path = "/jobs/{job_id}"\n',
                                               'path = "/jobs/{id}"\n', 1))

    completed = run_cli("run", "--app", APP, "--profile", str(bad), store="memory")

    assert completed.returncode == 3
    assert "status.path has the unknown placeholder {id}" in completed.stderr
    assert "use {job_id}" in completed.stderr


def test_remote_url_rejected() -> None:
    completed = run_cli("run", "--url", "http://example.invalid:8000", store="memory")

    assert completed.returncode == 3
    assert "is not on loopback" in completed.stderr
    assert "explicit caps on the load: --load-users and --load-seconds" in completed.stderr


def test_app_without_profile_exits_3() -> None:
    completed = run_cli("run", "--app", APP, store="memory")

    assert completed.returncode == 3
    assert f"--app {APP} needs --profile" in completed.stderr


def test_reference_url_needs_secret() -> None:
    completed = run_cli("run", "--url", "http://127.0.0.1:9", store="memory",
                        unset=("SCAN_SERVICE_TOKEN_SECRET",))

    assert completed.returncode == 3
    assert "set SCAN_SERVICE_TOKEN_SECRET" in completed.stderr


def test_url_where_nothing_listens_exits_3(tmp_path: Path) -> None:
    closed_port = free_port()

    completed = run_cli("run", "--url", f"http://127.0.0.1:{closed_port}", "--profile",
                        str(PROFILE), "--load-seconds", "0", "--out", str(tmp_path / "run"),
                        store="memory")

    assert completed.returncode == 3, completed.stdout + completed.stderr
    assert f"cannot reach --url http://127.0.0.1:{closed_port}" in completed.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["exit_code"] == 3


def test_unimportable_app_names_error() -> None:
    completed = run_cli("run", "--app", "tests.apps.no_such_app:app", "--profile",
                        str(PROFILE), store="memory")

    assert completed.returncode == 3
    output = completed.stdout + completed.stderr
    assert "ModuleNotFoundError: No module named 'tests.apps.no_such_app'" in output
    assert "write it as module:attribute" in output
    assert 'File "' not in output  # the cause, not the traceback


def test_app_without_attribute_exits_3() -> None:
    completed = run_cli("run", "--app", "tests.apps.jobs_app", "--profile", str(PROFILE),
                        store="memory")

    assert completed.returncode == 3
    assert "is not of the form module:attribute" in completed.stderr


def test_app_attribute_missing_is_named() -> None:
    completed = run_cli("run", "--app", "tests.apps.jobs_app:no_such_app", "--profile",
                        str(PROFILE), store="memory")

    assert completed.returncode == 3
    output = completed.stdout + completed.stderr
    assert "module tests.apps.jobs_app has no attribute 'no_such_app'" in output
