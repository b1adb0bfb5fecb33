"""Stores: the Redis that a cluster's workers share, behind one interface.

Three backends, chosen by the ``--store`` value:

- ``fakeredis`` (default): the embedded store, a fakeredis TCP server in a child process
  (see ``harness.store_server``);
- ``redis-server``: a real Redis the harness spawns on a free loopback port, with
  persistence off;
- ``redis://…`` or ``rediss://…``: a Redis that is already running. The harness never
  starts or stops it, and touches only keys under the run's prefix.

Each backend follows the virtual clock (see ``harness.clock``) in its own way: the
embedded store applies the clock file in its process and acknowledges each move; a
spawned redis-server runs under libfaketime, whose offset or frozen timestamp the harness
rewrites; a Redis reached by URL cannot have its clock moved, so on a forward move the
harness shortens the TTLs of the run's own keys by the jump instead, and it rejects a
freeze or a backward move.

Every run gets a key prefix of its own (``scan-harness:<run id>:``), so several runs can
share one Redis and the harness can clean up after itself without touching anyone else's
keys.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import redis

from harness.clock import ClockError
from harness.clock_state import ClockState, real_time_ns
from harness.processes import ChildProcess, StartError, free_port, wait_until

log = logging.getLogger(__name__)

STORE_START_TIMEOUT_S = 10.0
CLOCK_ACK_TIMEOUT_S = 5.0


class Store(Protocol):
    """A Redis reachable by URL for the lifetime of a run."""

    name: str
    key_prefix: str

    @property
    def url(self) -> str: ...

    def start(self, run_dir: Path, clock_file: Path | None = None) -> None: ...

    def stop(self) -> None: ...

    def validate_clock_move(self, previous: ClockState, state: ClockState) -> None: ...

    def apply_clock(self, previous: ClockState, state: ClockState) -> None: ...


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
    _ack_file: Path | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, run_dir: Path, clock_file: Path | None = None) -> None:
        port_file = run_dir / "store.port"
        port_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "harness.store_server",
                "--host", self.host, "--port-file", str(port_file)]
        if clock_file is not None:
            self._ack_file = run_dir / "store.clock-ack"
            self._ack_file.unlink(missing_ok=True)
            argv += ["--clock-file", str(clock_file), "--ack-file", str(self._ack_file)]
        self._process = ChildProcess("embedded store", argv, log_path=run_dir / "store.log")
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

    def validate_clock_move(self, previous: ClockState, state: ClockState) -> None:
        """Accept every move: the embedded store can freeze and go back in time."""

    def apply_clock(self, previous: ClockState, state: ClockState) -> None:
        """Wait until the store process has acknowledged ``state``."""
        ack_file = self._ack_file
        if ack_file is None:
            raise ClockError("the embedded store was started without a clock file")

        def acknowledged() -> bool:
            try:
                return int(ack_file.read_text(encoding="utf-8") or -1) >= state.seq
            except (FileNotFoundError, ValueError):
                return False

        if not wait_until(acknowledged, timeout_s=CLOCK_ACK_TIMEOUT_S, interval_s=0.001):
            raise ClockError(f"the embedded store did not take clock state {state.seq} within "
                             f"{CLOCK_ACK_TIMEOUT_S:.0f} s; see its store.log")


@dataclass
class RedisServerStore:
    """A ``redis-server`` the harness spawns on a free port, keeping nothing on disk."""

    key_prefix: str
    name: str = "redis-server"
    binary: str = "redis-server"
    host: str = "127.0.0.1"
    port: int = 0
    _process: ChildProcess | None = field(default=None, repr=False)
    _faketime_file: Path | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, run_dir: Path, clock_file: Path | None = None) -> None:
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
        env = None
        if clock_file is not None:
            self._faketime_file = run_dir / "redis.faketime"
            write_atomically(self._faketime_file, "+0")
            env = {**os.environ, **faketime_environment(self._faketime_file)}
        self._process = ChildProcess(
            "redis-server",
            [binary, "--bind", self.host, "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(data_dir), "--daemonize", "no"],
            log_path=run_dir / "store.log", env=env,
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

    def validate_clock_move(self, previous: ClockState, state: ClockState) -> None:
        """Accept every move: libfaketime can freeze and go back in time."""

    def apply_clock(self, previous: ClockState, state: ClockState) -> None:
        """Rewrite libfaketime's timestamp file; redis-server reads it on every time call."""
        if self._faketime_file is None:
            raise ClockError("redis-server was started without a clock file")
        write_atomically(self._faketime_file, faketime_spec(state))


