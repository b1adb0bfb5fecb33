"""The cluster: an app served by real gunicorn workers, sharing one store.

A cluster runs ``gunicorn`` as a child process (the arbiter) with N workers on a free
loopback port: ``uvicorn_worker.UvicornWorker`` for ASGI apps such as the reference scan
service, ``gthread`` for WSGI apps. The app reads the store's URL and its other settings
from the environment the cluster passes. Gunicorn's log and the app's go to
``service.log`` in the run directory, the access log to ``access.log``.

The cluster is *running* when N workers have loaded the app (each marks itself booted
from a gunicorn hook) and the port accepts connections. It is *ready* once the routing
client has seen every worker answer (see ``harness.client``), which is the only proof
that requests can reach each worker.

Example::

    cluster = Cluster(ClusterConfig(workers=4, env={"SCAN_SERVICE_REDIS_URL": url}),
                      run_dir)
    cluster.start()
    try:
        ...  # send requests to cluster.base_url
    finally:
        cluster.stop()
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import BinaryIO, Literal

import psutil

from harness.processes import ChildProcess, StartError, check_port_free, free_port, wait_until

log = logging.getLogger(__name__)

WorkerClass = Literal["uvicorn", "gthread"]

WORKER_CLASSES: dict[str, str] = {
    "uvicorn": "uvicorn_worker.UvicornWorker",
    "gthread": "gthread",
}

REFERENCE_APP = "service_under_test.app:create_app()"


class ClusterState(Enum):
    """Lifecycle state of a cluster."""

    CREATED = "created"  # configured, no process started yet
    STARTING = "starting"  # the arbiter runs; not every worker is up yet
    RUNNING = "running"  # N workers run and the port accepts connections
    STOPPED = "stopped"  # the arbiter and every worker have exited
    FAILED = "failed"  # the arbiter exited or never got all its workers up


class ClusterStateError(RuntimeError):
    """An operation that the cluster's current state does not allow."""


@dataclass
class ClusterConfig:
    """How to serve the app: which app, how many workers of which class, where."""

    app: str = REFERENCE_APP
    workers: int = 4
    worker_class: WorkerClass = "uvicorn"
    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port
    env: dict[str, str] = field(default_factory=dict)
    # Longer than any idle gap in a run: an idle keep-alive connection that gunicorn
    # closes comes back on another worker and silently breaks routing.
    keep_alive_s: int = 3600
    worker_timeout_s: int = 30
    graceful_timeout_s: int = 3
    threads: int = 4  # per gthread worker
    boot_timeout_s: float = 30.0
    # The user's own gunicorn config file, chained after the harness's (see
    # harness.gunicorn_config): its settings and hooks apply, and so do the harness's.
    user_config: Path | None = None

    def __post_init__(self) -> None:
        if self.worker_class not in WORKER_CLASSES:
            raise ValueError(f"unknown worker class {self.worker_class!r}: use one of "
                             f"{', '.join(WORKER_CLASSES)}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")


