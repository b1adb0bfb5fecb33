"""Locust's statistics, the thresholds, the run time and the exit code ranking of a load."""

# The literal file keeps Locust's header on one line, as Locust writes it.
# ruff: noqa: E501

from __future__ import annotations

from pathlib import Path

import pytest

from harness.load.locust_process import LocustOptions, locust_argv, parse_run_time
from harness.load.locust_stats import (
    StatsError,
    Thresholds,
    count_exceptions,
    judge_thresholds,
    read_stats,
)
from harness.load.runner import combine_exit_codes
from harness.runner import ExitCode

# The header and rows as Locust 2.47 writes them to <prefix>_stats.csv.
STATS_CSV = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
POST,/discover,31,0,5,55.4,3.2,590.3,243.0,7.76,0.0,5,8,54,54,62,590,590,590,590,590,590
GET,/results/[id],0,0,0,0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A
GET,/status/[id],208,2,4,5.3,1.4,43.6,174.6,52.08,0.5,4,5,5,6,9,12,16,41,44,44,44
,Aggregated,239,2,4,11.1,1.4,590.3,479.8,59.84,0.5,4,5,6,7,10,40,57,67,590,590,590
"""


@pytest.fixture
def stats_path(tmp_path: Path) -> Path:
    path = tmp_path / "locust_stats.csv"
    path.write_text(STATS_CSV, encoding="utf-8")
    return path


def test_read_stats_rows(stats_path: Path) -> None:
    stats = read_stats(stats_path)

    assert [row.name for row in stats.endpoints] == ["/discover", "/results/[id]",
                                                     "/status/[id]"]
    assert stats.endpoints[2].failures == 2
    assert stats.endpoints[2].p99_ms == 41
    assert stats.endpoints[1].p95_ms is None


def test_read_stats_aggregate(stats_path: Path) -> None:
    total = read_stats(stats_path).total

    assert total.requests == 239
    assert total.rps == pytest.approx(59.84)
    assert total.p50_ms == 4
    assert total.p95_ms == 40
    assert total.fail_ratio == pytest.approx(2 / 239)


def test_read_stats_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StatsError, match="cannot read Locust's statistics"):
        read_stats(tmp_path / "absent.csv")


def test_read_stats_without_aggregate(tmp_path: Path) -> None:
    path = tmp_path / "locust_stats.csv"
    path.write_text(STATS_CSV.rsplit(",Aggregated", 1)[0], encoding="utf-8")

    with pytest.raises(StatsError, match="no Aggregated row"):
        read_stats(path)


def test_count_exceptions(tmp_path: Path) -> None:
    path = tmp_path / "locust_exceptions.csv"
    path.write_text('Count,Message,Traceback,Nodes\n3,"boom","tb","local"\n2,"bang","tb",""\n',
                    encoding="utf-8")

    assert count_exceptions(path) == 5
    assert count_exceptions(tmp_path / "absent.csv") == 0


def test_thresholds_met(stats_path: Path) -> None:
    results = judge_thresholds(read_stats(stats_path),
                               Thresholds(max_p95_ms=40, max_fail_ratio=0.01, min_rps=59))

    assert [result.name for result in results] == ["max-p95-ms", "max-fail-ratio", "min-rps"]
    assert all(result.passed for result in results)


def test_thresholds_missed(stats_path: Path) -> None:
    results = judge_thresholds(read_stats(stats_path),
                               Thresholds(max_p95_ms=39, max_fail_ratio=0.001, min_rps=1000))

    assert not any(result.passed for result in results)
    assert results[2].message == "--min-rps: measured 59.84, required >= 1000: missed"


def test_thresholds_without_stats() -> None:
    results = judge_thresholds(None, Thresholds(max_p95_ms=100, min_rps=1))

    assert [result.measured for result in results] == [None, None]
    assert not any(result.passed for result in results)


def test_unset_thresholds_judge_nothing(stats_path: Path) -> None:
    assert judge_thresholds(read_stats(stats_path), Thresholds()) == []


@pytest.mark.parametrize(("text", "seconds"), [
    ("30", 30), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("1h2m3s", 3723), (" 10s ", 10),
])
def test_parse_run_time(text: str, seconds: int) -> None:
    assert parse_run_time(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "10x", "1.5s", "s", "m5", "-3"])
def test_parse_run_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid run time"):
        parse_run_time(text)


@pytest.mark.parametrize(("codes", "expected"), [
    ((0, 2, 1), ExitCode.VIOLATION),
    ((4, 2), ExitCode.THRESHOLD),
    ((1, 3), ExitCode.HARNESS_ERROR),
    ((0, 4), ExitCode.INCONCLUSIVE),
    ((0,), ExitCode.PASS),
])
def test_exit_codes_rank(codes: tuple[int, ...], expected: int) -> None:
    assert combine_exit_codes(*codes) == expected


def test_argv_single_process() -> None:
    argv = locust_argv("http://127.0.0.1:8000", LocustOptions(5, 2.5, 10))

    assert "--processes" not in argv
    assert argv[argv.index("--run-time") + 1] == "10s"
    assert argv[argv.index("--spawn-rate") + 1] == "2.5"
    assert argv[argv.index("--stop-timeout") + 1] == "3s"


def test_argv_processes_bind_loopback() -> None:
    argv = locust_argv("http://127.0.0.1:8000", LocustOptions(5, 5, 10, processes=3))

    assert argv[argv.index("--processes") + 1] == "3"
    assert argv[argv.index("--master-bind-host") + 1] == "127.0.0.1"
    assert argv[argv.index("--master-bind-port") + 1] == argv[argv.index("--master-port") + 1]
    assert argv[argv.index("--stop-timeout") + 1] == "0s"
