"""The process history: the ops that one Locust process records, in a JSONL file of its own.

Each Locust process (one, or one per ``--processes`` worker, or one per machine) writes
its simulated users' requests to ``<history dir>/<host>-<pid>.jsonl``. The file has the
shape of every history (see ``harness.history``): a run record, then an invoke op and a
completion op per request, with the same fields and canonical ``value`` summaries that
the routing client writes, through the same API profile. Indices are local to the file;
``harness.load.merge`` renumbers them when it merges the files of a run.

- ``process``: a logical client per simulated user, ``pid * 1_000_000 + n`` for the
  n-th user that this OS process started, so ids are unique across the Locust processes
  of one machine (the merge also renumbers ids that collide across machines);
- ``worker_pid``: from the response's ``X-Worker-Id`` header. The worker *index* is left
  empty here, and the merge fills it in from the cluster's pids;
- ``real_ns``: ``time.monotonic_ns() - origin``, where the harness passes the origin of
  its own recorder, so the ops of every process on the machine share one timeline;
- ``virtual_ns``: the service's time, read from the run's virtual clock file when the
  harness names one (see ``harness.clock_state``), else the wall clock.

The process reads its configuration from environment variables, which work the same for
``scan-harness load``, a plain ``locust -f`` run and Locust workers on other machines:

- ``SCAN_LOAD_PROFILE``: the path of the API profile that the users speak (see
  ``harness.profile``); default the reference service's;
- ``SCAN_LOAD_TOKEN_SECRET``: the secret that signs the users' bearer tokens, required
  with the reference service's profile. Another profile's tokens come from its ``[auth]``
  section; a token function there gets the process's environment as the app's;
- ``SCAN_LOAD_HISTORY_DIR``: the directory for the process histories; unset records
  nothing;
- ``SCAN_LOAD_ORIGIN_NS``: the monotonic origin of ``real_ns``, in ns; the default 0
  makes ``real_ns`` the time since boot;
- ``SCAN_LOAD_RUN_RECORD``: the run record as JSON, the first line of every file;
- ``SCAN_LOAD_SCENARIO``: the value of the ops' ``scenario`` field; default ``load``;
- ``SCAN_LOAD_CONNECTIONS``: keep-alive connections per user, used in turn; default 4;
- ``SCAN_LOAD_SCAN_TIMEOUT_S``: seconds a user polls one scan before it gives up;
  default 15;
- ``SCAN_HARNESS_CLOCK_FILE``: the run's virtual clock file; unset, virtual time is the
  wall clock;
- ``SCAN_LOAD_CSV_PREFIX``: when Locust quits, write its final statistics to
  ``<prefix>_stats.csv``, ``<prefix>_failures.csv`` and ``<prefix>_exceptions.csv``.

This module runs inside Locust, after gevent has patched the standard library, so it
imports only the standard library and harness modules that need nothing else.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from harness.client import canonical_answer
from harness.clock_state import CLOCK_FILE_ENV, ClockState, read_state, real_time_ns
from harness.history import Function, Op, OpType, RunRecord
from harness.profile import REFERENCE_PROFILE, Profile, ProfileError, load_profile

TOKEN_SECRET_ENV = "SCAN_LOAD_TOKEN_SECRET"
PROFILE_ENV = "SCAN_LOAD_PROFILE"
HISTORY_DIR_ENV = "SCAN_LOAD_HISTORY_DIR"
ORIGIN_NS_ENV = "SCAN_LOAD_ORIGIN_NS"
RUN_RECORD_ENV = "SCAN_LOAD_RUN_RECORD"
SCENARIO_ENV = "SCAN_LOAD_SCENARIO"
CONNECTIONS_ENV = "SCAN_LOAD_CONNECTIONS"
SCAN_TIMEOUT_ENV = "SCAN_LOAD_SCAN_TIMEOUT_S"
CSV_PREFIX_ENV = "SCAN_LOAD_CSV_PREFIX"

PROCESS_ID_STRIDE = 1_000_000
"""Process ids of one OS process are ``pid * PROCESS_ID_STRIDE + n``, n below the stride."""

DEFAULT_SCENARIO = "load"


class SettingsError(ValueError):
    """An environment variable of the load has a missing or invalid value."""


class VirtualClockReader:
    """The run's virtual time, from the clock file that the harness writes.

    The file is parsed again only when it was replaced (a new inode or modification
    time), because reading it for each of two ops per request would slow the load down.
    Without a clock file, virtual time is the real wall-clock time.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._version: tuple[int, int] | None = None
        self._state = ClockState()

    def now_ns(self) -> int:
        if self.path is None:
            return real_time_ns()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return real_time_ns()
        version = (stat.st_ino, stat.st_mtime_ns)
        if version != self._version:
            self._state = read_state(self.path)
            self._version = version
        return self._state.now_ns()


