"""TickerActor: timers fire in due order, cancel and restart work, stale entries are skipped, the pump ticks.

Most cases drive a ticker of their own with explicit `Tick(now)` messages, so time is whatever the table
says; the runtime's own ticker (ticked by the pump) is used only to show that timers fire without help.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from actors import metrics
from actors.base import ShellActor
from actors.runtime import ActorRuntime
from actors.ticker_actor import TICKER_GLOBAL_NAME, CancelTimer, StartTimer, Tick, TickerActor, TimerDue

RESULT_WAIT = 10.0


@dataclass(frozen=True)
class GetFired:
    request_id: str


@dataclass(frozen=True)
class Fired:
    request_id: str
    timers: tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class ArmAlarm:
    """Start a timer on `ticker` and answer this request when it fires."""

    request_id: str
    ticker: Any
    after_seconds: float


class Recorder(ShellActor):
    """Remembers every TimerDue in arrival order."""

    actor_kind = "test-recorder"

    def __init__(self) -> None:
        super().__init__()
        self.fired: list[tuple[str, object]] = []
        self.alarm_asker: tuple[Any, str] | None = None

    def receiveMsg_TimerDue(self, message: TimerDue, sender: Any) -> None:
        self.fired.append((message.token, message.payload))
        if self.alarm_asker is not None:
            asker, request_id = self.alarm_asker
            self.send(asker, Fired(request_id, tuple(self.fired)))

    def receiveMsg_GetFired(self, message: GetFired, sender: Any) -> None:
        self.send(sender, Fired(message.request_id, tuple(self.fired)))

    def receiveMsg_ArmAlarm(self, message: ArmAlarm, sender: Any) -> None:
        self.alarm_asker = (sender, message.request_id)
        self.send(message.ticker, StartTimer(self.myAddress, "alarm", message.after_seconds, "wake up"))


# A step of a table: ("start", owner, token, after_seconds, payload), ("cancel", owner, token), ("tick", now).
Step = tuple[Any, ...]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            [("tick", 100.0), ("start", "a", "t3", 3.0, 3), ("start", "a", "t1", 1.0, 1),
             ("start", "a", "t2", 2.0, 2), ("tick", 110.0)],
            {"a": [("t1", 1), ("t2", 2), ("t3", 3)]},
            id="fires-earliest-first",
        ),
        pytest.param(
            [("tick", 100.0), ("start", "a", "x", 1.0, "first"), ("start", "a", "y", 1.0, "second"),
             ("tick", 101.0)],
            {"a": [("x", "first"), ("y", "second")]},
            id="same-due-time-fires-in-arming-order",
        ),
        pytest.param(
            [("tick", 100.0), ("start", "a", "t", 5.0, None), ("tick", 104.999)],
            {"a": []},
            id="not-before-due",
        ),
        pytest.param(
            [("tick", 100.0), ("start", "a", "t", 5.0, None), ("tick", 105.0), ("tick", 200.0)],
            {"a": [("t", None)]},
            id="due-exactly-fires-once",
        ),
        pytest.param(
            [("tick", 100.0), ("start", "a", "t", 1.0, None), ("cancel", "a", "t"), ("tick", 200.0)],
            {"a": []},
            id="cancel-disarms",
        ),
        pytest.param(
            [("tick", 100.0), ("cancel", "a", "never-armed"), ("start", "a", "t", 1.0, None), ("tick", 101.0)],
            {"a": [("t", None)]},
            id="cancel-unknown-token-is-harmless",
        ),
        pytest.param(
            [("tick", 100.0), ("start", "a", "t", 1.0, "old"), ("start", "a", "t", 5.0, "new"),
             ("tick", 102.0)],
            {"a": []},
            id="restart-later-moves-the-due-time",
        ),
        pytest.param(
            [("tick", 100.0), ("start", "a", "t", 1.0, "old"), ("start", "a", "t", 5.0, "new"),
             ("tick", 110.0)],
            {"a": [("t", "new")]},
            id="restart-replaces-payload-and-fires-once",
        ),
        pytest.param(
            [("tick", 100.0), ("start", "a", "t", 5.0, "old"), ("start", "a", "t", 1.0, "new"),
             ("tick", 101.0), ("tick", 110.0)],
            {"a": [("t", "new")]},
            id="stale-entry-of-an-earlier-start-is-ignored",
        ),
        pytest.param(
            [("tick", 100.0), ("start", "a", "t", 1.0, None), ("cancel", "a", "t"),
             ("start", "a", "t", 3.0, "again"), ("tick", 101.0), ("tick", 103.0)],
            {"a": [("t", "again")]},
            id="cancel-then-restart",
        ),
        pytest.param(
            [("start", "a", "t", 2.0, None), ("tick", 50.0), ("tick", 51.0), ("tick", 52.0)],
            {"a": [("t", None)]},
            id="armed-before-first-tick-counts-from-first-tick",
        ),
        pytest.param(
            [("tick", 100.0), ("start", "a", "t", 1.0, "for a"), ("start", "b", "t", 2.0, "for b"),
             ("cancel", "a", "t"), ("tick", 110.0)],
            {"a": [], "b": [("t", "for b")]},
            id="same-token-of-different-owners-is-independent",
        ),
        pytest.param(
            [("tick", 100.0), ("start", "a", "t", 2.0, None), ("tick", 90.0), ("tick", 101.0)],
            {"a": []},
            id="clock-never-steps-backwards",
        ),
    ],
)
def test_ticker_table(runtime: ActorRuntime, steps: list[Step], expected: dict[str, list[Any]]) -> None:
    ticker = runtime.create_actor(TickerActor).result(timeout=RESULT_WAIT)
    owners = {name: runtime.create_actor(Recorder).result(timeout=RESULT_WAIT) for name in expected}

    for step in steps:
        if step[0] == "start":
            _, owner, token, after_seconds, payload = step
            runtime.tell(ticker, StartTimer(owners[owner], token, after_seconds, payload))
        elif step[0] == "cancel":
            _, owner, token = step
            runtime.tell(ticker, CancelTimer(owners[owner], token))
        else:
            runtime.tell(ticker, Tick(step[1]))

    # Work items are handled in order and delivery is synchronous, so these asks see every firing above.
    fired = {
        name: list(
            runtime.ask(address, GetFired(runtime.new_request_id()), 5.0, Fired)
            .result(timeout=RESULT_WAIT).timers
        )
        for name, address in owners.items()
    }
    assert fired == expected


def test_a_token_restarted_many_times_fires_once_and_leaves_one_timer_pending() -> None:
    # A runtime whose own ticker ticks only at start, so no other ticker rewrites the shared gauge meanwhile.
    with ActorRuntime(tick_interval=3600.0, name="quiet-runtime") as runtime:
        _restart_many_times(runtime)


def _restart_many_times(runtime: ActorRuntime) -> None:
    ticker = runtime.create_actor(TickerActor).result(timeout=RESULT_WAIT)
    owner = runtime.create_actor(Recorder).result(timeout=RESULT_WAIT)
    runtime.tell(ticker, Tick(0.0))
    for restart in range(1000):
        runtime.tell(ticker, StartTimer(owner, "heartbeat", 10.0, restart))
    runtime.tell(ticker, StartTimer(owner, "other", 20.0, None))
    runtime.tell(ticker, Tick(15.0))

    fired = runtime.ask(owner, GetFired(runtime.new_request_id()), 5.0, Fired).result(timeout=RESULT_WAIT)

    assert fired.timers == (("heartbeat", 999),)
    assert metrics.REGISTRY.get_sample_value("homelab_autoscaler_pending_timers") == 1.0


def test_the_pump_ticks_the_runtime_ticker_so_timers_fire_on_their_own(runtime: ActorRuntime) -> None:
    owner = runtime.create_actor(Recorder).result(timeout=RESULT_WAIT)

    alarm = runtime.ask(owner, ArmAlarm(runtime.new_request_id(), runtime.ticker, 0.05), 5.0, Fired)

    assert alarm.result(timeout=RESULT_WAIT).timers == (("alarm", "wake up"),)


def test_the_runtime_ticker_is_reachable_by_its_global_name(runtime: ActorRuntime) -> None:
    found = runtime.create_actor(TickerActor, globalName=TICKER_GLOBAL_NAME).result(timeout=RESULT_WAIT)

    assert found == runtime.ticker
