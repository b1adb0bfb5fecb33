"""Stores: the Redis that a cluster's workers share, behind one interface.

Three backends, chosen by the ``--store`` value:

- ``fakeredis`` (default): the embedded store, a fakeredis TCP server in a child process
  (see ``harness.store_server``);
- ``redis-server``: a real Redis the harness spawns on a free loopback port, with
  persistence off;
- ``redis://…`` or ``rediss://…``: a Redis that is already running. The harness never
  starts or stops it, and touches only keys under the run's prefix.

Every run gets a key prefix of its own (``scan-harness:<run id>:``), so several runs can
share one Redis and the harness can clean up after itself without touching anyone else's
keys.
"""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import redis

from harness.processes import ChildProcess, StartError, free_port, wait_until

log = logging.getLogger(__name__)

STORE_START_TIMEOUT_S = 10.0


class Store(Protocol):
    """A Redis reachable by URL for the lifetime of a run."""

    name: str
    key_prefix: str

    @property
    def url(self) -> str: ...

    def start(self, run_dir: Path) -> None: ...

    def stop(self) -> None: ...


def _ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@dataclass
class EmbeddedStore:
    """A fakeredis TCP server in a child process of the harness."""

    key_prefix: str
    name: str = "fakeredis"
    host: str = "127.0.0.1"
    port: int = 0
    _process: ChildProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, run_dir: Path) -> None:
        port_file = run_dir / "store.port"
        port_file.unlink(missing_ok=True)
        self._process = ChildProcess(
            "embedded store",
            [sys.executable, "-m", "harness.store_server",
             "--host", self.host, "--port-file", str(port_file)],
            log_path=run_dir / "store.log",
        )
        process = self._process

        def died() -> str | None:
            if process.exit_code() is None:
                return None
            return (f"the embedded store exited with code {process.exit_code()} "
                    f"before it was ready; its log ends with:\n{process.log_tail()}")

        if not wait_until(port_file.exists, timeout_s=STORE_START_TIMEOUT_S, failure=died):
            self.stop()
            raise StartError(f"the embedded store did not start within "
                             f"{STORE_START_TIMEOUT_S:.0f} s; see {run_dir / 'store.log'}")
        self.port = int(port_file.read_text(encoding="utf-8"))
        log.info("embedded store ready at %s (pid %d)", self.url, process.pid)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None


@dataclass
class RedisServerStore:
    """A ``redis-server`` the harness spawns on a free port, keeping nothing on disk."""

    key_prefix: str
    name: str = "redis-server"
    binary: str = "redis-server"
    host: str = "127.0.0.1"
    port: int = 0
    _process: ChildProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, run_dir: Path) -> None:
        binary = shutil.which(self.binary)
        if binary is None:
            raise StartError(
                f"the store 'redis-server' needs the {self.binary!r} binary, which is not on "
                "PATH; install it (Debian: apt-get install redis-server) or use "
                "--store fakeredis"
            )
        self.port = free_port(self.host)
        data_dir = run_dir / "redis-data"
        data_dir.mkdir(exist_ok=True)
        self._process = ChildProcess(
            "redis-server",
            [binary, "--bind", self.host, "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(data_dir), "--daemonize", "no"],
            log_path=run_dir / "store.log",
        )
        process = self._process

        def died() -> str | None:
            if process.exit_code() is None:
                return None
            return (f"redis-server exited with code {process.exit_code()} before it "
                    f"answered on port {self.port}; its log ends with:\n{process.log_tail()}")

        if not wait_until(lambda: _ping(self.url), timeout_s=STORE_START_TIMEOUT_S,
                          interval_s=0.05, failure=died):
            self.stop()
            raise StartError(f"redis-server did not answer on port {self.port} within "
                             f"{STORE_START_TIMEOUT_S:.0f} s; see {run_dir / 'store.log'}")
        log.info("redis-server ready at %s (pid %d)", self.url, process.pid)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None


@dataclass
class ExternalStore:
    """A Redis that was running before the run; only the run's own keys are touched."""

    external_url: str
    key_prefix: str
    name: str = "url"

    @property
    def url(self) -> str:
        return self.external_url

    def start(self, run_dir: Path) -> None:
        if not _ping(self.url):
            raise StartError(f"no Redis answered PING at {self.url}; start it or give "
                             "another --store")

    def stop(self) -> None:
        """Delete the run's own keys, leaving every other key as it was."""
        client = redis.Redis.from_url(self.url, socket_timeout=2.0)
        try:
            keys = set(client.scan_iter(match=f"{self.key_prefix}*", count=1000))
            for start in range(0, len(keys), 1000):
                batch = list(keys)[start:start + 1000]
                client.delete(*batch)
        except redis.RedisError as error:
            log.warning("could not delete the run's keys under %r: %s", self.key_prefix, error)
        finally:
            client.close()


STORE_NAMES = ("fakeredis", "redis-server")


def make_store(spec: str, key_prefix: str) -> Store:
    """Build the store named by ``spec``: a backend name or a Redis URL."""
    if spec == "fakeredis":
        return EmbeddedStore(key_prefix=key_prefix)
    if spec == "redis-server":
        return RedisServerStore(key_prefix=key_prefix)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return ExternalStore(external_url=spec, key_prefix=key_prefix)
    raise ValueError(f"unknown store {spec!r}: use one of {', '.join(STORE_NAMES)} "
                     "or a URL such as redis://127.0.0.1:6379/0")
