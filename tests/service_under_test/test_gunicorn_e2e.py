"""The service under real gunicorn workers and a real redis-server, started by the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service_under_test.auth import mint_token
from tests.service_under_test.helpers import API

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process this test started: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    log = (tmp_path / "redis.log").open("wb")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert process.poll() is None, f"redis-server exited; see {tmp_path}/redis.log"
                time.sleep(0.02)
        else:
            pytest.fail(f"redis-server did not listen on port {port} within 10 s")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process)
        log.close()


@pytest.fixture
def service_url(redis_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "SCAN_SERVICE_TOKEN_SECRET": SECRET,
            "SCAN_SERVICE_REDIS_URL": redis_url,
            "SCAN_SERVICE_KEY_PREFIX": "e2e:",
            "SCAN_SERVICE_STRATEGY_DURATION_S": "0.02",
        }
    )
    log = (tmp_path / "gunicorn.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        "uvicorn_worker.UvicornWorker",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "--no-control-socket",
        "service_under_test.app:create_app()",
    ]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert process.poll() is None, f"gunicorn exited; see {tmp_path}/gunicorn.log"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail(
                f"gunicorn did not respond to /healthz within 20 s; see {tmp_path}/gunicorn.log"
            )
        yield url
    finally:
        stop(process)
        log.close()


def test_scan_under_gunicorn(service_url: str) -> None:
    headers = {"Authorization": f"Bearer {mint_token(SECRET, 'alice')}"}
    with httpx.Client(base_url=service_url, headers=headers, timeout=5) as client:
        started = client.post(f"{API}/discover", json={}).json()
        scan_id = started["scan_id"]

        answers = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            response = client.get(f"{API}/status/{scan_id}")
            assert response.status_code == 200
            assert response.headers["X-Worker-Id"].isdigit()
            answers.append(response.json())
            if answers[-1]["status"] == "complete":
                break
            time.sleep(0.02)
        results = client.get(f"{API}/results/{scan_id}")

    assert answers[-1]["status"] == "complete"
    assert answers[-1]["progress"]["strategies_completed"] == 14
    assert results.status_code == 200
    assert len(results.json()["results"]) == 14