@dataclass
class ExternalStore:
    """A Redis that was running before the run; only the run's own keys are touched."""

    external_url: str
    key_prefix: str
    name: str = "url"

    @property
    def url(self) -> str:
        return self.external_url

    def start(self, run_dir: Path, clock_file: Path | None = None) -> None:
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

    def validate_clock_move(self, previous: ClockState, state: ClockState) -> None:
        """Reject what a Redis whose clock cannot be moved cannot follow."""
        if state.frozen:
            raise ClockError(
                f"the Redis at {self.url} runs on its own clock, so it cannot be frozen; keys "
                "would keep expiring in real time. Use a ticking clock with advance(), or "
                "--store fakeredis or --store redis-server"
            )
        if state.now_ns() < previous.now_ns():
            raise ClockError(
                f"the Redis at {self.url} runs on its own clock, so virtual time cannot go "
                "back: the TTLs already shortened cannot be lengthened again. Move forward "
                "only, or use --store fakeredis or --store redis-server"
            )

    def apply_clock(self, previous: ClockState, state: ClockState) -> None:
        """Shorten the TTL of every key of the run by the jump, deleting keys it expires."""
        jump_ms = (state.now_ns() - previous.now_ns()) // 1_000_000
        if jump_ms <= 0:
            return
        client = redis.Redis.from_url(self.url, socket_timeout=5.0)
        try:
            shift = client.register_script(SHIFT_TTLS_SCRIPT)
            seen: set[bytes] = set()
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{self.key_prefix}*", count=1000):
                # SCAN may return a key twice; shifting it twice would expire it early.
                if key in seen:
                    continue
                seen.add(key)
                batch.append(key)
                if len(batch) == 1000:
                    shift(keys=batch, args=[jump_ms])
                    batch = []
            if batch:
                shift(keys=batch, args=[jump_ms])
        finally:
            client.close()
        log.info("shifted the TTLs of %d keys under %r by %d ms", len(seen), self.key_prefix,
                 jump_ms)


# For each key: read its remaining TTL and shorten it by ARGV[1] ms, deleting the key when
# nothing is left. One script per batch, so no key sits with its old TTL for long.
SHIFT_TTLS_SCRIPT = """
local jump = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then
    if ttl <= jump then
      redis.call('DEL', key)
    else
      redis.call('PEXPIRE', key, ttl - jump)
    end
  end
end
return #KEYS
"""

FAKETIME_LIBRARY_GLOB = "/usr/lib/*/faketime/libfaketime.so.1"
MALLOC_DEBUG_GLOB = "/usr/lib/*/libc_malloc_debug.so.0"


def faketime_environment(timestamp_file: Path) -> dict[str, str]:
    """Return the environment that runs a process under libfaketime, following a file.

    The Debian redis-server (built with jemalloc) exits at start under plain libfaketime;
    preloading glibc's malloc debug library first avoids that. Monotonic time stays real,
    so redis-server's event loop keeps its pace, and the file is read on every call.
    """
    library = sorted(glob.glob(FAKETIME_LIBRARY_GLOB))
    malloc_debug = sorted(glob.glob(MALLOC_DEBUG_GLOB))
    if not library:
        raise StartError("virtual time on a spawned redis-server needs libfaketime, which is "
                         "missing; install it with: apt-get install libfaketime")
    preload = [*malloc_debug[:1], library[0]]
    return {
        "LD_PRELOAD": ":".join(preload),
        "FAKETIME_TIMESTAMP_FILE": str(timestamp_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_FMT": "%s",
    }


def faketime_spec(state: ClockState) -> str:
    """Return libfaketime's timestamp for a clock state: an offset, or a frozen instant.

    A frozen instant is whole seconds since the epoch (libfaketime's ``%s`` format); an
    offset keeps its fraction.
    """
    if state.is_real:
        return "+0"
    if state.frozen:
        assert state.virtual_ns is not None
        return str(state.virtual_ns // 1_000_000_000)
    offset_s = (state.now_ns() - real_time_ns()) / 1e9
    return f"{offset_s:+.6f}"


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


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