class Cluster:
    """A gunicorn arbiter and its workers, started and stopped as one."""

    def __init__(self, config: ClusterConfig, run_dir: Path) -> None:
        self.config = config
        self.run_dir = run_dir
        self.state = ClusterState.CREATED
        self.port = config.port
        self._arbiter: ChildProcess | None = None
        self._ready_dir = run_dir / "workers-ready"
        self._access_log: BinaryIO | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def arbiter_pid(self) -> int | None:
        return self._arbiter.pid if self._arbiter is not None else None

    def start(self) -> None:
        """Start gunicorn and wait until all its workers run and the port accepts."""
        if self.state is not ClusterState.CREATED:
            raise ClusterStateError(f"cannot start a cluster in state {self.state.value}")
        if self.port:
            check_port_free(self.port, self.config.host)
        else:
            self.port = free_port(self.config.host)

        self._ready_dir.mkdir(parents=True, exist_ok=True)
        for marker in self._ready_dir.iterdir():
            marker.unlink()
        self.state = ClusterState.STARTING
        self._access_log = (self.run_dir / "access.log").open("ab")
        self._arbiter = ChildProcess(
            "gunicorn", self._argv(), log_path=self.run_dir / "service.log",
            env=self._environment(), stdout=self._access_log.fileno(),
        )
        try:
            self._wait_running()
        except BaseException:
            self.state = ClusterState.FAILED
            self._stop_arbiter()
            raise
        self.state = ClusterState.RUNNING
        log.info("cluster running at %s: arbiter pid %d, workers %s",
                 self.base_url, self._arbiter.pid, self.worker_pids())

    def worker_pids(self) -> list[int]:
        """Return the pids of the arbiter's live worker processes, oldest first."""
        if self._arbiter is None or self._arbiter.exit_code() is not None:
            return []
        try:
            children = psutil.Process(self._arbiter.pid).children()
        except psutil.NoSuchProcess:
            return []
        live: list[tuple[float, int]] = []
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    live.append((child.create_time(), child.pid))
            except psutil.NoSuchProcess:
                continue  # it exited after children() listed it, as a recycled worker does
        return [pid for _, pid in sorted(live)]

    def booted_worker_pids(self) -> list[int]:
        """Return the pids of live workers whose app has loaded, oldest first."""
        booted = {int(marker.name) for marker in self._ready_dir.iterdir()
                  if marker.name.isdigit()}
        return [pid for pid in self.worker_pids() if pid in booted]

    def check_alive(self) -> None:
        """Raise StartError with the log's last lines if the arbiter has exited."""
        message = self._arbiter_died()
        if message:
            raise StartError(message)

    def log_tail(self, lines: int = 20) -> str:
        return self._arbiter.log_tail(lines) if self._arbiter is not None else ""

    def stop(self) -> None:
        """Stop the arbiter and every worker; safe to call in any state, and twice."""
        if self.state in (ClusterState.CREATED, ClusterState.STOPPED):
            self.state = ClusterState.STOPPED
            return
        self._stop_arbiter()
        self.state = ClusterState.STOPPED
        log.info("cluster at %s stopped", self.base_url)

    def _stop_arbiter(self) -> None:
        if self._arbiter is not None:
            self._arbiter.stop(timeout_s=self.config.graceful_timeout_s + 5)
        if self._access_log is not None:
            self._access_log.close()
            self._access_log = None

    def _argv(self) -> list[str]:
        config = self.config
        argv = [
            sys.executable, "-m", "gunicorn", config.app,
            "--worker-class", WORKER_CLASSES[config.worker_class],
            "--workers", str(config.workers),
            "--bind", f"{config.host}:{self.port}",
            # gunicorn 27 otherwise shares ~/.gunicorn/gunicorn.ctl between instances.
            "--no-control-socket",
            "--keep-alive", str(config.keep_alive_s),
            "--timeout", str(config.worker_timeout_s),
            "--graceful-timeout", str(config.graceful_timeout_s),
            "--config", "python:harness.gunicorn_config",
            "--error-logfile", "-",
            "--log-level", "info",
        ]
        if config.worker_class == "gthread":
            argv += ["--threads", str(config.threads)]
        return argv

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.config.env)
        env["SCAN_HARNESS_READY_DIR"] = str(self._ready_dir)
        if self.config.user_config is not None:
            env["SCAN_HARNESS_USER_GUNICORN_CONFIG"] = str(self.config.user_config.resolve())
        return env

    def _arbiter_died(self) -> str | None:
        if self._arbiter is None or self._arbiter.exit_code() is None:
            return None
        return (f"gunicorn exited with code {self._arbiter.exit_code()} while starting "
                f"{self.config.app!r}; {self._arbiter.log_path} ends with:\n"
                f"{self._arbiter.log_tail()}")

    def _wait_running(self) -> None:
        def running() -> bool:
            return (len(self.booted_worker_pids()) >= self.config.workers
                    and _accepts(self.config.host, self.port))

        if not wait_until(running, timeout_s=self.config.boot_timeout_s,
                          failure=self._arbiter_died):
            raise StartError(
                f"gunicorn did not get {self.config.workers} workers up within "
                f"{self.config.boot_timeout_s:.0f} s (booted: {len(self.booted_worker_pids())}); "
                f"{self.run_dir / 'service.log'} ends with:\n{self.log_tail()}"
            )


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
