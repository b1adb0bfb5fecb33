"""Gunicorn configuration that the cluster chains in front of every app it serves.

Loaded with ``-c python:harness.gunicorn_config``. It only adds hooks; every other setting
comes from the cluster's command line, so the app itself stays unchanged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from harness import worker_hooks

log = logging.getLogger("harness.worker")


def post_fork(server: Any, worker: Any) -> None:
    """Log each worker's pid and age as it boots, so logs can tie pids to slots."""
    server.log.info("worker booted with pid %d (age %d)", worker.pid, worker.age)


def post_worker_init(worker: Any) -> None:
    """Make the worker follow the virtual clock, then mark it booted.

    The cluster counts these markers (one file per pid in ``SCAN_HARNESS_READY_DIR``): a
    worker process that exists but whose app failed to import never writes one.
    """
    worker_hooks.install(worker)
    ready_dir = os.environ.get("SCAN_HARNESS_READY_DIR")
    if ready_dir:
        Path(ready_dir, str(worker.pid)).touch()


def worker_abort(worker: Any) -> None:
    """Log a worker that gunicorn aborts on its timeout: a hung worker, not a crash."""
    worker.log.critical("worker %d aborted after the worker timeout", worker.pid)



# gunicorn's --log-level reaches only its own loggers. This sends the app's records at
# INFO and above, with gunicorn's own, to stderr (the cluster's service.log), and the
# access log to stdout (access.log); neither propagates, so no line is written twice.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["error_console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "uvicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
}


# The user's own gunicorn config file, chained rather than replaced: its settings apply
# (the cluster's command-line flags, such as --bind and --workers, still take precedence,
# as gunicorn gives the command line precedence over a config file), and where it defines
# a hook that the harness also defines, both run, the user's first.
USER_CONFIG_ENV = "SCAN_HARNESS_USER_GUNICORN_CONFIG"


def _chain_user_config(path: str) -> None:
    import runpy

    from gunicorn.config import KNOWN_SETTINGS

    settings = {setting.name for setting in KNOWN_SETTINGS}
    namespace = globals()
    harness_hooks = {"post_fork": post_fork, "post_worker_init": post_worker_init,
                     "worker_abort": worker_abort}
    for name, value in runpy.run_path(path).items():
        if name not in settings:
            continue
        if name in harness_hooks and callable(value):
            namespace[name] = _CHAINS[name](value, harness_hooks[name])
        else:
            namespace[name] = value
    log.info("chained the gunicorn config %s", path)


def _chain_server_worker(user: Any, ours: Any) -> Any:
    def hook(server: Any, worker: Any) -> None:
        user(server, worker)
        ours(server, worker)

    return hook


def _chain_worker(user: Any, ours: Any) -> Any:
    def hook(worker: Any) -> None:
        user(worker)
        ours(worker)

    return hook


_CHAINS = {"post_fork": _chain_server_worker, "post_worker_init": _chain_worker,
           "worker_abort": _chain_worker}

if os.environ.get(USER_CONFIG_ENV):
    _chain_user_config(os.environ[USER_CONFIG_ENV])
