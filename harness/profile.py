"""API profiles: how the harness talks to a job API it did not write.

A *profile* is a TOML file that describes one job-polling API: how a simulated user
starts a job and authenticates, where the job id and the promised total are in the start
answer, the status and results URL templates (``{job_id}``), where the state and progress
fields are in a status answer, and which values and HTTP statuses mean running, complete,
failed and not found. The routing client builds every request from the profile and
reduces every answer to the *canonical op value* the checker reads (see
``harness.history.Op``), so the checker never sees a service's own field names.

A minimal profile::

    name = "jobs"
    retention_s = 600
    store_url_env = ["REDIS_URL"]

    [auth]
    kind = "bearer"
    token = "token-{user}"

    [start]
    path = "/jobs"
    job_id = "job.id"
    total = "job.steps"

    [status]
    path = "/jobs/{job_id}"
    state = "state"
    completed = "done_steps"
    total = "steps"
    running = ["queued", "running"]
    complete = ["done"]
    failed = ["error"]
    not_found_http = [404]

    [results]
    path = "/jobs/{job_id}/output"
    entries = "items"
    running_http = [409]
    not_found_http = [404]

``load_profile(path)`` validates the file strictly: a missing field, a value of the wrong
type, an unknown key or a template with an unknown placeholder raises ProfileError, whose
message names the field and the fix. The reference scan service's own profile ships as
``harness/profiles/reference.toml``.
"""

from __future__ import annotations

import importlib
import string
import subprocess
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
REFERENCE_PROFILE = PROFILES_DIR / "reference.toml"

AuthKind = Literal["none", "bearer", "header", "command", "function"]
AUTH_KINDS: tuple[str, ...] = ("none", "bearer", "header", "command", "function")

# The canonical states of a job, as the checker names them.
RUNNING = "scanning"
COMPLETE = "complete"
FAILED = "failed"
NOT_FOUND = "not_found"

# Seconds a token command may take before the run stops with an error.
TOKEN_COMMAND_TIMEOUT_S = 10.0


class ProfileError(ValueError):
    """An invalid profile: the message names the file, the field and the fix."""


@dataclass(frozen=True)
class AuthSpec:
    """How each simulated user authenticates.

    ``bearer`` sends ``token`` (a template with ``{user}``) as ``Authorization: Bearer``;
    ``header`` sends ``value`` (a template) in ``header``; ``command`` runs ``command``
    (an argv whose items may contain ``{user}``) and sends its stripped output as a bearer
    token; ``function`` calls ``module:function`` with the user and the app's environment
    and sends the returned string as a bearer token; ``none`` sends nothing.
    """

    kind: AuthKind = "none"
    token: str = "{user}"
    header: str = "Authorization"
    value: str = "{user}"
    scheme: str = "Bearer"
    command: tuple[str, ...] = ()
    function: str = ""


@dataclass(frozen=True)
class StartSpec:
    """How to start a job, and where the job id and the promised total are in the answer."""

    path: str
    job_id: str
    method: str = "POST"
    body: Mapping[str, Any] = field(default_factory=dict)
    total: str = ""
    expected_total: int | None = None
    # Whether the fields a scenario adds to its start request (such as ``symbols``) are
    # sent. They fit the reference service only, so other profiles leave them out.
    forward_scenario_fields: bool = False


@dataclass(frozen=True)
class StatusSpec:
    """Where a status answer keeps the state and progress, and what each state value means."""

    path: str
    state: str
    completed: str
    total: str
    running: tuple[str, ...]
    complete: tuple[str, ...]
    failed: tuple[str, ...] = ()
    not_found: tuple[str, ...] = ()
    not_found_http: tuple[int, ...] = ()


@dataclass(frozen=True)
class ResultsSpec:
    """Where a results answer keeps its entries, and which HTTP statuses mean what.

    ``entry_id`` names the field that identifies an entry; without it, entries are
    identified by position. ``state`` is optional: without it, a 2xx answer means complete.
    """

    path: str
    entries: str
    entry_id: str = ""
    state: str = ""
    running_http: tuple[int, ...] = (202,)
    not_found_http: tuple[int, ...] = (404,)


