"""Property tests of the checker against a correct sequential model of one scan.

The model runs one scan: the POST writes it at some moment, strategies finish one at a
time, and the scan ends complete or failed. Each read takes effect at one moment between
its invoke and its completion and returns the model's state at that moment, so reads
that overlap may see the scan in either order. Such histories must pass every invariant.
One wrong response planted in them must fail the invariant that forbids it.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness.checker import Verdict, check
from harness.history import Function, History
from tests.harness.test_checker import STRATEGIES, HistoryBuilder

OWNER = "alice"
OTHER_USER = "mallory"
TERMINAL = ("complete", "failed")


@dataclass(frozen=True)
class PlannedRead:
    """One read of the model scan and the response it gets, with times in ms of real time."""

    f: Function
    user: str
    start_ms: int
    end_ms: int
    outcome: str  # "response", "info" (no response) or "missing" (no completion op)
    state: str  # scanning, complete, failed or not_found
    completed: int


@dataclass(frozen=True)
class ScanModel:
    total: int
    post_start_ms: int
    post_end_ms: int
    reads: tuple[PlannedRead, ...]


class ModelScan:
    """The true state of the scan over time."""

    def __init__(self, write_ms: int, finished_ms: list[int], terminal_ms: int, end: str):
        self.write_ms = write_ms
        self.finished_ms = finished_ms
        self.terminal_ms = terminal_ms
        self.end = end

    def state_at(self, moment_ms: int) -> tuple[str, int]:
        if moment_ms < self.write_ms:
            return "not_found", 0
        completed = bisect.bisect_right(self.finished_ms, moment_ms)
        if moment_ms >= self.terminal_ms:
            return self.end, len(self.finished_ms)
        return "scanning", completed


@st.composite
def scan_models(draw: st.DrawFn) -> ScanModel:
    total = draw(st.integers(1, 14))
    end = draw(st.sampled_from(TERMINAL))
    finished = total if end == "complete" else draw(st.integers(0, total - 1))

    post_start_ms = 0
    post_end_ms = draw(st.integers(1, 50))
    write_ms = draw(st.integers(post_start_ms, post_end_ms))
    finished_ms: list[int] = []
    moment_ms = write_ms
    for _ in range(finished):
        moment_ms += draw(st.integers(1, 120))
        finished_ms.append(moment_ms)
    terminal_ms = moment_ms + draw(st.integers(0, 120))
    scan = ModelScan(write_ms, finished_ms, terminal_ms, end)

    reads = []
    start_ms = draw(st.integers(post_start_ms, post_end_ms + 40))
    for _ in range(draw(st.integers(3, 25))):
        start_ms += draw(st.integers(0, 150))
        duration_ms = draw(st.integers(1, 120))
        moment_ms = start_ms + draw(st.integers(0, duration_ms))
        user = draw(st.sampled_from([OWNER, OWNER, OWNER, OTHER_USER]))
        state, completed = scan.state_at(moment_ms)
        if user != OWNER:
            state, completed = "not_found", 0
        reads.append(
            PlannedRead(
                f=draw(st.sampled_from([Function.STATUS, Function.STATUS, Function.RESULTS])),
                user=user,
                start_ms=start_ms,
                end_ms=start_ms + duration_ms,
                outcome=draw(st.sampled_from(["response"] * 8 + ["info", "missing"])),
                state=state,
                completed=completed,
            )
        )
    return ScanModel(total, post_start_ms, post_end_ms, tuple(reads))


def build_history(model: ScanModel) -> History:
    builder = HistoryBuilder()
    builder.post((model.post_start_ms / 1000, model.post_end_ms / 1000), total=model.total)
    for read in model.reads:
        real = (read.start_ms / 1000, read.end_ms / 1000)
        options: dict[str, Any] = {"user": read.user, "worker": read.start_ms % 4}
        if read.outcome == "info":
            builder.info(read.f, real, **options)
        elif read.outcome == "missing":
            builder.request(read.f, real, complete=False, **options)
        elif read.f is Function.STATUS:
            builder.status(real, read.state, read.completed, model.total, **options)
        elif read.state == "not_found":
            builder.results(real, 404, **options)
        elif read.state == "scanning":
            progress = (read.completed, model.total)
            builder.results(real, 202, progress=progress, **options)
        else:
            ids = STRATEGIES[: read.completed]
            builder.results(real, 200, state=read.state, ids=ids, **options)
    return builder.history()


def answered_owner_reads(model: ScanModel) -> list[int]:
    return [
        position
        for position, read in enumerate(model.reads)
        if read.user == OWNER and read.outcome == "response"
    ]


def replace_read(model: ScanModel, position: int, **changes: object) -> ScanModel:
    reads = list(model.reads)
    reads[position] = dataclasses.replace(reads[position], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(model, reads=tuple(reads))


@settings(max_examples=300, deadline=None)
@given(scan_models())
def test_correct_model_passes(model: ScanModel) -> None:
    result = check(build_history(model))

    assert result.violations == []
    assert result.verdict is Verdict.PASS
    assert result.invariants["known-scan-found"].verdict is not Verdict.FAIL


@settings(max_examples=200, deadline=None)
@given(scan_models(), st.data())
def test_less_progress_fails_monotonic(model: ScanModel, data: st.DataObject) -> None:
    answered = answered_owner_reads(model)
    pairs = [
        (earlier, later)
        for earlier in answered
        for later in answered
        if model.reads[earlier].end_ms < model.reads[later].start_ms
        and model.reads[earlier].state != "not_found"
        and (
            model.reads[earlier].state in TERMINAL
            or (model.reads[earlier].f is Function.STATUS and model.reads[earlier].completed >= 1)
        )
    ]
    assume(pairs)
    earlier, later = data.draw(st.sampled_from(pairs))
    earlier_completed = model.reads[earlier].completed
    mutated = replace_read(
        model, later, f=Function.STATUS, state="scanning", completed=max(earlier_completed - 1, 0)
    )

    result = check(build_history(mutated))

    assert result.invariants["monotonic-reads"].verdict is Verdict.FAIL
    assert result.verdict is Verdict.FAIL


@settings(max_examples=200, deadline=None)
@given(scan_models(), st.data())
def test_not_found_after_post_fails(model: ScanModel, data: st.DataObject) -> None:
    after_post = [
        position
        for position in answered_owner_reads(model)
        if model.reads[position].start_ms > model.post_end_ms
    ]
    assume(after_post)
    position = data.draw(st.sampled_from(after_post))
    mutated = replace_read(model, position, state="not_found", completed=0)

    result = check(build_history(mutated))

    assert result.invariants["known-scan-found"].verdict is Verdict.FAIL
    assert result.verdict is Verdict.FAIL


@settings(max_examples=200, deadline=None)
@given(scan_models(), st.data())
def test_short_complete_fails(model: ScanModel, data: st.DataObject) -> None:
    answered = answered_owner_reads(model)
    assume(answered)
    position = data.draw(st.sampled_from(answered))
    mutated = replace_read(
        model, position, f=Function.STATUS, state="complete", completed=model.total - 1
    )

    result = check(build_history(mutated))

    assert result.invariants["complete-is-whole"].verdict is Verdict.FAIL
    assert result.verdict is Verdict.FAIL
