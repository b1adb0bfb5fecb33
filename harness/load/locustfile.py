"""Locust users of the reference scan service, recording every request into a history.

Each simulated user has a user id and a bearer token of its own. It starts a scan, polls
its status with backoff until the scan ends, fetches the results, and now and then reads
another user's scan, which must return not_found. It spreads its requests over a few
keep-alive connections, so that one scan's polls reach several gunicorn workers, as they
would behind a load balancer.

Locust counts a request as failed only when it got a 5xx or no response. A 404, a
``not_found`` or a 202 is an answer about the scan, which the checker judges from the
history; the Locust table shows transport health.

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

from harness.client import API_PREFIX, WORKER_HEADER
from harness.history import Function, Op
from harness.load.recording import LoadSettings, ProcessHistory, SettingsError
from service_under_test.auth import mint_token

log = logging.getLogger("harness.load.locustfile")

FIRST_POLL_PAUSE_S = 0.05
MAX_POLL_PAUSE_S = 0.5
POLL_BACKOFF = 1.5
MAX_NOT_FOUND_POLLS = 5
"""A user stops polling a scan after this many not_found responses in a row."""

CROSS_USER_READ_RATE = 0.1
"""Share of finished scans after which the user reads another user's recent scan."""

TERMINAL_STATES = frozenset({"complete", "failed"})

try:
    SETTINGS: LoadSettings | None = LoadSettings.from_env(os.environ)
    SETTINGS_ERROR: SettingsError | None = None
except SettingsError as error:
    SETTINGS = None
    SETTINGS_ERROR = error

HISTORY = ProcessHistory(SETTINGS) if SETTINGS is not None else None
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


@dataclass(frozen=True, slots=True)
class Reply:
    """The parts of a response that a user reads: the status code (0 for no response) and
    the JSON body."""

    status_code: int
    body: dict[str, Any] | None

    @property
    def scan_status(self) -> str | None:
        value = self.body.get("status") if self.body is not None else None
        return value if isinstance(value, str) else None


class ScanUser(FastHttpUser):
    """A user who starts scans, polls each one until it ends and fetches its results."""

    wait_time = between(0.1, 0.5)
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        assert SETTINGS is not None
        assert HISTORY is not None
        self.settings = SETTINGS
        self.history = HISTORY
        self.process = HISTORY.new_process_id()
        self.user_id = f"load-{self.process}"
        token = mint_token(SETTINGS.token_secret, self.user_id)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.rng = random.Random(self.process)
        sessions = [self.client] + [self._new_session()
                                    for _ in range(SETTINGS.connections - 1)]
        self.sessions = itertools.cycle(sessions)

    @task
    def scan(self) -> None:
        accepted = self._send(Function.DISCOVER, "POST", "/discover", "/discover", body={})
        scan_id = accepted.body.get("scan_id") if accepted.body is not None else None
        if accepted.status_code != 200 or not isinstance(scan_id, str):
            return
        RECENT_SCANS.append((self.user_id, scan_id))

        if self._poll_until_terminal(scan_id) is not None:
            self._send(Function.RESULTS, "GET", f"/results/{scan_id}", "/results/[id]",
                       scan_id=scan_id)
        if self.rng.random() < CROSS_USER_READ_RATE:
            self._read_other_users_scan()

    def _poll_until_terminal(self, scan_id: str) -> str | None:
        """Poll until the scan is complete or failed; None when the user gave up."""
        deadline = time.monotonic() + self.settings.scan_timeout_s
        pause_s = FIRST_POLL_PAUSE_S
        not_found = 0
        while time.monotonic() < deadline:
            reply = self._send(Function.STATUS, "GET", f"/status/{scan_id}", "/status/[id]",
                               scan_id=scan_id)
            state = reply.scan_status
            if state in TERMINAL_STATES:
                return state
            not_found = not_found + 1 if state == "not_found" else 0
            if not_found >= MAX_NOT_FOUND_POLLS:
                return None
            gevent.sleep(pause_s)
            pause_s = min(pause_s * POLL_BACKOFF, MAX_POLL_PAUSE_S)
        return None

    def _read_other_users_scan(self) -> None:
        others = [entry for entry in RECENT_SCANS if entry[0] != self.user_id]
        if others:
            _, scan_id = self.rng.choice(others)
            self._send(Function.STATUS, "GET", f"/status/{scan_id}", "/status/[id]",
                       scan_id=scan_id)

    def _send(self, f: Function, method: str, path: str, name: str, *,
              scan_id: str | None = None, body: dict[str, Any] | None = None) -> Reply:
        """Send one request on the next connection, recording an invoke and a completion."""
        invoke = self.history.invoke(f, process=self.process, user=self.user_id,
                                     scan_id=scan_id, value=body)
        session = next(self.sessions)
        try:
            response = session.request(method, API_PREFIX + path, name=name, json=body,
                                       headers=self.headers, catch_response=True)
        except BaseException as error:
            # Locust stops a user by killing its greenlet, possibly mid-request: the
            # outcome is unknown.
            self.history.complete_unknown(invoke, f"{type(error).__name__}: request cut")
            raise
        return self._complete(invoke, response)

    def _complete(self, invoke: Op | None, response: ResponseContextManager) -> Reply:
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
        self.history.complete(invoke, status_code=status_code, body=body,
                              worker_pid=_worker_pid(response),
                              text=response.text if body is None else None)
        return Reply(status_code, body)

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


def _worker_pid(response: ResponseContextManager) -> int | None:
    headers = response.headers
    value = headers.get(WORKER_HEADER) if headers is not None else None
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
