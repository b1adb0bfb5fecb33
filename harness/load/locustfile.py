"""Locust users of a job API, recording every request into a history.

The users speak the API through its profile (``SCAN_LOAD_PROFILE``; the reference scan
service's by default, see ``harness.profile``): each one has a user id and the token
that the profile's ``[auth]`` gives it. It starts a job, polls its status with backoff
until the job ends, fetches the results, and now and then reads another user's job,
which must return not_found. It spreads its requests over a few keep-alive connections,
so that one job's polls reach several gunicorn workers, as they would behind a load
balancer.

Locust counts a request as failed only when it got a 5xx or no response. A 404, a
``not_found`` or a 202 is an answer about the job, which the checker judges from the
history; the Locust table shows transport health. Its rows are named by the profile's
path templates, such as ``/api/v1/opportunities/status/{job_id}``.

Run it against any running cluster of the reference service (``scan-harness serve``
prints the secret and the URL)::

    SCAN_LOAD_TOKEN_SECRET=<secret> SCAN_LOAD_HISTORY_DIR=load-history \\
        locust -f harness/load/locustfile.py --host http://127.0.0.1:<port>

then merge the process histories and judge them::

    scan-harness merge-history history.jsonl load-history/*.jsonl
    scan-harness check history.jsonl

The environment variables are described in ``harness.load.recording``.
"""

from __future__ import annotations

import atexit
import csv
import itertools
import logging
import os
import random
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import gevent
from locust import FastHttpUser, between, events, task
from locust.contrib.fasthttp import FastHttpSession, ResponseContextManager
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from harness.client import canonical_answer
from harness.history import Function, Op
from harness.load.recording import LoadSettings, ProcessHistory, SettingsError
from harness.profile import COMPLETE, FAILED, NOT_FOUND, Profile, token_source
from harness.profiles import REFERENCE_SECRET_ENV

log = logging.getLogger("harness.load.locustfile")

FIRST_POLL_PAUSE_S = 0.05
MAX_POLL_PAUSE_S = 0.5
POLL_BACKOFF = 1.5
MAX_NOT_FOUND_POLLS = 5
"""A user stops polling a scan after this many not_found responses in a row."""

CROSS_USER_READ_RATE = 0.1
"""Share of finished scans after which the user reads another user's recent scan."""

TERMINAL_STATES = frozenset({COMPLETE, FAILED})

try:
    SETTINGS: LoadSettings | None = LoadSettings.from_env(os.environ)
    SETTINGS_ERROR: SettingsError | None = None
except SettingsError as error:
    SETTINGS = None
    SETTINGS_ERROR = error

PROFILE: Profile | None = SETTINGS.load_profile() if SETTINGS is not None else None
HISTORY = ProcessHistory(SETTINGS, PROFILE) if SETTINGS is not None and PROFILE else None
RECENT_SCANS: deque[tuple[str, str]] = deque(maxlen=100)
"""(user, scan id) of the latest scans that users of this process started."""


@events.init.add_listener
def _check_settings(environment: Environment, **_: Any) -> None:
    # A master runs no users, so it needs no secret; every other process does.
    if isinstance(environment.runner, MasterRunner):
        return
    if SETTINGS_ERROR is not None:
        sys.exit(f"error: {SETTINGS_ERROR}")
    if HISTORY is not None and not HISTORY.enabled:
        log.warning("recording nothing: set SCAN_LOAD_HISTORY_DIR to keep a history "
                    "that scan-harness check can judge")


@events.test_stop.add_listener
def _flush_history(**_: Any) -> None:
    if HISTORY is not None:
        HISTORY.flush()


@events.quitting.add_listener
def _close_history(**_: Any) -> None:
    if HISTORY is not None:
        HISTORY.close()


@events.quitting.add_listener
def _write_final_stats(environment: Environment, **_: Any) -> None:
    # Workers send their statistics to the master, which writes them for everyone.
    if SETTINGS is None or SETTINGS.csv_prefix is None:
        return
    if isinstance(environment.runner, WorkerRunner):
        return
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    prefix = SETTINGS.csv_prefix
    for suffix, write in (("stats", writer.requests_csv), ("failures", writer.failures_csv),
                          ("exceptions", writer.exceptions_csv)):
        with open(f"{prefix}_{suffix}.csv", "w", newline="", encoding="utf-8") as file:
            write(csv.writer(file))


if HISTORY is not None:
    atexit.register(HISTORY.close)


def _auth_environment(settings: LoadSettings) -> dict[str, str]:
    """Return what a profile's token function gets as the app's environment: this
    process's, with the reference service's secret when one is set."""
    env = dict(os.environ)
    if settings.token_secret is not None:
        env[REFERENCE_SECRET_ENV] = settings.token_secret
    return env


@dataclass(frozen=True, slots=True)
class Reply:
    """The part of a response that a user reads: the canonical status code (0 for no
    response) and value, as the checker reads them (see ``harness.history.Op``)."""

    status_code: int
    value: dict[str, Any] | None

    @property
    def job_status(self) -> str | None:
        state = self.value.get("status") if self.value is not None else None
        return state if isinstance(state, str) else None

    @property
    def job_id(self) -> str | None:
        job_id = self.value.get("scan_id") if self.value is not None else None
        return job_id if isinstance(job_id, str) else None


