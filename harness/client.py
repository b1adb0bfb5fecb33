"""The routing client: send each request to a chosen worker, and record it.

Gunicorn hands a new connection to whichever worker accepts it first, but a keep-alive
connection then stays with that worker. The client therefore opens connections until it
has one *pinned* to every worker (each response names its worker in ``X-Worker-Id``) and
keeps them open for the whole run. Workers are named by index in steps and reports:
index 0 is the worker with the lowest pid.

A step chooses its worker with a *route*:

- an ``int`` k: worker k;
- ``Route.ACCEPTING``: the worker that accepted the scan's POST;
- ``Route.OTHER``: the next worker after the accepting one (so never the accepting one
  when there are two or more workers);
- ``Route.NEXT``: round-robin over all workers.

Every request becomes an invoke op and a completion op in the history (see
``harness.history``), with the worker that really served it, which the client reads from
the answer rather than assuming.

The client builds its requests from an API profile (see ``harness.profile``; the reference
service's by default) and records each answer as the canonical value and status code the
checker reads. Where the profile maps a service's own status code to a canonical one
(a status 404 that means not_found, a results 409 that means still running), the op
keeps the service's code in ``value["service_http_status"]``.

A service that names no worker in its answers cannot be routed. ``observe(n)`` then opens
``n`` keep-alive connections and records ops without a worker; the run's report says so.

When a pinned worker dies, the HTTP pool opens a new connection on the next request to
its slot, and whichever worker accepts it answers. The op then records the worker that
really served it (or no index, for a replacement worker). ``repin(slot)`` pins the slot
to the replacement; the nemesis calls it after every worker it kills or recycles.

Example::

    client = RoutingClient(cluster.base_url, recorder, token_for=tokens.mint)
    client.pin_workers(expected=4)
    accepted = client.discover("alice", route=0)
    client.status("alice", accepted.scan_id, route=Route.OTHER)
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx

from harness.history import Function, HistoryRecorder, Op, OpType
from harness.profile import Profile, load_profile
from harness.worker_hooks import CLOCK_SEQ_HEADER

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/opportunities"
WORKER_HEADER = "X-Worker-Id"

# Opening connections until each of 4 workers had answered took a median of 6 to 11
# connections and at worst 94 on a 2-core machine; 200 leaves room for slower boots.
MAX_PIN_CONNECTIONS = 200

# A worker reports itself booted before its event loop accepts connections. So after a
# connection reaches a worker not wanted, the client pauses n ms after the n-th
# connection, at most 100 ms, which spreads 200 connections over about 15 s.
MISS_PAUSE_STEP_S = 0.001
MAX_MISS_PAUSE_S = 0.1


class Route(Enum):
    """A worker chosen relative to the scan or to earlier requests."""

    ACCEPTING = "accepting"  # the worker that answered the scan's POST
    OTHER = "other"  # the worker after the accepting one
    NEXT = "next"  # round-robin over every worker
    ANY = "any"  # a new connection per request: whichever worker accepts it (no routing)


RouteSpec = int | Route


class RoutingError(RuntimeError):
    """The client could not reach the workers it needs (an inconclusive run)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The outcome of one request: status code, parsed body, serving worker and completion op."""

    http_status: int | None
    body: dict[str, Any] | None
    worker: int | None
    op: Op
    invoke: Op

    @property
    def scan_id(self) -> str | None:
        return self.op.scan_id

    @property
    def status(self) -> str | None:
        """Return the canonical scan status the answer reports, if it reports one."""
        if not isinstance(self.op.value, dict):
            return None
        value = self.op.value.get("status")
        return value if isinstance(value, str) else None

    @property
    def completed(self) -> int | None:
        """Return the strategies completed that the answer reports, if it reports them."""
        if not isinstance(self.op.value, dict):
            return None
        value = self.op.value.get("strategies_completed")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class _PinnedConnection:
    """One keep-alive connection that stays with one worker."""

    def __init__(self, http: httpx.Client, worker_pid: int | None) -> None:
        self.http = http
        self.worker_pid = worker_pid
        self.lock = threading.Lock()


class RoutingClient:
    """Send requests to chosen workers over pinned connections, recording every op."""

    def __init__(
        self,
        base_url: str,
        recorder: HistoryRecorder,
        *,
        token_for: Callable[[str], str] | None = None,
        headers_for: Callable[[str], dict[str, str]] | None = None,
        profile: Profile | None = None,
        virtual_ns: Callable[[], int] = time.time_ns,
        timeout_s: float = 5.0,
    ) -> None:
        self.base_url = base_url
        self.recorder = recorder
        self.profile = profile if profile is not None else _reference_profile()
        if headers_for is None:
            if token_for is None:
                raise ValueError("give token_for (a bearer token per user) or headers_for")
            bearer = token_for

            def headers_for(user: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {bearer(user)}"}

        self._headers_for = headers_for
        self.observing = False
        self._virtual_ns = virtual_ns
        self._timeout_s = timeout_s
        self._connections: list[_PinnedConnection] = []
        self._accepting: dict[str, int] = {}
        self._round_robin = itertools.count()
        self._process_ids = itertools.count(1)
        self._lock = threading.Lock()

    # Connections

    @property
    def worker_count(self) -> int:
        return len(self._connections)

    @property
    def worker_pids(self) -> list[int]:
        return [connection.worker_pid for connection in self._connections
                if connection.worker_pid is not None]

    def observe(self, connections: int) -> None:
        """Open ``connections`` keep-alive connections without knowing their workers.

        This is the mode for a service that names no worker in its answers: steps that
        name worker k use connection k, and ops record no worker.

        NOTE: the connections can all land on one worker, so an observed run can miss a
        bug in per-worker state that a routed run catches.
        """
        self._connections = [_PinnedConnection(self._new_http(), None)
                             for _ in range(connections)]
        self.observing = True
        log.warning("the service names no worker in %s; observing over %d connections "
                    "without routing", self.profile.worker_header, connections)

    def sends_worker_header(self, probe_path: str | None = None) -> bool:
        """Return whether one probe request comes back naming its worker."""
        http = self._new_http()
        try:
            return _probe(http, probe_path or self.profile.probe_path,
                          self.profile.worker_header) is not None
        finally:
            http.close()

    def pin_workers(
        self,
        expected: int,
        *,
        probe_path: str | None = None,
        max_connections: int = MAX_PIN_CONNECTIONS,
        timeout_s: float = 30.0,
        is_alive: Callable[[], None] | None = None,
    ) -> list[int]:
        """Open connections until one is pinned to each of ``expected`` workers.

        Returns the workers' pids, index order. Raises RoutingError when
        ``max_connections`` connections or ``timeout_s`` seconds did not reach them all;
        ``is_alive`` is called between attempts and may raise to stop early.
        """
        probe_path = probe_path or self.profile.probe_path
        header = self.profile.worker_header
        pinned: dict[int, httpx.Client] = {}
        deadline = time.monotonic() + timeout_s
        attempts = 0
        while len(pinned) < expected:
            if attempts >= max_connections or time.monotonic() >= deadline:
                for http in pinned.values():
                    http.close()
                raise RoutingError(
                    f"reached {len(pinned)} of {expected} workers after {attempts} "
                    f"connections in {timeout_s:.0f} s; every worker must answer "
                    f"{probe_path} with an {header} header"
                )
            attempts += 1
            if is_alive is not None:
                is_alive()
            http = self._new_http()
            try:
                response = http.get(probe_path)
                worker_pid = int(response.headers[header])
            except (httpx.HTTPError, KeyError, ValueError) as error:
                log.debug("probe %d of %d found no worker: %s", attempts, max_connections, error)
                http.close()
                time.sleep(0.02)
                continue
            if worker_pid in pinned:
                http.close()
                _pause_after_miss(attempts)
            else:
                pinned[worker_pid] = http

        self._connections = [_PinnedConnection(pinned[pid], pid) for pid in sorted(pinned)]
        self.observing = False
        log.info("pinned one connection to each of %d workers after %d connections: pids %s",
                 expected, attempts, self.worker_pids)
        return self.worker_pids

    def repin(
        self,
        slot: int,
        worker_pid: int | None = None,
        *,
        probe_path: str | None = None,
        max_connections: int = MAX_PIN_CONNECTIONS,
        timeout_s: float = 30.0,
    ) -> int:
        """Pin ``slot`` to a worker again, after its worker was replaced or paused.

        With ``worker_pid``, the slot is pinned to that worker; without, to any worker
        that no other slot holds, such as the replacement of a dead worker. The slot keeps
        its index, so steps that name worker ``slot`` reach the new worker from now on.
        The slot's own connection is kept when it still reaches such a worker. Returns
        the pid now pinned. Raises RoutingError when ``max_connections`` connections or
        ``timeout_s`` seconds found no such worker.
        """
        if not 0 <= slot < self.worker_count:
            raise ValueError(f"worker {slot} does not exist: workers are 0 to "
                             f"{self.worker_count - 1}")
        probe_path = probe_path or self.profile.probe_path
        header = self.profile.worker_header
        others = {connection.worker_pid for index, connection in enumerate(self._connections)
                  if index != slot}

        def wanted(pid: int) -> bool:
            return pid == worker_pid if worker_pid is not None else pid not in others

        old = self._connections[slot]
        with old.lock:
            kept = _probe(old.http, probe_path, header)
            if kept is not None and wanted(kept):
                self._connections[slot] = _PinnedConnection(old.http, kept)
                return kept

            deadline = time.monotonic() + timeout_s
            for attempt in range(1, max_connections + 1):
                if time.monotonic() >= deadline:
                    break
                http = self._new_http()
                pid = _probe(http, probe_path, header)
                if pid is not None and wanted(pid):
                    old.http.close()
                    self._connections[slot] = _PinnedConnection(http, pid)
                    log.info("pinned worker %d again after %d connections: pid %d (was %d)",
                             slot, attempt, pid, old.worker_pid)
                    return pid
                http.close()
                if pid is None:
                    time.sleep(0.02)
                else:
                    _pause_after_miss(attempt)
        target = f"pid {worker_pid}" if worker_pid is not None else "a worker no slot holds"
        raise RoutingError(f"could not pin worker {slot} to {target} within {max_connections} "
                           f"connections or {timeout_s:.0f} s; is that worker alive and "
                           f"answering {probe_path}?")

    def sync_clock(self, seq: int, *, probe_path: str | None = None,
                   timeout_s: float = 10.0) -> None:
        """Send one unrecorded request through each pinned connection until every worker
        reports clock state ``seq`` (or later) in ``X-Harness-Clock-Seq``.

        Raises RoutingError naming the workers that did not take it within ``timeout_s``.
        """
        probe_path = probe_path or self.profile.probe_path
        deadline = time.monotonic() + timeout_s
        pending = list(range(len(self._connections)))
        while pending:
            for index in list(pending):
                connection = self._connections[index]
                try:
                    with connection.lock:
                        response = connection.http.get(probe_path)
                    applied = int(response.headers.get(CLOCK_SEQ_HEADER, "-1"))
                except (httpx.HTTPError, ValueError) as error:
                    log.debug("clock sync of worker %d failed: %s", index, error)
                    continue
                if applied >= seq:
                    pending.remove(index)
            if pending and time.monotonic() >= deadline:
                raise RoutingError(f"workers {pending} did not take clock state {seq} within "
                                   f"{timeout_s:.0f} s; do they run the cluster's gunicorn "
                                   "config (harness.gunicorn_config)?")
            if pending:
                time.sleep(0.01)

    def close(self) -> None:
        for connection in self._connections:
            connection.http.close()
        self._connections = []

    def set_virtual_clock(self, virtual_ns: Callable[[], int]) -> None:
        """Read the virtual time of each op from ``virtual_ns`` from now on."""
        self._virtual_ns = virtual_ns

    def new_process(self) -> int:
        """Return a fresh logical client id for the history."""
        return next(self._process_ids)

    def accepting_worker(self, scan_id: str) -> int | None:
        return self._accepting.get(scan_id)

    # Requests

    def discover(self, user: str, *, route: RouteSpec = Route.NEXT, process: int = 0,
                 scenario: str | None = None, **body: Any) -> Answer:
        """Start a scan as ``user``, with ``body`` as the POST's optional fields.

        The profile decides whether those fields are sent (see ``StartSpec``).
        """
        start = self.profile.start
        answer = self._send(Function.DISCOVER, start.method, start.path, user,
                            scan_id=None, route=route, process=process, scenario=scenario,
                            body=self.profile.start_body(user, body))
        if answer.scan_id is not None and answer.worker is not None:
            self._accepting[answer.scan_id] = answer.worker
        return answer

    def status(self, user: str, scan_id: str, *, route: RouteSpec = Route.NEXT,
               process: int = 0, scenario: str | None = None) -> Answer:
        return self._send(Function.STATUS, "GET", self.profile.status_path(scan_id), user,
                          scan_id=scan_id, route=route, process=process, scenario=scenario)

    def results(self, user: str, scan_id: str, *, route: RouteSpec = Route.NEXT,
                process: int = 0, scenario: str | None = None) -> Answer:
        return self._send(Function.RESULTS, "GET", self.profile.results_path(scan_id), user,
                          scan_id=scan_id, route=route, process=process, scenario=scenario)

    def resolve(self, route: RouteSpec, scan_id: str | None = None) -> int:
        """Return the worker index that ``route`` names for ``scan_id``."""
        count = self.worker_count
        if count == 0:
            raise RoutingError("no worker is pinned; call pin_workers() first")
        if isinstance(route, int):
            if not 0 <= route < count:
                raise ValueError(f"worker {route} does not exist: workers are 0 to {count - 1}")
            return route
        if route is Route.NEXT:
            return next(self._round_robin) % count
        accepting = self._accepting.get(scan_id or "")
        if accepting is None:
            # A scan this client did not start (another user's id, a made-up id) has
            # no accepting worker; fall back to round-robin.
            return next(self._round_robin) % count
        if route is Route.ACCEPTING:
            return accepting
        return (accepting + 1) % count

    def _send(self, f: Function, method: str, path: str, user: str, *, scan_id: str | None,
              route: RouteSpec, process: int, scenario: str | None,
              body: dict[str, Any] | None = None) -> Answer:
        if route is Route.ANY:
            return self._send_unrouted(f, method, path, user, scan_id=scan_id,
                                       process=process, scenario=scenario, body=body)
        worker = self.resolve(route, scan_id)
        connection = self._connections[worker]
        invoke = self.recorder.record(
            type=OpType.INVOKE, f=f, process=process, user=user, scan_id=scan_id,
            worker=worker, worker_pid=connection.worker_pid, scenario=scenario,
            real_ns=self.recorder.real_ns(), virtual_ns=self._virtual_ns(),
            value=body or None,
        )
        headers = self._headers_for(user)

        with connection.lock:
            try:
                response = connection.http.request(method, path, headers=headers,
                                                   json=body if method != "GET" else None)
            except httpx.HTTPError as error:
                return self._complete_unknown(invoke, f, worker, connection, error)

        return self._complete(invoke, f, response, worker)

    def _send_unrouted(self, f: Function, method: str, path: str, user: str, *,
                       scan_id: str | None, process: int, scenario: str | None,
                       body: dict[str, Any] | None) -> Answer:
        """Send one request over a new connection, as a client without routing would."""
        invoke = self.recorder.record(
            type=OpType.INVOKE, f=f, process=process, user=user, scan_id=scan_id,
            scenario=scenario, real_ns=self.recorder.real_ns(),
            virtual_ns=self._virtual_ns(), value=body or None,
        )
        headers = self._headers_for(user)
        with self._new_http() as http:
            try:
                response = http.request(method, path, headers=headers,
                                        json=body if method != "GET" else None)
            except httpx.HTTPError as error:
                op = self.recorder.record(
                    type=OpType.INFO, f=f, process=process, user=user, scan_id=scan_id,
                    scenario=scenario, real_ns=self.recorder.real_ns(),
                    virtual_ns=self._virtual_ns(), invoke_index=invoke.index,
                    error=f"{type(error).__name__}: {error}")
                return Answer(None, None, None, op, invoke)
            answer = self._complete(invoke, f, response, None)
        if f is Function.DISCOVER and answer.scan_id is not None and answer.worker is not None:
            self._accepting[answer.scan_id] = answer.worker
        return answer

    def _complete(self, invoke: Op, f: Function, response: httpx.Response,
                  intended_worker: int | None) -> Answer:
        body = _json_body(response)
        worker_pid = _worker_pid(response, self.profile.worker_header)
        worker = self._index_of(worker_pid)
        if intended_worker is not None and worker != intended_worker and not self.observing:
            log.warning("op %d was routed to worker %d but served by %s (pid %s)",
                        invoke.index, intended_worker, worker, worker_pid)

        op_type, status_code, value = canonical_answer(self.profile, f,
                                                       response.status_code, body)

        scan_id = invoke.scan_id
        if f is Function.DISCOVER and value is not None and op_type is OpType.OK:
            returned = value.get("scan_id")
            scan_id = returned if isinstance(returned, str) else None

        op = self.recorder.record(
            type=op_type, f=f, process=invoke.process, user=invoke.user, scan_id=scan_id,
            worker=worker, worker_pid=worker_pid, scenario=invoke.scenario,
            real_ns=self.recorder.real_ns(), virtual_ns=self._virtual_ns(),
            invoke_index=invoke.index, http_status=status_code, value=value,
            error=None if body is not None or status_code < 300 else response.text[:200],
        )
        return Answer(status_code, body, worker, op, invoke)

    def _complete_unknown(self, invoke: Op, f: Function, worker: int,
                          connection: _PinnedConnection, error: Exception) -> Answer:
        log.warning("op %d to worker %d (pid %s) ended without an answer: %s",
                    invoke.index, worker, connection.worker_pid, error)
        op = self.recorder.record(
            type=OpType.INFO, f=f, process=invoke.process, user=invoke.user,
            scan_id=invoke.scan_id, worker=worker, worker_pid=connection.worker_pid,
            scenario=invoke.scenario, real_ns=self.recorder.real_ns(),
            virtual_ns=self._virtual_ns(), invoke_index=invoke.index,
            error=f"{type(error).__name__}: {error}",
        )
        return Answer(None, None, worker, op, invoke)

    def _index_of(self, worker_pid: int | None) -> int | None:
        if worker_pid is None:
            return None
        for index, connection in enumerate(self._connections):
            if connection.worker_pid == worker_pid:
                return index
        return None

    def _new_http(self) -> httpx.Client:
        # One connection per client, never expired by the client's own timer: an idle
        # connection that reconnects would land on a random worker.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1,
                              keepalive_expiry=None)
        return httpx.Client(base_url=self.base_url, limits=limits, timeout=self._timeout_s,
                            trust_env=False)


def _reference_profile() -> Profile:
    from harness.profile import REFERENCE_PROFILE

    return load_profile(REFERENCE_PROFILE)


_SUMMARIZERS = {
    Function.DISCOVER: Profile.summarize_start,
    Function.STATUS: Profile.summarize_status,
    Function.RESULTS: Profile.summarize_results,
}


def canonical_answer(profile: Profile, f: Function, http_status: int,
                     body: Any) -> tuple[OpType, int, dict[str, Any] | None]:
    """Return a response's op type, canonical status code and value, through the profile.

    Where the profile maps the service's status code to another canonical one, the value
    keeps the service's code in ``service_http_status``. A 5xx on a start request is an
    ``info`` op: the job may have started before the error.
    """
    status_code, value = _SUMMARIZERS[f](profile, http_status, body)
    if status_code != http_status:
        value = {**(value or {}), "service_http_status": http_status}
    if 200 <= status_code < 300:
        op_type = OpType.OK
    elif status_code >= 500 and f is Function.DISCOVER:
        op_type = OpType.INFO
    else:
        op_type = OpType.FAIL
    return op_type, status_code, value


def _pause_after_miss(misses: int) -> None:
    """Wait before the next connection, after ``misses`` reached a worker not wanted."""
    time.sleep(min(misses * MISS_PAUSE_STEP_S, MAX_MISS_PAUSE_S))


def _probe(http: httpx.Client, probe_path: str, header: str = WORKER_HEADER) -> int | None:
    """Return the pid of the worker that answers ``probe_path`` on ``http``, or None."""
    try:
        return int(http.get(probe_path).headers[header])
    except (httpx.HTTPError, KeyError, ValueError) as error:
        log.debug("probe found no worker: %s", error)
        return None


def _json_body(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _worker_pid(response: httpx.Response, header: str = WORKER_HEADER) -> int | None:
    try:
        return int(response.headers[header])
    except (KeyError, ValueError):
        return None
