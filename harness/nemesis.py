"""The nemesis: environment faults injected on purpose, each recorded as a window.

Half of the bugs of a job-polling service come from its environment rather than its code.
A worker is recycled or killed while a scan runs in it, a Redis connection resets in the
middle of a write, a store stalls or restarts. The nemesis causes these at moments
a scenario chooses, and records each *action* in the history as a *nemesis window*
(``harness.history.NemesisWindow``) from the moment it began to the moment it ended, so
the checker can relate every op, and every violation, to the faults in effect around it.

Actions on workers (the routing client's worker index names the target):

- ``kill_worker``: SIGKILL, as the kernel's OOM killer or a crash would; the arbiter
  starts a replacement, and the window ends once the slot is pinned to it;
- ``recycle_worker``: SIGTERM, the graceful exit that gunicorn's ``--max-requests`` and
  a deploy also cause (both make the worker stop accepting, finish its requests and run
  the app's shutdown); the window ends once the replacement is pinned;
- ``paused_worker``: SIGSTOP on entry and SIGCONT on exit, a worker that hangs.

Actions on store traffic, through the store proxy (``harness.store_proxy``), which
reach the connections already open in the workers' pools:

- ``store_latency``, ``store_errors`` (error replies to chosen commands), ``store_hang``,
  ``store_outage`` (every connection reset, new ones too): context managers whose window
  is the ``with`` block;
- ``reset_store_connections``: every open connection reset, an instant window;
- ``reset_after_reply``: the next matching commands reach the store, and the connection
  is reset in place of their reply.

Any of the context managers can also run for a fixed time while the steps go on:
``for_seconds(0.3, nemesis.store_outage())`` starts the outage now and ends it 0.3 s
later from a thread of its own, so a request sent meanwhile sees the store come back.

Actions on the store's data:

- ``restart_store(keep_data=True)``: the store process stops and starts again, with the
  run's keys copied over (DUMP and RESTORE), behind a proxy outage;
- ``restart_store(keep_data=False)`` and ``flush_store``: the run's data is lost; the
  window has ``data_lost`` set, and the checker treats what the scans lost as known.

Example, from a scenario::

    accepted = ctx.discover(route=2)
    ctx.nemesis.kill_worker(2)           # returns once worker 2 is its replacement
    with ctx.nemesis.store_errors(["EVALSHA"]):
        ctx.status(accepted.scan_id, route=0)   # 503 after the retry budget, not not_found
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import redis

from harness.client import RoutingClient
from harness.clock import VirtualClock
from harness.cluster import Cluster
from harness.history import HistoryRecorder, NemesisWindow
from harness.processes import StartError, wait_until
from harness.store import EmbeddedStore, RedisServerStore, Store
from harness.store_proxy import DEFAULT_ERROR, CommandMatch, StoreProxy

log = logging.getLogger(__name__)

# A SIGKILLed worker's replacement served requests within 0.1 to 0.3 s on 2 cores, and a
# recycled worker's takes its graceful timeout (3 s by default) plus a boot at most. The
# bound leaves room for a slow, loaded CI machine.
REPLACE_TIMEOUT_S = 20.0
SIGNAL_TIMEOUT_S = 5.0
STORE_TIMEOUT_S = 5.0
DUMP_BATCH_KEYS = 500


class NemesisError(RuntimeError):
    """An action the nemesis cannot carry out; the message gives the reason and the fix."""


@dataclass(frozen=True, slots=True)
class _Started:
    """The beginning of a window whose end is not known yet."""

    action: str
    target: str
    real_ns: int
    virtual_ns: int
    options: dict[str, Any]


@dataclass
class TimedAction:
    """A nemesis action that ends by itself after a fixed time (see ``for_seconds``)."""

    seconds: float
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def wait(self) -> None:
        """Block until the action has ended and its window is recorded."""
        if self.thread is not None:
            self.thread.join()
        if self.error is not None:
            raise NemesisError(f"a timed nemesis action failed to end: {self.error}")

    def end(self) -> None:
        """End the action now, before its time is up, and wait for it."""
        self.stop.set()
        self.wait()


@dataclass(frozen=True, slots=True)
class _Pending:
    """A worker that was signalled and whose replacement is not pinned yet."""

    started: _Started
    old_pid: int


class Nemesis:
    """The harness's handle for injecting faults into one running cluster and its store.

    ``scenario`` labels the windows recorded from now on; the runner sets it to the
    name of the scenario that runs. ``proxy`` is None when the run's workers talk to the
    store directly, and every action on store traffic then raises NemesisError.
    """

    def __init__(
        self,
        *,
        cluster: Cluster,
        client: RoutingClient,
        recorder: HistoryRecorder,
        store: Store,
        proxy: StoreProxy | None = None,
        clock: VirtualClock | None = None,
        run_dir: Path | None = None,
        replace_timeout_s: float = REPLACE_TIMEOUT_S,
    ) -> None:
        self.cluster = cluster
        self.client = client
        self.recorder = recorder
        self.store = store
        self.proxy = proxy
        self.clock = clock
        self.run_dir = run_dir
        self.replace_timeout_s = replace_timeout_s
        self.scenario: str | None = None
        self._pending: dict[int, _Pending] = {}
        self._paused: dict[int, tuple[int, _Started]] = {}
        self._timed: list[TimedAction] = []

    # Workers

    def kill_worker(self, worker: int, *, wait: bool = True) -> int | None:
        """SIGKILL worker ``worker``; with ``wait``, return the replacement's pid once pinned.

        Without ``wait``, return None at once; ``await_replacements()`` (or ``heal()``)
        then pins the replacement and ends the window.
        """
        return self._signal_worker("kill-worker", worker, signal.SIGKILL, wait)

    def recycle_worker(self, worker: int, *, wait: bool = True) -> int | None:
        """SIGTERM worker ``worker``, the graceful exit of a worker that gunicorn recycles.

        The worker finishes the requests it has, runs the app's shutdown and exits, and
        the arbiter starts a replacement. ``wait`` works as for ``kill_worker``.
        """
        return self._signal_worker("recycle-worker", worker, signal.SIGTERM, wait)

    def await_replacements(self) -> dict[int, int]:
        """Pin every signalled worker's slot to its replacement; return slot to new pid."""
        replaced = {}
        for worker in sorted(self._pending):
            replaced[worker] = self._await_replacement(worker)
        return replaced

    def pause_worker(self, worker: int) -> None:
        """SIGSTOP worker ``worker``: it keeps its connections but serves no request.

        NOTE: the arbiter kills a worker that sends no heartbeat for the cluster's worker
        timeout (30 s by default), so a longer pause ends as a kill.
        """
        if worker in self._paused:
            raise NemesisError(f"worker {worker} is already paused; resume_worker({worker}) "
                               "first")
        pid = self._pid_of(worker)
        started = self._begin("pause-worker", f"worker {worker}", {"pid": pid})
        os.kill(pid, signal.SIGSTOP)
        if not wait_until(lambda: _status(pid) == psutil.STATUS_STOPPED,
                          timeout_s=SIGNAL_TIMEOUT_S, interval_s=0.005):
            raise NemesisError(f"worker {worker} (pid {pid}) did not stop within "
                               f"{SIGNAL_TIMEOUT_S:.0f} s of SIGSTOP")
        self._paused[worker] = (pid, started)

    def resume_worker(self, worker: int) -> None:
        """SIGCONT a paused worker, pin its slot again if needed, and end the window."""
        if worker not in self._paused:
            raise NemesisError(f"worker {worker} is not paused; pause_worker({worker}) first")
        pid, started = self._paused.pop(worker)
        try:
            os.kill(pid, signal.SIGCONT)
            wait_until(lambda: _status(pid) != psutil.STATUS_STOPPED,
                       timeout_s=SIGNAL_TIMEOUT_S, interval_s=0.005)
            # A request that timed out while the worker was stopped closed the slot's
            # connection, and its next connection could land on any worker.
            self.client.repin(worker, pid, timeout_s=self.replace_timeout_s)
        finally:
            self._end(started)

    @contextlib.contextmanager
    def paused_worker(self, worker: int) -> Iterator[None]:
        """Pause worker ``worker`` for the ``with`` block."""
        self.pause_worker(worker)
        try:
            yield
        finally:
            self.resume_worker(worker)

    # Store traffic

    @contextlib.contextmanager
    def store_latency(self, latency_s: float) -> Iterator[None]:
        """Delay every store request by ``latency_s`` for the ``with`` block."""
        proxy = self._proxy("store-latency")
        with self._window("store-latency", "store", {"latency_s": latency_s}):
            proxy.set_latency(latency_s)
            try:
                yield
            finally:
                proxy.set_latency(0.0)

    @contextlib.contextmanager
    def store_errors(self, commands: Iterable[str], *, arg_contains: bytes | None = None,
                     message: str = DEFAULT_ERROR) -> Iterator[None]:
        """Reply ``-message`` to the named store commands for the ``with`` block.

        ``commands`` are Redis command names (``EVALSHA``, ``HGETALL``); with
        ``arg_contains``, only commands with an argument containing those bytes fail.
        """
        names = [name.upper() for name in commands]
        if not names:
            raise NemesisError("store_errors needs at least one command name, such as EVALSHA")
        proxy = self._proxy("store-errors")
        options: dict[str, Any] = {"commands": names, "message": message}
        if arg_contains is not None:
            options["arg_contains"] = arg_contains.decode("latin-1")
        with self._window("store-errors", "store", options):
            proxy.fail_commands([CommandMatch(name, arg_contains) for name in names], message)
            try:
                yield
            finally:
                proxy.fail_commands([])

    @contextlib.contextmanager
    def store_hang(self) -> Iterator[None]:
        """Stop all store traffic for the ``with`` block; clients wait until they time out.

        The connections held are reset when the block ends.
        """
        proxy = self._proxy("store-hang")
        with self._window("store-hang", "store", {}):
            proxy.set_hanging(True)
            try:
                yield
            finally:
                proxy.set_hanging(False)

    @contextlib.contextmanager
    def store_outage(self) -> Iterator[None]:
        """Reset every store connection, new ones included, for the ``with`` block.

        The store keeps its data: to the workers this is a store that restarts.
        """
        proxy = self._proxy("store-outage")
        with self._window("store-outage", "store", {}):
            proxy.set_outage(True)
            try:
                yield
            finally:
                proxy.set_outage(False)

    def reset_store_connections(self) -> int:
        """Reset every open store connection once; return how many were reset.

        NOTE: redis-py checks a pooled connection before it reuses it and reconnects
        quietly when the check finds it reset, so only commands in flight see the reset.
        """
        proxy = self._proxy("reset-store-connections")
        with self._window("reset-store-connections", "store", {}) as options:
            count = proxy.reset_connections()
            options["connections"] = count
        return count

    @contextlib.contextmanager
    def reset_after_reply(self, command: str, *, count: int = 1,
                          arg_contains: bytes | None = None) -> Iterator[None]:
        """Within the ``with`` block, cut the connection in place of the next ``count``
        replies to ``command``, after the store has applied the command.

        The client cannot tell whether its write happened, so a retry may apply it twice.
        """
        proxy = self._proxy("reset-after-reply")
        options: dict[str, Any] = {"command": command.upper(), "count": count}
        if arg_contains is not None:
            options["arg_contains"] = arg_contains.decode("latin-1")
        with self._window("reset-after-reply", "store", options) as window_options:
            proxy.reset_after_reply(CommandMatch(command, arg_contains), count)
            try:
                yield
            finally:
                window_options["cut"] = count - proxy.reset_after_reply_remaining()
                proxy.reset_after_reply(None)

    # Store data

    def restart_store(self, *, keep_data: bool = True) -> None:
        """Stop the store process and start it again, keeping the run's keys or not.

        The store proxy resets every connection meanwhile, and forwards to the new process
        afterwards. With ``keep_data``, the run's keys are copied over with DUMP and
        RESTORE, TTLs included, so the real time that the restart takes is added to each
        TTL. Without it, the new store is empty, and the window records a data loss.
        """
        proxy = self._proxy("restart-store")
        store = self.store
        if not isinstance(store, EmbeddedStore | RedisServerStore):
            raise NemesisError(f"the store {store.name!r} is not a process the harness "
                               "started, so it cannot be restarted; use store_outage() for "
                               "a restart that keeps the data, or flush_store()")
        if self.run_dir is None:
            raise NemesisError("restart_store needs the run directory for the store's log")
        action = "restart-store" if keep_data else "restart-store-losing-data"
        with self._window(action, "store", {"keep_data": keep_data},
                          data_lost=not keep_data) as options:
            proxy.set_outage(True)
            try:
                snapshot = _dump_keys(store.url, store.key_prefix) if keep_data else []
                self._restart_process(store, self.run_dir)
                if snapshot:
                    _restore_keys(store.url, snapshot)
                host, port = _host_port(store.url)
                proxy.set_upstream(host, port)
            finally:
                proxy.set_outage(False)
            options["keys"] = len(snapshot)

    def flush_store(self) -> int:
        """Delete every key of the run from the store; return how many were deleted.

        Only keys under the run's prefix are touched, so this is safe on a shared Redis.
        """
        with self._window("flush-store", "store", {}, data_lost=True) as options:
            deleted = _delete_keys(self.store.url, self.store.key_prefix)
            options["keys"] = deleted
        return deleted

    # Timing and ending faults

    def for_seconds(self, seconds: float, action: AbstractContextManager[object]) -> TimedAction:
        """Start ``action`` now and end it after ``seconds`` of real time, from a thread.

        ``action`` is one of this class's context managers, such as
        ``store_outage()``. The fault is in effect when this returns, so the steps that
        follow run while it lasts. ``wait()`` on the result blocks until it has ended.
        """
        if seconds < 0:
            raise NemesisError(f"for_seconds takes a duration >= 0, got {seconds}")
        action.__enter__()
        timed = TimedAction(seconds)

        def end_later() -> None:
            # The wait is the fault's duration; heal() or end() cuts it short.
            timed.stop.wait(seconds)
            try:
                action.__exit__(None, None, None)
            except Exception as error:  # reported by wait(), on the caller's thread
                log.error("a timed nemesis action failed to end: %s", error)
                timed.error = error

        timed.thread = threading.Thread(target=end_later, name="nemesis-timer", daemon=True)
        timed.thread.start()
        self._timed.append(timed)
        return timed

    def heal(self) -> None:
        """End every action still in effect: timed actions, paused workers, workers not
        yet replaced, and every store proxy fault. The runner calls it after each
        scenario."""
        timed, self._timed = self._timed, []
        for action in timed:
            action.end()
        for worker in list(self._paused):
            self.resume_worker(worker)
        self.await_replacements()
        if self.proxy is not None:
            self.proxy.clear_faults()

    # Helpers

    def _signal_worker(self, action: str, worker: int, signum: int, wait: bool) -> int | None:
        if worker in self._pending:
            raise NemesisError(f"worker {worker} was already signalled and not replaced yet; "
                               "call await_replacements() first")
        if worker in self._paused:
            raise NemesisError(f"worker {worker} is paused; resume_worker({worker}) first")
        pid = self._pid_of(worker)
        started = self._begin(action, f"worker {worker}",
                              {"pid": pid, "signal": signal.Signals(signum).name})
        os.kill(pid, signum)
        self._pending[worker] = _Pending(started, pid)
        if not wait:
            return None
        return self._await_replacement(worker)

    def _await_replacement(self, worker: int) -> int:
        pending = self._pending.pop(worker)
        started = pending.started
        try:
            new_pid = self._wait_for_replacement(worker, pending.old_pid)
            self.client.repin(worker, new_pid, timeout_s=self.replace_timeout_s)
            started.options["replacement_pid"] = new_pid
            return new_pid
        finally:
            self._end(started)

    def _wait_for_replacement(self, worker: int, old_pid: int) -> int:
        """Wait until ``old_pid`` exited and a booted worker that no slot is pinned to runs."""
        cluster = self.cluster
        pinned = set(self.client.worker_pids)
        candidates: list[int] = []

        def replaced() -> bool:
            if _status(old_pid) not in (None, psutil.STATUS_ZOMBIE):
                return False
            booted = cluster.booted_worker_pids()
            candidates[:] = [pid for pid in booted if pid not in pinned]
            return len(booted) >= cluster.config.workers and bool(candidates)

        def arbiter_died() -> str | None:
            try:
                cluster.check_alive()
            except StartError as error:
                return str(error)
            return None

        try:
            found = wait_until(replaced, timeout_s=self.replace_timeout_s, interval_s=0.01,
                               failure=arbiter_died)
        except StartError as error:
            raise NemesisError(f"the arbiter died while worker {worker} was being "
                               f"replaced: {error}") from error
        if not found:
            raise NemesisError(
                f"worker {worker} (pid {old_pid}) was not replaced within "
                f"{self.replace_timeout_s:.0f} s (still running: "
                f"{_status(old_pid) not in (None, psutil.STATUS_ZOMBIE)}, booted workers: "
                f"{cluster.booted_worker_pids()}); see {cluster.run_dir / 'service.log'}")
        return candidates[0]

    def _restart_process(self, store: EmbeddedStore | RedisServerStore, run_dir: Path) -> None:
        """Stop the store process and start a new one on a free port, on the same clock."""
        store.stop()
        if isinstance(store, EmbeddedStore):
            store.port = 0
        if self.clock is None:
            store.start(run_dir)
            return
        store.start(run_dir, self.clock.path)
        # A new redis-server starts on the real clock, and a new embedded store must
        # have taken the current clock state before any key is restored.
        state = self.clock.state
        store.apply_clock(state, state)

    def _proxy(self, action: str) -> StoreProxy:
        if self.proxy is None:
            raise NemesisError(f"{action} acts on store traffic, which needs the store "
                               "proxy, but this run's workers talk to the store directly; "
                               "run with the store proxy on (RunConfig.store_proxy=True)")
        return self.proxy

    def _pid_of(self, worker: int) -> int:
        pids = self.client.worker_pids
        if not 0 <= worker < len(pids):
            raise NemesisError(f"worker {worker} does not exist: workers are 0 to "
                               f"{len(pids) - 1}")
        return pids[worker]

    def _now(self) -> tuple[int, int]:
        virtual_ns = self.clock.now_ns() if self.clock is not None else time.time_ns()
        return self.recorder.real_ns(), virtual_ns

    def _begin(self, action: str, target: str, options: dict[str, Any]) -> _Started:
        real_ns, virtual_ns = self._now()
        log.info("nemesis %s on %s begins %s", action, target, options or "")
        return _Started(action, target, real_ns, virtual_ns, options)

    def _end(self, started: _Started, data_lost: bool = False) -> NemesisWindow:
        real_ns, virtual_ns = self._now()
        window = self.recorder.record_nemesis_window(
            action=started.action, target=started.target, real_start_ns=started.real_ns,
            real_end_ns=real_ns, virtual_start_ns=started.virtual_ns,
            virtual_end_ns=virtual_ns, data_lost=data_lost, options=dict(started.options),
            scenario=self.scenario)
        log.info("nemesis %s on %s ended after %.3f s (window %d)", started.action,
                 started.target, (real_ns - started.real_ns) / 1e9, window.index)
        return window

    @contextlib.contextmanager
    def _window(self, action: str, target: str, options: dict[str, Any], *,
                data_lost: bool = False) -> Iterator[dict[str, Any]]:
        """Record the ``with`` block as one window; the block may add to its options."""
        started = self._begin(action, target, options)
        try:
            yield started.options
        finally:
            self._end(started, data_lost)