@dataclass(frozen=True)
class Profile:
    """A validated API profile (see the module docstring)."""

    name: str
    start: StartSpec
    status: StatusSpec
    results: ResultsSpec
    auth: AuthSpec = AuthSpec()
    retention_s: float = 600.0
    store_url_env: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    worker_header: str = "X-Worker-Id"
    probe_path: str = "/"
    source: str = ""

    @property
    def is_reference(self) -> bool:
        return Path(self.source) == REFERENCE_PROFILE

    def status_path(self, job_id: str) -> str:
        return self.status.path.format(job_id=job_id)

    def results_path(self, job_id: str) -> str:
        return self.results.path.format(job_id=job_id)

    def start_body(self, user: str, scenario_fields: Mapping[str, Any]) -> dict[str, Any]:
        body = {key: _fill_user(value, user) for key, value in self.start.body.items()}
        if self.start.forward_scenario_fields:
            body.update(scenario_fields)
        return body

    # Canonical values: what the checker reads (see harness.history.Op).

    def summarize_start(self, http_status: int,
                        body: Any) -> tuple[int, dict[str, Any] | None]:
        """Return the canonical status code and value of a start answer."""
        if not 200 <= http_status < 300:
            return http_status, None
        job_id = dotted_get(body, self.start.job_id)
        total: Any = self.start.expected_total
        if self.start.total:
            total = dotted_get(body, self.start.total)
        scan_id = str(job_id) if isinstance(job_id, str | int) else None
        return 200, {"scan_id": scan_id, "total_strategies": total}

    def summarize_status(self, http_status: int,
                         body: Any) -> tuple[int, dict[str, Any] | None]:
        """Return the canonical status code and value of a status answer."""
        spec = self.status
        if http_status in spec.not_found_http:
            return 200, {"status": NOT_FOUND}
        if not 200 <= http_status < 300 or body is None:
            return http_status, None
        state = self._canonical_state(dotted_get(body, spec.state))
        value: dict[str, Any] = {"status": state}
        if state == NOT_FOUND:
            return 200, value
        completed = dotted_get(body, spec.completed)
        total = dotted_get(body, spec.total)
        if completed is None and total is None:
            value["progress"] = None
        else:
            value["strategies_completed"] = completed
            value["total_strategies"] = total
        return 200, value

    def summarize_results(self, http_status: int,
                          body: Any) -> tuple[int, dict[str, Any] | None]:
        """Return the canonical status code and value of a results answer.

        Canonical codes are those of the reference service: 200 with the entries, 202
        while running, 404 for an unknown job.
        """
        spec = self.results
        if http_status in spec.not_found_http:
            return 404, {"status": NOT_FOUND}
        if http_status in spec.running_http:
            return 202, self._running_results(body)
        if not 200 <= http_status < 300 or body is None:
            return http_status, None
        state = COMPLETE
        if spec.state:
            state = self._canonical_state(dotted_get(body, spec.state))
        if state == RUNNING:
            return 202, self._running_results(body)
        if state == NOT_FOUND:
            return 404, {"status": NOT_FOUND}
        value: dict[str, Any] = {"status": state}
        entries = dotted_get(body, spec.entries)
        if isinstance(entries, list):
            value["strategy_ids"] = [self._entry_id(index, entry)
                                     for index, entry in enumerate(entries)]
        return 200, value

    def _running_results(self, body: Any) -> dict[str, Any]:
        """Return the value of a results answer that says the job still runs.

        It keeps the progress when the answer carries it where a status answer does.
        """
        value: dict[str, Any] = {"status": RUNNING}
        completed = dotted_get(body, self.status.completed)
        total = dotted_get(body, self.status.total)
        if completed is not None or total is not None:
            value["strategies_completed"] = completed
            value["total_strategies"] = total
        return value

    def _canonical_state(self, raw: Any) -> Any:
        spec = self.status
        for canonical, values in ((RUNNING, spec.running), (COMPLETE, spec.complete),
                                  (FAILED, spec.failed), (NOT_FOUND, spec.not_found)):
            if raw in values:
                return canonical
        # An undeclared value stays as it is; the checker reports it as outside the contract.
        return raw

    def _entry_id(self, index: int, entry: Any) -> Any:
        if not self.results.entry_id:
            return str(index)
        if not isinstance(entry, dict):
            return None
        # The checker compares ids as strings; a numeric id such as a step number fits too.
        entry_id = dotted_get(entry, self.results.entry_id)
        return str(entry_id) if isinstance(entry_id, str | int) else None


