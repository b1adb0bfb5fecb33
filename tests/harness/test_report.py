"""The replay commands of a run and of a load: the command line parses each back into its
config."""

from __future__ import annotations

import shlex
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from harness.cli import load as load_command
from harness.cli import run as run_command
from harness.history import Function, History, Op, OpType, RunRecord
from harness.load.locust_stats import Thresholds
from harness.load.report import rerun_command
from harness.load.runner import LoadConfig, LoadOutcome
from harness.report import replay_command, requests_line
from harness.runner import ExitCode, RunConfig, RunOutcome

NAMES = st.text(alphabet="abcdefghij-", min_size=1, max_size=12)
PATHS = st.none() | st.builds(Path, st.sampled_from(["p.toml", "dir with space/p.toml",
                                                     "/abs/g.py"]))
SECONDS = st.integers(min_value=1, max_value=900).map(float)


@st.composite
def run_configs(draw: st.DrawFn) -> RunConfig:
    target = draw(st.sampled_from(["reference", "app", "url"]))
    app = "tests.apps.jobs_app:app" if target == "app" else None
    url = "http://127.0.0.1:8123" if target == "url" else None
    classes = ["uvicorn", "gthread"] + (["auto"] if target == "app" else [])
    return RunConfig(
        workers=draw(st.integers(min_value=1, max_value=8)),
        worker_class=draw(st.sampled_from(classes)),
        store=draw(st.sampled_from(["fakeredis", "redis-server", "redis://127.0.0.1:7000"])),
        faults=tuple(draw(st.lists(NAMES, max_size=2))) if target == "reference" else (),
        scenarios=tuple(draw(st.lists(NAMES, max_size=3))),
        app=app, url=url,
        allow_remote=url is not None and draw(st.booleans()),
        profile=draw(PATHS), gunicorn_config=draw(PATHS), scenarios_dir=draw(PATHS),
        clock_driver=draw(st.sampled_from(["time-machine", "freezegun"])),
        load_seconds=draw(st.sampled_from([0.0, 10.0, 2.5])),
        load_users=draw(st.integers(min_value=1, max_value=50)),
        scenario_budget_s=draw(SECONDS), max_seconds=draw(SECONDS),
    )


def parsed_replay(outcome: RunOutcome) -> dict[str, object]:
    argv = shlex.split(replay_command(outcome))
    assert argv[:2] == ["scan-harness", "run"]
    context = run_command.make_context("run", argv[2:])
    return context.params


@given(run_configs(), st.integers(min_value=0, max_value=10**6))
def test_replay_gives_back_the_config(config: RunConfig, seed: int) -> None:
    params = parsed_replay(RunOutcome(config, seed, Path("run"), ExitCode.PASS))

    default_class = "auto" if config.app is not None else "uvicorn"
    assert params["seed"] == seed
    assert (params["worker_class"] or default_class) == config.worker_class
    assert params["scenario_budget"] == config.scenario_budget_s
    same = ["workers", "store", "faults", "scenarios", "app", "url", "allow_remote",
            "profile", "gunicorn_config", "scenarios_dir", "clock_driver", "load_seconds",
            "load_users", "max_seconds"]
    assert {name: params[name] for name in same} == {name: getattr(config, name)
                                                     for name in same}


def test_default_run_replays_with_seed_only() -> None:
    outcome = RunOutcome(RunConfig(load_seconds=10.0), 42, Path("run"), ExitCode.PASS)

    assert replay_command(outcome) == "scan-harness run --seed 42"


def test_remote_replay_names_load_caps() -> None:
    config = RunConfig(url="http://10.0.0.5:8000", allow_remote=True, load_seconds=10.0)

    command = replay_command(RunOutcome(config, 1, Path("run"), ExitCode.PASS))

    assert "--allow-remote" in command
    assert "--load-seconds 10 --load-users 10" in command


@st.composite
def load_configs(draw: st.DrawFn) -> LoadConfig:
    target = draw(st.sampled_from(["reference", "app", "url"]))
    app = "tests.apps.jobs_app:app" if target == "app" else None
    url = "http://127.0.0.1:8123" if target == "url" else None
    classes = ["uvicorn", "gthread"] + (["auto"] if target == "app" else [])
    limits = st.none() | st.floats(min_value=0.5, max_value=900).map(round)
    return LoadConfig(
        users=draw(st.integers(min_value=1, max_value=500)),
        spawn_rate=draw(st.sampled_from([1.0, 2.5, 10.0])),
        run_time=draw(st.sampled_from(["30s", "5m", "90"])),
        processes=draw(st.integers(min_value=1, max_value=4)),
        workers=draw(st.integers(min_value=1, max_value=8)) if url is None else 4,
        worker_class=draw(st.sampled_from(classes)) if url is None else "uvicorn",
        store=draw(st.sampled_from(["fakeredis", "redis-server"])) if url is None
        else "fakeredis",
        faults=tuple(draw(st.lists(NAMES, max_size=2))) if target == "reference" else (),
        url=url, app=app,
        token_secret=draw(st.sampled_from([None, "s3cret"])) if url else None,
        allow_remote=url is not None and draw(st.booleans()),
        profile=draw(PATHS),
        gunicorn_config=draw(PATHS) if url is None else None,
        thresholds=Thresholds(max_p95_ms=draw(limits), min_rps=draw(limits)),
    )


@given(load_configs(), st.integers(min_value=0, max_value=10**6))
def test_load_rerun_gives_back_the_config(config: LoadConfig, seed: int) -> None:
    run = RunOutcome(RunConfig(), seed, Path("run"), ExitCode.PASS)
    argv = shlex.split(rerun_command(LoadOutcome(config, run)))
    params = load_command.make_context("load", argv[2:]).params

    default_class = "auto" if config.app is not None else "uvicorn"
    assert argv[:2] == ["scan-harness", "load"]
    assert params["seed"] == seed
    assert (params["worker_class"] or default_class) == config.worker_class
    assert params["token_secret"] == ("SECRET" if config.token_secret else None)
    assert params["max_p95_ms"] == config.thresholds.max_p95_ms
    assert params["min_rps"] == config.thresholds.min_rps
    same = ["users", "spawn_rate", "run_time", "processes", "workers", "store", "faults",
            "url", "app", "allow_remote", "profile", "gunicorn_config"]
    assert {name: params[name] for name in same} == {name: getattr(config, name)
                                                     for name in same}


def completion(index: int, f: Function, op_type: OpType, worker: int | None) -> list[Op]:
    """Return an invoke and its completion, served by ``worker``."""
    invoke = Op(index=2 * index, type=OpType.INVOKE, f=f, process=1, real_ns=index,
                virtual_ns=index)
    done = Op(index=2 * index + 1, type=op_type, f=f, process=1, real_ns=index,
              virtual_ns=index, worker=worker, invoke_index=2 * index,
              scan_id="s1" if op_type is OpType.OK else None)
    return [invoke, done]


def test_requests_line_counts_unnamed_workers() -> None:
    ops = [*completion(0, Function.DISCOVER, OpType.OK, 0),
           *completion(1, Function.STATUS, OpType.OK, 1),
           *completion(2, Function.STATUS, OpType.INFO, None)]

    line = requests_line(History(RunRecord(seed=1), ops))

    assert line == "3 requests, 1 scans (worker 0: 1, worker 1: 1, no worker named: 1)"


def test_requests_line_absent_without_requests() -> None:
    assert requests_line(History(RunRecord(seed=1))) is None