def _status(pid: int) -> str | None:
    """Return the process's psutil status, or None when it no longer exists."""
    try:
        return str(psutil.Process(pid).status())
    except psutil.NoSuchProcess:
        return None


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise NemesisError(f"the store URL {url!r} names no host and port")
    return parts.hostname, parts.port


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=STORE_TIMEOUT_S,
                                socket_connect_timeout=STORE_TIMEOUT_S)


def _run_keys(client: redis.Redis, key_prefix: str) -> list[bytes]:
    # SCAN may return a key twice.
    return list(dict.fromkeys(client.scan_iter(match=f"{key_prefix}*", count=1000)))


def _dump_keys(url: str, key_prefix: str) -> list[tuple[bytes, bytes, int]]:
    """Return (key, DUMP payload, PTTL in ms) of every key of the run."""
    client = _client(url)
    try:
        keys = _run_keys(client, key_prefix)
        snapshot = []
        for start in range(0, len(keys), DUMP_BATCH_KEYS):
            batch = keys[start:start + DUMP_BATCH_KEYS]
            with client.pipeline(transaction=False) as pipe:
                for key in batch:
                    pipe.dump(key)
                    pipe.pttl(key)
                replies = pipe.execute()
            for key, payload, ttl_ms in zip(batch, replies[::2], replies[1::2], strict=True):
                if payload is not None:
                    snapshot.append((key, payload, int(ttl_ms)))
        return snapshot
    finally:
        client.close()


def _restore_keys(url: str, snapshot: list[tuple[bytes, bytes, int]]) -> None:
    client = _client(url)
    try:
        for start in range(0, len(snapshot), DUMP_BATCH_KEYS):
            with client.pipeline(transaction=False) as pipe:
                for key, payload, ttl_ms in snapshot[start:start + DUMP_BATCH_KEYS]:
                    # RESTORE takes 0 for a key without a TTL (PTTL -1).
                    pipe.restore(key, max(ttl_ms, 0), payload, replace=True)
                pipe.execute()
    finally:
        client.close()


def _delete_keys(url: str, key_prefix: str) -> int:
    client = _client(url)
    try:
        keys = _run_keys(client, key_prefix)
        deleted = 0
        for start in range(0, len(keys), DUMP_BATCH_KEYS):
            deleted += int(client.delete(*keys[start:start + DUMP_BATCH_KEYS]))
        return deleted
    finally:
        client.close()