def dotted_get(data: Any, path: str) -> Any:
    """Return the value at a dotted path such as ``job.id`` (list items by number), or None."""
    current = data
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def _fill_user(value: Any, user: str) -> Any:
    if isinstance(value, str):
        return value.replace("{user}", user)
    if isinstance(value, dict):
        return {key: _fill_user(item, user) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill_user(item, user) for item in value]
    return value


# Tokens


def token_source(auth: AuthSpec, app_env: Mapping[str, str]) -> Callable[[str], dict[str, str]]:
    """Return a function from a user to the headers that authenticate that user.

    Tokens from a command or a function are minted once per user and cached.
    """
    cache: dict[str, dict[str, str]] = {}

    def bearer(token: str) -> dict[str, str]:
        return {auth.header: f"{auth.scheme} {token}".strip()}

    def headers_for(user: str) -> dict[str, str]:
        if user in cache:
            return cache[user]
        if auth.kind == "none":
            headers: dict[str, str] = {}
        elif auth.kind == "bearer":
            headers = bearer(auth.token.replace("{user}", user))
        elif auth.kind == "header":
            headers = {auth.header: auth.value.replace("{user}", user)}
        elif auth.kind == "command":
            headers = bearer(_run_token_command(auth.command, user))
        else:
            headers = bearer(_call_token_function(auth.function, user, app_env))
        cache[user] = headers
        return headers

    return headers_for


def _run_token_command(command: tuple[str, ...], user: str) -> str:
    argv = [part.replace("{user}", user) for part in command]
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, check=True,
                                   timeout=TOKEN_COMMAND_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as error:
        raise ProfileError(f"auth.command {argv} failed for user {user!r}: {error}; the "
                           "command must print the user's token and exit 0") from error
    token = completed.stdout.strip()
    if not token:
        raise ProfileError(f"auth.command {argv} printed no token for user {user!r}")
    return token


def _call_token_function(reference: str, user: str, app_env: Mapping[str, str]) -> str:
    function = resolve_function(reference, "auth.function")
    token = function(user, app_env)
    if not isinstance(token, str) or not token:
        raise ProfileError(f"auth.function {reference} returned {token!r} for user {user!r}; "
                           "it must return the token as a non-empty string")
    return token


def resolve_function(reference: str, field_name: str) -> Callable[..., Any]:
    """Import ``module:function``; raise ProfileError naming ``field_name`` if it fails."""
    module_name, _, attribute = reference.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ProfileError(f"{field_name} {reference!r} cannot be imported ({error}); write "
                           "it as module:function, importable from the harness's "
                           "Python path") from error
    if not callable(function):
        raise ProfileError(f"{field_name} {reference!r} is not callable")
    return function  # type: ignore[no-any-return]


# Loading and validation


