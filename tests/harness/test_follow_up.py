"""The follow-up of open scans at the end of a run, on literal histories and a fake client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from harness.client import Answer, RoutingClient
from harness.clock import VirtualClock
from harness.follow_up import find_open_scans, follow_open_scans
from harness.history import Function, History, NemesisWindow, Op, OpType, RunRecord

S = 1_000_000_000


class Builder:
    """Build a history of discovers and status reads, with explicit times in seconds."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.windows: list[NemesisWindow] = []

    def _op(self, **fields: Any) -> Op:
        op = Op(index=len(self.ops) + len(self.windows), process=1, **fields)
        self.ops.append(op)
        return op

    def discover(self, scan_id: str, at_s: float, user: str = "alice",
                 scenario: str = "demo") -> None:
        invoke = self._op(type=OpType.INVOKE, f=Function.DISCOVER, real_ns=round(at_s * S),
                          virtual_ns=round((1000 + at_s) * S), user=user, scenario=scenario)
        self._op(type=OpType.OK, f=Function.DISCOVER, real_ns=round((at_s + 0.1) * S),
                 virtual_ns=round((1000 + at_s + 0.1) * S), user=user, scan_id=scan_id,
                 invoke_index=invoke.index, http_status=200, scenario=scenario,
                 value={"scan_id": scan_id, "total_strategies": 14})

    def status(self, scan_id: str, at_s: float, status: str) -> None:
        invoke = self._op(type=OpType.INVOKE, f=Function.STATUS, real_ns=round(at_s * S),
                          virtual_ns=round((1000 + at_s) * S), user="alice", scan_id=scan_id)
        self._op(type=OpType.OK, f=Function.STATUS, real_ns=round((at_s + 0.1) * S),
                 virtual_ns=round((1000 + at_s + 0.1) * S), user="alice", scan_id=scan_id,
                 invoke_index=invoke.index, http_status=200, value={"status": status})

    def data_loss(self, start_s: float, end_s: float) -> None:
        self.windows.append(NemesisWindow(
            index=len(self.ops) + len(self.windows), action="flush-store", target="store",
            real_start_ns=round(start_s * S), real_end_ns=round(end_s * S),
            virtual_start_ns=0, virtual_end_ns=0, data_lost=True))

    def history(self) -> History:
        return History(RunRecord(seed=1), list(self.ops), nemesis_windows=list(self.windows))


def test_open_scans_exclude_terminal() -> None:
    builder = Builder()
    builder.discover("done", 0.0)
    builder.discover("running", 1.0, user="bob", scenario="other")
    builder.status("done", 2.0, "complete")
    builder.status("running", 2.5, "scanning")

    scans = find_open_scans(builder.history(), deadline_s=60)

    assert [scan.scan_id for scan in scans] == ["running"]
    assert scans[0].user == "bob"
    assert scans[0].scenario == "other"
    assert scans[0].deadline_ns == round((1000 + 1.0 + 60) * S)


def test_open_scans_skip_data_loss() -> None:
    builder = Builder()
    builder.discover("erased", 0.0)
    builder.data_loss(1.0, 1.5)
    builder.discover("after", 2.0)

    scans = find_open_scans(builder.history(), deadline_s=60)

    assert [scan.scan_id for scan in scans] == ["after"]


@dataclass
class FakeClient:
    """Return status answers from a script of statuses per scan, and record each read."""

    statuses: dict[str, list[str]]
    reads: list[tuple[str, str, str | None]] = field(default_factory=list)

    def new_process(self) -> int:
        return 99

    def status(self, user: str, scan_id: str, **options: Any) -> Answer:
        script = self.statuses[scan_id]
        status = script.pop(0) if len(script) > 1 else script[0]
        self.reads.append((user, scan_id, options.get("scenario")))
        return cast(Answer, FakeAnswer(status))


@dataclass
class FakeAnswer:
    status: str


@dataclass
class FakeClock:
    now: int = 1000 * S
    moves: list[tuple[float, bool]] = field(default_factory=list)

    def now_ns(self) -> int:
        return self.now

    def advance(self, seconds: float, *, simulates_dead_worker: bool = False) -> None:
        self.moves.append((seconds, simulates_dead_worker))
        self.now += round(seconds * S)


def follow(client: FakeClient, clock: FakeClock, history: History,
           settle_s: float = 0.1) -> list[tuple[str | None, str]]:
    return follow_open_scans(cast(RoutingClient, client), cast(VirtualClock, clock), history,
                             deadline_s=60, settle_s=settle_s, lost_after_s=0.05,
                             poll_interval_s=0.001)


def test_finished_scan_needs_no_jump() -> None:
    builder = Builder()
    builder.discover("slow", 0.0, scenario="demo")
    client = FakeClient({"slow": ["scanning", "complete"]})
    clock = FakeClock()

    notes = follow(client, clock, builder.history())

    assert notes == []
    assert clock.moves == []
    assert client.reads == [("alice", "slow", "demo"), ("alice", "slow", "demo")]


def test_stuck_scan_read_past_deadline() -> None:
    builder = Builder()
    builder.discover("stuck", 0.0, scenario="demo")
    client = FakeClient({"stuck": ["scanning"]})
    clock = FakeClock()

    notes = follow(client, clock, builder.history())

    assert len(clock.moves) == 1
    jump_s, simulates_dead_worker = clock.moves[0]
    assert simulates_dead_worker
    # The deadline is 60 s after the POST's invoke at virtual 1000 s, plus a margin.
    assert clock.now > (1000 + 60) * S
    assert jump_s > 60
    assert notes == [("demo", "scan stuck was still open after its deadline")]


def test_lost_scan_dropped() -> None:
    builder = Builder()
    builder.discover("lost", 0.0, scenario="demo")
    client = FakeClient({"lost": ["not_found"]})
    clock = FakeClock()

    # Settling lasts far longer than lost_after_s, so the scan is dropped, not timed out.
    notes = follow(client, clock, builder.history(), settle_s=5.0)

    assert clock.moves == []
    assert len(notes) == 1
    assert notes[0][0] == "demo"
    assert "answered only not_found" in notes[0][1]
