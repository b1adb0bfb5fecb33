"""Targets: the service a run tests, and how the harness reaches it.

A run has one of three targets:

- the *reference* scan service (the default), served by the harness's cluster;
- a user's *app* (``--app module:app``), served by the same cluster: every worker names
  itself in ``X-Worker-Id`` and follows virtual time through the harness's gunicorn
  hooks, and the store's URL reaches the app through the environment variables its
  profile names in ``store_url_env``;
- a running service at a *URL* (``--url``): the harness starts nothing. It routes
  through keep-alive connections when the service names its worker in each answer, and
  otherwise only observes. It has no virtual time and no nemesis, so scenarios that need
  either are skipped with a note.

Only loopback URLs are allowed unless the run says ``allow_remote``.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from harness.clock_state import CLOCK_DRIVER_ENV, CLOCK_FILE_ENV
from harness.processes import StartError
from harness.profile import REFERENCE_PROFILE, Profile, load_profile

# Seconds the harness waits for a child Python to import the app and report its kind.
DETECT_TIMEOUT_S = 60.0

# Seconds a running service at --url has to respond to its probe path.
PROBE_TIMEOUT_S = 5.0

_DETECT_SCRIPT = """
import importlib, inspect, sys
module_name, _, expression = sys.argv[1].partition(":")
module = importlib.import_module(module_name)
if expression.isidentifier() and not hasattr(module, expression):
    sys.exit(f"AttributeError: module {module_name} has no attribute {expression!r}")
app = eval(expression, vars(module))
call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
    print("uvicorn")
else:
    print("gthread")
"""


class TargetError(ValueError):
    """A target that cannot be used: the message names the value and the fix."""


def profile_for(path: Path | None) -> Profile:
    """Load the profile at ``path``, or the reference service's profile."""
    return load_profile(path if path is not None else REFERENCE_PROFILE)


def check_app(app: str) -> None:
    """Raise TargetError unless ``app`` has the form ``module:attribute``."""
    module_name, _, expression = app.partition(":")
    if not module_name or not expression:
        raise TargetError(f"--app {app!r} is not of the form module:attribute; write it as, "
                          "for example, myservice.main:app (an expression such as "
                          "myservice.main:create_app() works too)")


def detect_worker_class(app: str, env: Mapping[str, str]) -> str:
    """Return ``uvicorn`` for an ASGI app and ``gthread`` for a WSGI app.

    The app is imported in a child Python, so that its import-time side effects stay
    out of the harness. Raises TargetError when the import fails.
    """
    try:
        completed = subprocess.run([sys.executable, "-c", _DETECT_SCRIPT, app],
                                   capture_output=True, text=True, env=dict(env),
                                   timeout=DETECT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as error:
        raise TargetError(f"importing the app {app!r} took over {DETECT_TIMEOUT_S:.0f} s; "
                          "pass --worker-class to skip the check") from error
    kind = completed.stdout.strip()
    if completed.returncode != 0 or kind not in ("uvicorn", "gthread"):
        # The traceback's last line names the exception, such as ModuleNotFoundError.
        lines = completed.stderr.strip().splitlines()
        reason = lines[-1].strip() if lines else f"exit code {completed.returncode}"
        raise TargetError(f"the app {app!r} could not be imported ({reason}); write it as "
                          "module:attribute, importable from the current folder or "
                          "PYTHONPATH")
    return kind


def app_environment(profile: Profile, *, store_url: str, clock_file: Path,
                    clock_driver: str) -> dict[str, str]:
    """Return the environment of a user's app: the profile's variables, the store's URL
    under each name of ``store_url_env``, and the clock the workers follow."""
    env = dict(profile.env)
    for name in profile.store_url_env:
        env[name] = store_url
    env[CLOCK_FILE_ENV] = str(clock_file)
    env[CLOCK_DRIVER_ENV] = clock_driver
    return env


def check_url(url: str, *, allow_remote: bool,
              load_caps: str = "--load-users and --load-seconds") -> None:
    """Raise TargetError unless ``url`` is an http(s) URL on loopback (or remote is allowed).

    ``load_caps`` names the options that cap a load on the command in use. The host is
    judged by its name or address only; it is never resolved.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"--url {url!r} is not an http:// or https:// URL with a host; "
                          "write it as http://127.0.0.1:8000")
    if allow_remote or is_loopback(parts.hostname):
        return
    raise TargetError(f"--url {url!r} is not on loopback; the harness sends requests only to "
                      "this machine unless you add --allow-remote (and explicit caps on the "
                      f"load: {load_caps})")


def probe_url(url: str, probe_path: str) -> None:
    """Raise StartError unless the service at ``url`` responds to ``probe_path`` with a
    status below 500."""
    try:
        response = httpx.get(url.rstrip("/") + probe_path, timeout=PROBE_TIMEOUT_S,
                             trust_env=False)
    except httpx.HTTPError as error:
        raise StartError(f"cannot reach --url {url}: {error}; start the service (scan-harness "
                         "serve for the reference one) or fix the URL") from error
    if response.status_code >= 500:
        raise StartError(f"--url {url} responded to {probe_path} with HTTP "
                         f"{response.status_code}; check that the service is healthy")


def is_loopback(host: str) -> bool:
    """Return whether ``host`` names this machine: localhost, 127.0.0.0/8 or ::1."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def python_path_with_cwd(env: Mapping[str, str]) -> dict[str, str]:
    """Return ``env`` with the current folder first on PYTHONPATH, as gunicorn's own
    command line imports apps from it."""
    result = dict(env)
    result["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    return result