def load_profile(path: Path | str) -> Profile:
    """Read and validate the profile at ``path``; raise ProfileError naming the bad field."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ProfileError(f"profile {path} not found; pass the path of a TOML API profile "
                           "(docs/own-service.md shows one)") from error
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"profile {path} is not valid TOML: {error}") from error
    return parse_profile(raw, source=str(path.resolve()))


def parse_profile(raw: Mapping[str, Any], *, source: str = "<profile>") -> Profile:
    """Validate a parsed profile table; raise ProfileError naming the bad field."""
    reader = _Reader(raw, source, "")
    top = reader.fields({"name", "retention_s", "store_url_env", "env", "worker_header",
                         "probe_path", "auth", "start", "status", "results"})
    start = _parse_start(top.table("start", required=True))
    status = _parse_status(top.table("status", required=True))
    results = _parse_results(top.table("results", required=True))
    auth = _parse_auth(top.table("auth", required=False))
    retention_s = top.number("retention_s", required=True)
    if retention_s <= 0:
        top.fail("retention_s", f"must be positive, got {retention_s}",
                 "give the job's retention time in seconds")
    env = top.table("env", required=False)
    for key in env.raw:
        env.string(key, required=True)
    return Profile(
        name=top.string("name", required=True),
        start=start, status=status, results=results, auth=auth,
        retention_s=float(retention_s),
        store_url_env=top.strings("store_url_env", default=()),
        env={key: str(value) for key, value in env.raw.items()},
        worker_header=top.string("worker_header", default="X-Worker-Id"),
        probe_path=top.path_template("probe_path", (), default="/"),
        source=source,
    )


def _parse_start(section: _Reader) -> StartSpec:
    section.fields({"method", "path", "body", "job_id", "total", "expected_total",
                    "forward_scenario_fields"})
    method = section.string("method", default="POST").upper()
    if method not in ("POST", "PUT", "GET"):
        section.fail("method", f"is {method!r}", "use POST, PUT or GET")
    total = section.string("total", default="")
    expected = section.raw.get("expected_total")
    if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool)
                                 or expected < 0):
        section.fail("expected_total", f"is {expected!r}", "give a whole number of steps")
    if not total and expected is None:
        section.fail("total", "is missing, and so is expected_total",
                     "name the dotted path of the promised total in the start answer "
                     "(total = \"job.steps\"), or give expected_total = N")
    return StartSpec(
        path=section.path_template("path", (), required=True),
        job_id=section.string("job_id", required=True),
        method=method,
        body=section.table("body", required=False).raw,
        total=total,
        expected_total=expected,
        forward_scenario_fields=section.boolean("forward_scenario_fields", default=False),
    )


def _parse_status(section: _Reader) -> StatusSpec:
    section.fields({"path", "state", "completed", "total", "running", "complete", "failed",
                    "not_found", "not_found_http"})
    return StatusSpec(
        path=section.path_template("path", ("job_id",), required=True),
        state=section.string("state", required=True),
        completed=section.string("completed", required=True),
        total=section.string("total", required=True),
        running=section.strings("running", required=True),
        complete=section.strings("complete", required=True),
        failed=section.strings("failed", default=()),
        not_found=section.strings("not_found", default=()),
        not_found_http=section.http_statuses("not_found_http", default=()),
    )


def _parse_results(section: _Reader) -> ResultsSpec:
    section.fields({"path", "entries", "entry_id", "state", "running_http", "not_found_http"})
    return ResultsSpec(
        path=section.path_template("path", ("job_id",), required=True),
        entries=section.string("entries", required=True),
        entry_id=section.string("entry_id", default=""),
        state=section.string("state", default=""),
        running_http=section.http_statuses("running_http", default=(202,)),
        not_found_http=section.http_statuses("not_found_http", default=(404,)),
    )


def _parse_auth(section: _Reader) -> AuthSpec:
    section.fields({"kind", "token", "header", "value", "scheme", "command", "function"})
    kind = section.string("kind", default="none")
    if kind not in AUTH_KINDS:
        section.fail("kind", f"is {kind!r}", f"use one of {', '.join(AUTH_KINDS)}")
    needs = {"bearer": "token", "header": "header", "command": "command",
             "function": "function"}
    if kind in needs and needs[kind] not in section.raw:
        section.fail(needs[kind], f"is missing, but auth.kind is {kind!r}",
                     f"add {needs[kind]} to [auth]")
    command = section.strings("command", default=())
    function = section.string("function", default="")
    if function and ":" not in function:
        section.fail("function", f"is {function!r}", "write it as module:function")
    for name in ("token", "value"):
        section.template(name, ("user",), default="{user}")
    for index, part in enumerate(command):
        _check_template(part, ("user",), section, f"command[{index}]")
    return AuthSpec(
        kind=kind,  # type: ignore[arg-type]
        token=section.string("token", default="{user}"),
        header=section.string("header", default="Authorization"),
        value=section.string("value", default="{user}"),
        scheme=section.string("scheme", default="Bearer"),
        command=command,
        function=function,
    )


_MISSING = object()


class _Reader:
    """Typed access to one table of a profile, with errors that name the field."""

    def __init__(self, raw: Mapping[str, Any], source: str, prefix: str) -> None:
        self.raw = raw
        self.source = source
        self.prefix = prefix

    def fail(self, name: str, problem: str, fix: str) -> None:
        raise ProfileError(f"profile {self.source}: {self.prefix}{name} {problem}; {fix}")

    def fields(self, known: set[str]) -> _Reader:
        for name in self.raw:
            if name not in known:
                self.fail(name, "is not a known field",
                          f"remove it or use one of {', '.join(sorted(known))}")
        return self

    def _get(self, name: str, required: bool, type_name: str) -> Any:
        if name not in self.raw:
            if required:
                self.fail(name, "is missing", f"add {name} ({type_name})")
            return _MISSING
        return self.raw[name]

    def string(self, name: str, *, required: bool = False, default: str = "") -> str:
        value = self._get(name, required, "a string")
        if value is _MISSING:
            return default
        if not isinstance(value, str) or not value:
            self.fail(name, f"is {value!r}, not a non-empty string", f"quote it: {name} = \"…\"")
        return value  # type: ignore[no-any-return]

    def number(self, name: str, *, required: bool = False, default: float = 0.0) -> float:
        value = self._get(name, required, "a number")
        if value is _MISSING:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(name, f"is {value!r}, not a number", f"write it unquoted: {name} = 600")
        return float(value)

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self._get(name, False, "true or false")
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.fail(name, f"is {value!r}, not a boolean", "write true or false")
        return value  # type: ignore[no-any-return]

    def strings(self, name: str, *, required: bool = False,
                default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self._get(name, required, "a list of strings")
        if value is _MISSING:
            return default
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(name, f"is {value!r}, not a list of strings",
                      f"write it as {name} = [\"…\"]")
        return tuple(value)

    def http_statuses(self, name: str, *, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self._get(name, False, "a list of HTTP statuses")
        if value is _MISSING:
            return default
        valid = isinstance(value, list) and all(
            isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599
            for item in value)
        if not valid:
            self.fail(name, f"is {value!r}, not a list of HTTP statuses",
                      f"write it as {name} = [404]")
        return tuple(value)

    def table(self, name: str, *, required: bool) -> _Reader:
        value = self._get(name, required, "a table")
        if value is _MISSING:
            return _Reader({}, self.source, f"{self.prefix}{name}.")
        if not isinstance(value, dict):
            self.fail(name, f"is {value!r}, not a table", f"write it as a [{name}] section")
        return _Reader(value, self.source, f"{self.prefix}{name}.")

    def template(self, name: str, placeholders: tuple[str, ...], *, required: bool = False,
                 default: str = "") -> str:
        value = self.string(name, required=required, default=default)
        _check_template(value, placeholders, self, name)
        return value

    def path_template(self, name: str, placeholders: tuple[str, ...], *,
                      required: bool = False, default: str = "") -> str:
        value = self.template(name, placeholders, required=required, default=default)
        if not value.startswith("/"):
            self.fail(name, f"is {value!r}", "start the path with / (it is joined to the "
                      "service's base URL)")
        for placeholder in placeholders:
            if "{" + placeholder + "}" not in value:
                self.fail(name, f"is {value!r} and has no {{{placeholder}}}",
                          f"put {{{placeholder}}} where the {placeholder} goes")
        return value


def _check_template(value: str, placeholders: tuple[str, ...], reader: _Reader,
                    name: str) -> None:
    allowed = ", ".join("{" + item + "}" for item in placeholders) or "no placeholders"
    try:
        fields = [parsed[1] for parsed in string.Formatter().parse(value)
                  if parsed[1] is not None]
    except ValueError as error:
        reader.fail(name, f"is {value!r}, not a valid template ({error})",
                    f"use {allowed}, and write a literal brace as {{{{ or }}}}")
        return
    for placeholder in fields:
        if placeholder not in placeholders:
            reader.fail(name, f"has the unknown placeholder {{{placeholder}}}",
                        f"use {allowed}")