class ScanUser(FastHttpUser):
    """A user who starts jobs, polls each one until it ends and fetches its results."""

    wait_time = between(0.1, 0.5)
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        assert SETTINGS is not None
        assert PROFILE is not None
        assert HISTORY is not None
        self.settings = SETTINGS
        self.profile = PROFILE
        self.history = HISTORY
        self.process = HISTORY.new_process_id()
        self.user_id = f"load-{self.process}"
        self.headers = token_source(PROFILE.auth, _auth_environment(SETTINGS))(self.user_id)
        self.rng = random.Random(self.process)
        sessions = [self.client] + [self._new_session()
                                    for _ in range(SETTINGS.connections - 1)]
        self.sessions = itertools.cycle(sessions)

    @task
    def scan(self) -> None:
        start = self.profile.start
        accepted = self._send(Function.DISCOVER, start.method, start.path, start.path,
                              body=self.profile.start_body(self.user_id, {}))
        scan_id = accepted.job_id
        if accepted.status_code != 200 or scan_id is None:
            return
        RECENT_SCANS.append((self.user_id, scan_id))

        if self._poll_until_terminal(scan_id) is not None:
            self._send(Function.RESULTS, "GET", self.profile.results_path(scan_id),
                       self.profile.results.path, scan_id=scan_id)
        if self.rng.random() < CROSS_USER_READ_RATE:
            self._read_other_users_scan()

    def _status(self, scan_id: str) -> Reply:
        return self._send(Function.STATUS, "GET", self.profile.status_path(scan_id),
                          self.profile.status.path, scan_id=scan_id)

    def _poll_until_terminal(self, scan_id: str) -> str | None:
        """Poll until the scan is complete or failed; None when the user gave up."""
        deadline = time.monotonic() + self.settings.scan_timeout_s
        pause_s = FIRST_POLL_PAUSE_S
        not_found = 0
        while time.monotonic() < deadline:
            state = self._status(scan_id).job_status
            if state in TERMINAL_STATES:
                return state
            not_found = not_found + 1 if state == NOT_FOUND else 0
            if not_found >= MAX_NOT_FOUND_POLLS:
                return None
            gevent.sleep(pause_s)
            pause_s = min(pause_s * POLL_BACKOFF, MAX_POLL_PAUSE_S)
        return None

    def _read_other_users_scan(self) -> None:
        others = [entry for entry in RECENT_SCANS if entry[0] != self.user_id]
        if others:
            _, scan_id = self.rng.choice(others)
            self._status(scan_id)

    def _send(self, f: Function, method: str, path: str, name: str, *,
              scan_id: str | None = None, body: dict[str, Any] | None = None) -> Reply:
        """Send one request on the next connection, recording an invoke and a completion."""
        invoke = self.history.invoke(f, process=self.process, user=self.user_id,
                                     scan_id=scan_id, value=body)
        session = next(self.sessions)
        try:
            response = session.request(method, path, name=name,
                                       json=body if method != "GET" else None,
                                       headers=self.headers, catch_response=True)
        except BaseException as error:
            # Locust stops a user by killing its greenlet, possibly mid-request: the
            # outcome is unknown.
            self.history.complete_unknown(invoke, f"{type(error).__name__}: request cut")
            raise
        return self._complete(f, invoke, response)

    def _complete(self, f: Function, invoke: Op | None,
                  response: ResponseContextManager) -> Reply:
        with response:
            status_code = response.status_code
            if status_code == 0:
                error = getattr(response, "error", None)
                response.failure(f"no response: {error!r}")
                self.history.complete_unknown(invoke, f"{type(error).__name__}: {error}")
                return Reply(0, None)
            if status_code >= 500:
                response.failure(f"HTTP {status_code}")
            else:
                response.success()

        body = _json_body(response)
        worker_pid = _worker_pid(response, self.profile.worker_header)
        op = self.history.complete(invoke, status_code=status_code, body=body,
                                   worker_pid=worker_pid,
                                   text=response.text if body is None else None)
        if op is not None:
            # The recorded op carries the canonical status and value already.
            return Reply(op.http_status or 0, op.value)
        _, canonical_status, value = canonical_answer(self.profile, f, status_code, body)
        return Reply(canonical_status, value)

    def _new_session(self) -> FastHttpSession:
        return FastHttpSession(
            base_url=self.host, request_event=self.environment.events.request, user=self,
            network_timeout=self.network_timeout, connection_timeout=self.connection_timeout,
            max_retries=0, insecure=self.insecure, concurrency=1,
        )


def _json_body(response: ResponseContextManager) -> dict[str, Any] | None:
    try:
        body = response.json()
    except (ValueError, TypeError):
        return None
    return body if isinstance(body, dict) else None


def _worker_pid(response: ResponseContextManager, header: str) -> int | None:
    headers = response.headers
    value = headers.get(header) if headers is not None else None
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
