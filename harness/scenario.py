"""Scenarios: scripted steps that drive scans through chosen workers.

A scenario is a function that takes a ``ScenarioContext`` and issues requests through it:
start a scan on worker 0, poll it from every other worker, fetch its results twice, read
it as another user. It asserts nothing itself. Every request lands in the run's history,
and the checker later judges the scenario's ops against the invariants the scenario
declares, so a scenario states *what to try* and the invariants state *what must hold*.

Scenarios live one per module in the ``scenarios`` package and register themselves with
the ``scenario`` decorator::

    @scenario("poll-every-worker", invariants=("known-scan-found", "progress-sane"))
    def poll_every_worker(ctx: ScenarioContext) -> None:
        \"\"\"Poll a scan from every worker: finds state kept in one worker's memory.\"\"\"
        accepted = ctx.discover(route=0)
        ctx.poll_until_terminal(accepted, route=Route.NEXT)

Scenarios outside the package join the registry too: every module of a folder passed to
``load_scenario_dir`` (``scan-harness run --scenarios-dir DIR``), and every module named
by an entry point of the group ``scan_harness.scenarios`` in an installed distribution.

The docstring's first line is what ``scan-harness scenarios`` prints. Every random choice
a scenario makes comes from ``ctx.rng``, seeded by the run's seed and the scenario's
name, so the same seed replays the same steps to the same workers.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType
from typing import Any

from harness.client import Answer, Route, RouteSpec, RoutingClient
from harness.clock import VirtualClock
from harness.nemesis import Nemesis

TERMINAL_STATES = frozenset({"complete", "failed"})

ENTRY_POINT_GROUP = "scan_harness.scenarios"
# Steps of ScenarioContext that need a clock or a nemesis, which a run against a service
# at a URL has neither of.
_CLOCK_STEPS = frozenset({"freeze", "tick", "advance", "move_to"})
_NEMESIS_STEPS = frozenset({"require_nemesis"})


class ScenarioAborted(RuntimeError):
    """A scenario stopped before its last step: the run's time cap, or a step that
    could not go on (no scan id came back). Its verdict is then judged on what it did."""


@dataclass(frozen=True)
class Scenario:
    """A registered scenario: its name, what it checks and the function that runs it."""

    name: str
    invariants: tuple[str, ...]
    run: Callable[[ScenarioContext], None]
    # False for scenarios that run only when named, such as the matrix's naive baseline.
    default: bool = True

    @property
    def summary(self) -> str:
        doc = (self.run.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @property
    def needs_clock(self) -> bool:
        """Whether the scenario moves virtual time.

        NOTE: this is read from the attribute names the function's code uses (its own and
        its nested functions'), so a step made in a helper defined elsewhere is missed.
        """
        return bool(_CLOCK_STEPS & _names_used(self.run.__code__))

    @property
    def needs_nemesis(self) -> bool:
        """Whether the scenario injects faults through the nemesis (read like needs_clock)."""
        return bool(_NEMESIS_STEPS & _names_used(self.run.__code__))


def _names_used(code: CodeType) -> set[str]:
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            names |= _names_used(constant)
    return names


_REGISTRY: dict[str, Scenario] = {}


def scenario(name: str, *, invariants: tuple[str, ...], default: bool = True) -> Callable[
        [Callable[[ScenarioContext], None]], Callable[[ScenarioContext], None]]:
    """Register the decorated function as the scenario ``name``."""

    def register(function: Callable[[ScenarioContext], None]) -> Callable[
            [ScenarioContext], None]:
        if name in _REGISTRY and _REGISTRY[name].run is not function:
            raise ValueError(f"two scenarios are named {name!r}: "
                             f"{_REGISTRY[name].run.__module__} and {function.__module__}")
        _REGISTRY[name] = Scenario(name, invariants, function, default)
        return function

    return register


def registry() -> dict[str, Scenario]:
    """Return every registered scenario, by name, in name order.

    That is every scenario of the ``scenarios`` package and of the entry point group
    ``scan_harness.scenarios``, and those of folders loaded with ``load_scenario_dir``.
    """
    import scenarios

    for module in pkgutil.iter_modules(scenarios.__path__):
        importlib.import_module(f"scenarios.{module.name}")
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as error:  # any import error of a third-party module
            raise ValueError(f"the scenario entry point {entry_point.name} = "
                             f"{entry_point.value} failed to import: {error}") from error
    return dict(sorted(_REGISTRY.items()))


def load_scenario_dir(directory: Path) -> list[str]:
    """Import every ``*.py`` module of ``directory`` so that its scenarios register.

    Returns the names of the scenarios it added. Raises ValueError naming the module
    that failed to import, or the folder when it does not exist.
    """
    if not directory.is_dir():
        raise ValueError(f"scenario folder {directory} does not exist; pass a folder of "
                         "scenario modules")
    before = set(_REGISTRY)
    for path in _scenario_files(directory):
        module_name = f"scan_harness_user_scenarios.{path.stem}"
        if module_name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ValueError(f"{path} cannot be imported as a module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:  # the user's module may raise anything on import
            del sys.modules[module_name]
            raise ValueError(f"scenario module {path} failed to import: "
                             f"{type(error).__name__}: {error}") from error
    return sorted(set(_REGISTRY) - before)


def _scenario_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.glob("*.py")):
        if not path.name.startswith("_"):
            yield path


def select(names: list[str] | tuple[str, ...] | None) -> list[Scenario]:
    """Return the named scenarios, or every default one; an unknown name raises ValueError."""
    known = registry()
    if not names:
        return [entry for entry in known.values() if entry.default]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown scenario {unknown[0]!r}; known scenarios: "
                         f"{', '.join(known)} (scan-harness scenarios lists them)")
    return [known[name] for name in names]


@dataclass
class ScenarioContext:
    """The state a scenario's steps share: the client, the workers, a seeded rng.

    Requests go out as ``user`` unless a step names another user, and as one logical
    client (``process``) per context. Every wait is bounded: by ``scan_timeout_s`` for a
    scan to finish and by the run's ``deadline`` (a monotonic time) for the whole run.
    """

    name: str
    client: RoutingClient
    rng: random.Random
    deadline: float
    clock: VirtualClock | None = None
    nemesis: Nemesis | None = None
    retention_s: float = 600.0
    stale_s: float = 30.0
    # Real seconds a scenario without a natural end (the naive baseline) may run.
    budget_s: float = 10.0
    user: str = "alice"
    other_user: str = "bob"
    scan_timeout_s: float = 10.0
    # Polling stops early when every answer for this long was not_found: a scan that
    # is lost stays lost, and more of the same answers add nothing to the verdict.
    lost_after_s: float = 1.5
    poll_interval_s: float = 0.03
    process: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def workers(self) -> int:
        return self.client.worker_count

    def discover(self, *, route: RouteSpec = Route.NEXT, user: str | None = None,
                 **body: Any) -> Answer:
        """Start a scan; raise ScenarioAborted when no scan id came back."""
        self._check_deadline()
        answer = self.client.discover(user or self.user, route=route, process=self.process,
                                      scenario=self.name, **body)
        if answer.scan_id is None:
            raise ScenarioAborted(f"POST /discover on worker {answer.worker} returned "
                                  f"{answer.http_status} with no scan id")
        return answer

    def status(self, scan_id: str, *, route: RouteSpec = Route.NEXT,
               user: str | None = None) -> Answer:
        self._check_deadline()
        return self.client.status(user or self.user, scan_id, route=route,
                                  process=self.process, scenario=self.name)

    def results(self, scan_id: str, *, route: RouteSpec = Route.NEXT,
                user: str | None = None) -> Answer:
        self._check_deadline()
        return self.client.results(user or self.user, scan_id, route=route,
                                   process=self.process, scenario=self.name)

    def poll_until_terminal(self, scan_id: str, *, route: RouteSpec = Route.NEXT,
                            user: str | None = None,
                            until: Callable[[Answer], bool] | None = None,
                            timeout_s: float | None = None) -> Answer | None:
        """Poll the scan's status until it is terminal (or ``until`` holds).

        Returns the answer that ended the wait, or None when ``timeout_s`` (default:
        ``scan_timeout_s``) passed first or the scan answered only not_found for
        ``lost_after_s``: a scan that never finishes is for the checker to judge, not
        the scenario.
        """
        stop = until or (lambda answer: answer.status in TERMINAL_STATES)
        timeout_s = self.scan_timeout_s if timeout_s is None else timeout_s
        deadline = min(time.monotonic() + timeout_s, self.deadline)
        found_at = time.monotonic()
        while time.monotonic() < deadline:
            answer = self.status(scan_id, route=route, user=user)
            if stop(answer):
                return answer
            if answer.status != "not_found":
                found_at = time.monotonic()
            elif time.monotonic() - found_at >= self.lost_after_s:
                self.notes.append(f"scan {scan_id} answered only not_found for "
                                  f"{self.lost_after_s:.1f} s; stopped polling it")
                return None
            time.sleep(self.poll_interval_s)
        self.notes.append(f"scan {scan_id} did not reach the awaited state within "
                          f"{timeout_s:.0f} s")
        return None

    def freeze(self) -> None:
        """Stand virtual time still, on every worker and the store."""
        self._clock().freeze(scenario=self.name)

    def tick(self) -> None:
        """Let virtual time run at the real rate again."""
        self._clock().tick(scenario=self.name)

    def advance(self, seconds: float, *, simulates_dead_worker: bool = False) -> None:
        """Jump virtual time ``seconds`` ahead, on every worker and the store."""
        self._check_deadline()
        self._clock().advance(seconds, simulates_dead_worker=simulates_dead_worker,
                              scenario=self.name)

    def move_to(self, at_s: float, *, simulates_dead_worker: bool = False) -> None:
        """Jump virtual time to ``at_s`` seconds since the epoch."""
        self._check_deadline()
        self._clock().move_to(at_s, simulates_dead_worker=simulates_dead_worker,
                              scenario=self.name)

    def each_worker(self) -> range:
        return range(self.workers)

    def require_nemesis(self) -> Nemesis:
        """Return the run's nemesis, or stop the scenario when the run has none."""
        if self.nemesis is None:
            raise ScenarioAborted("this scenario injects faults, but the run has no nemesis")
        return self.nemesis

    def _clock(self) -> VirtualClock:
        if self.clock is None:
            raise ScenarioAborted("this scenario moves virtual time, but the run has no clock")
        return self.clock

    def _check_deadline(self) -> None:
        if time.monotonic() >= self.deadline:
            raise ScenarioAborted("the run's time cap (--max-seconds) was reached")


def progress_of(answer: Answer) -> int:
    """Return the strategies completed that a status answer reports, or -1 without any."""
    completed = answer.completed
    return -1 if completed is None else completed