@dataclass(frozen=True)
class LoadSettings:
    """The configuration of a Locust process, as the environment variables give it."""

    token_secret: str | None = None
    """The reference service's token secret; other profiles may need none."""

    profile_path: Path | None = None
    """The API profile the users speak; None is the reference service's."""

    history_dir: Path | None = None
    """Directory of the process histories; None records nothing."""

    origin_ns: int = 0
    """``time.monotonic_ns()`` at the start of the run's history."""

    run: RunRecord | None = None
    """The run record that opens each process history; None writes a default one."""

    scenario: str | None = DEFAULT_SCENARIO
    connections: int = 4
    """Keep-alive connections per simulated user, used in turn. Each lands on whichever
    worker accepts it, so one user's polls reach several workers, as behind a load balancer."""

    scan_timeout_s: float = 15.0
    clock_file: Path | None = None
    """The run's virtual clock file; None uses the wall clock."""

    csv_prefix: Path | None = None
    """Path prefix of the final statistics files. Unlike Locust's ``--csv`` files, which
    Locust rewrites every second while it runs, they include the last second of the run."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LoadSettings:
        """Read the settings, raising SettingsError that names the variable and the fix."""
        secret = env.get(TOKEN_SECRET_ENV, "") or None
        profile_path = Path(env[PROFILE_ENV]) if env.get(PROFILE_ENV) else None
        try:
            profile = load_profile(profile_path or REFERENCE_PROFILE)
        except ProfileError as error:
            raise SettingsError(f"{PROFILE_ENV}: {error}") from error
        if secret is None and profile.is_reference:
            raise SettingsError(
                f"{TOKEN_SECRET_ENV} is not set: set it to the token secret of the cluster "
                "under test (scan-harness serve prints it), or set SCAN_LOAD_PROFILE to the "
                "API profile of another service")
        history_dir = env.get(HISTORY_DIR_ENV) or None
        csv_prefix = env.get(CSV_PREFIX_ENV) or None
        clock_file = env.get(CLOCK_FILE_ENV) or None
        run = None
        if env.get(RUN_RECORD_ENV):
            try:
                run = RunRecord.from_json(json.loads(env[RUN_RECORD_ENV]))
            except (ValueError, TypeError) as error:
                raise SettingsError(f"{RUN_RECORD_ENV} is not a valid run record: {error}; "
                                    "unset it to write a default one") from error
        return cls(
            token_secret=secret,
            profile_path=profile_path,
            history_dir=Path(history_dir) if history_dir else None,
            origin_ns=_int_setting(env, ORIGIN_NS_ENV, 0, minimum=0),
            run=run,
            scenario=env.get(SCENARIO_ENV, DEFAULT_SCENARIO) or None,
            connections=_int_setting(env, CONNECTIONS_ENV, 4, minimum=1),
            scan_timeout_s=float(_int_setting(env, SCAN_TIMEOUT_ENV, 15, minimum=1)),
            clock_file=Path(clock_file) if clock_file else None,
            csv_prefix=Path(csv_prefix) if csv_prefix else None,
        )

    def load_profile(self) -> Profile:
        """Return the API profile that the users speak."""
        return load_profile(self.profile_path or REFERENCE_PROFILE)

    def to_env(self) -> dict[str, str]:
        """Return the environment variables that give a Locust process these settings."""
        env = {
            ORIGIN_NS_ENV: str(self.origin_ns),
            SCENARIO_ENV: self.scenario or "",
            CONNECTIONS_ENV: str(self.connections),
            SCAN_TIMEOUT_ENV: str(round(self.scan_timeout_s)),
        }
        if self.token_secret is not None:
            env[TOKEN_SECRET_ENV] = self.token_secret
        if self.profile_path is not None:
            env[PROFILE_ENV] = str(self.profile_path)
        if self.history_dir is not None:
            env[HISTORY_DIR_ENV] = str(self.history_dir)
        if self.clock_file is not None:
            env[CLOCK_FILE_ENV] = str(self.clock_file)
        if self.csv_prefix is not None:
            env[CSV_PREFIX_ENV] = str(self.csv_prefix)
        if self.run is not None:
            env[RUN_RECORD_ENV] = json.dumps(self.run.to_json())
        return env


def _int_setting(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    text = env.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise SettingsError(f"{name}={text!r} is invalid: it must be an integer of at least "
                            f"{minimum}, or unset for {default}")
    return value


class ProcessHistory:
    """The process history of the current OS process, opened at its first op.

    Opening late matters under ``locust --processes``: Locust imports the locustfile,
    then forks its workers, and each fork must write a file of its own.
    """

    def __init__(self, settings: LoadSettings, profile: Profile) -> None:
        self.settings = settings
        self.profile = profile
        self.clock = VirtualClockReader(settings.clock_file)
        self._pid: int | None = None
        self._file: IO[str] | None = None
        self._opened = False  # whether this OS process has created its file already
        self._next_index = 0
        self._next_process = 0

    @property
    def enabled(self) -> bool:
        return self.settings.history_dir is not None

    @property
    def path(self) -> Path | None:
        """The file of the current OS process, or None when nothing is recorded."""
        if self.settings.history_dir is None:
            return None
        return self.settings.history_dir / f"{socket.gethostname()}-{os.getpid()}.jsonl"

    def new_process_id(self) -> int:
        """Return a logical client id that no other process of this machine uses."""
        self._follow_fork()
        if self._next_process >= PROCESS_ID_STRIDE:
            raise RuntimeError(f"one Locust process started {PROCESS_ID_STRIDE} users; "
                               "process ids would collide with another OS process's")
        process = os.getpid() * PROCESS_ID_STRIDE + self._next_process
        self._next_process += 1
        return process

    def invoke(self, f: Function, *, process: int, user: str, scan_id: str | None,
               value: dict[str, Any] | None) -> Op | None:
        """Record a request about to go out; None when recording is off."""
        if not self.enabled:
            return None
        return self._write(Op(
            index=0, type=OpType.INVOKE, f=f, process=process,
            real_ns=time.monotonic_ns() - self.settings.origin_ns,
            virtual_ns=self.clock.now_ns(), user=user, scan_id=scan_id,
            value=value or None, scenario=self.settings.scenario,
        ))

    def complete(self, invoke: Op | None, *, status_code: int, body: dict[str, Any] | None,
                 worker_pid: int | None, text: str | None) -> Op | None:
        """Record the response to ``invoke``, reduced through the profile to the canonical
        status code and value, as the routing client records it."""
        if invoke is None:
            return None
        op_type, canonical_status, value = canonical_answer(self.profile, invoke.f,
                                                            status_code, body)
        scan_id = invoke.scan_id
        if invoke.f is Function.DISCOVER and op_type is OpType.OK and value is not None:
            returned = value.get("scan_id")
            scan_id = returned if isinstance(returned, str) else None
        error = None if body is not None or canonical_status < 300 else (text or "")[:200]
        return self._write(self._completion(
            invoke, op_type, scan_id=scan_id, worker_pid=worker_pid,
            http_status=canonical_status, value=value, error=error,
        ))

    def complete_unknown(self, invoke: Op | None, error: str) -> Op | None:
        """Record that ``invoke`` ended without a response (an ``info`` op)."""
        if invoke is None:
            return None
        return self._write(self._completion(invoke, OpType.INFO, scan_id=invoke.scan_id,
                                            worker_pid=None, http_status=None, value=None,
                                            error=error))

    def flush(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.flush()

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def _completion(self, invoke: Op, op_type: OpType, **fields: Any) -> Op:
        return Op(
            index=0, type=op_type, f=invoke.f, process=invoke.process,
            real_ns=time.monotonic_ns() - self.settings.origin_ns,
            virtual_ns=self.clock.now_ns(), user=invoke.user, invoke_index=invoke.index,
            scenario=invoke.scenario, **fields,
        )

    def _write(self, op: Op) -> Op:
        """Give ``op`` the next index of this file and append it."""
        self._follow_fork()
        if self._file is None:
            self._open()
        assert self._file is not None
        op.index = self._next_index
        self._file.write(json.dumps(op.to_json(), separators=(",", ":")) + "\n")
        self._next_index += 1
        return op

    def _open(self) -> None:
        path = self.path
        assert path is not None
        if self._opened:
            # An op after close(), such as a user still stopping when Locust quits, is
            # appended: reopening for writing would truncate the file.
            self._file = path.open("a", encoding="utf-8")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("w", encoding="utf-8")
        self._opened = True
        run = self.settings.run or RunRecord(seed=0, store="unknown")
        self._file.write(json.dumps(run.to_json(), separators=(",", ":")) + "\n")

    def _follow_fork(self) -> None:
        """Start afresh in a forked child: a new file, new indices, new process ids."""
        pid = os.getpid()
        if self._pid == pid:
            return
        # The parent's file object, if any, is dropped without a flush, which would write
        # the parent's buffered lines a second time.
        self._file = None
        self._opened = False
        self._pid = pid
        self._next_index = 0
        self._next_process = 0
