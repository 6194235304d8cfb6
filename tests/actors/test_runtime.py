"""ActorRuntime: asks from many threads, deadlines, poison messages, stop, ShellActor behaviour, and the metrics
it exports. How actors.metrics keeps and prints its series is tests/unit/test_metrics.py."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from thespian.actors import ActorExitRequest

from actors import metrics
from actors.base import ShellActor
from actors.errors import ActorFailed, ActorTimeout, RuntimeStopped
from actors.runtime import ActorRuntime

RESULT_WAIT = 10.0  # backstop for future.result(); never reached when the runtime works


# --- messages and small actors used only by these tests ----------------------------------------------------

@dataclass(frozen=True)
class Echo:
    request_id: str
    payload: object


@dataclass(frozen=True)
class Echoed:
    request_id: str
    payload: object


@dataclass(frozen=True)
class Explode:
    request_id: str


@dataclass(frozen=True)
class Hold:
    """Ask the actor to keep the request and answer it only when `Release` arrives."""

    request_id: str


@dataclass(frozen=True)
class Release:
    payload: object


@dataclass(frozen=True)
class Unknown:
    note: str


@dataclass(frozen=True)
class NoRequestId:
    payload: object


class EchoActor(ShellActor):
    actor_kind = "test-echo"

    def __init__(self) -> None:
        super().__init__()
        self.held: list[tuple[Any, str]] = []

    def receiveMsg_Echo(self, message: Echo, sender: Any) -> None:
        self.send(sender, Echoed(message.request_id, message.payload))

    def receiveMsg_Explode(self, message: Explode, sender: Any) -> None:
        raise RuntimeError(f"boom for {message.request_id}")

    def receiveMsg_Hold(self, message: Hold, sender: Any) -> None:
        self.held.append((sender, message.request_id))

    def receiveMsg_Release(self, message: Release, sender: Any) -> None:
        for waiting_sender, request_id in self.held:
            self.send(waiting_sender, Echoed(request_id, message.payload))
        self.held.clear()


class SilentActor(ShellActor):
    actor_kind = "test-silent"

    def receiveMsg_Echo(self, message: Echo, sender: Any) -> None:
        pass  # never answers


@dataclass(frozen=True)
class Forward:
    to: Any
    payload: object


@dataclass(frozen=True)
class Store:
    payload: object


class ForwardingActor(ShellActor):
    actor_kind = "test-forwarder"

    def receiveMsg_Forward(self, message: Forward, sender: Any) -> None:
        self.send(message.to, Store(message.payload))


class StoringActor(ShellActor):
    actor_kind = "test-store"

    def __init__(self) -> None:
        super().__init__()
        self.stored: object = None

    def receiveMsg_Store(self, message: Store, sender: Any) -> None:
        self.stored = message.payload

    def receiveMsg_Echo(self, message: Echo, sender: Any) -> None:
        self.send(sender, Echoed(message.request_id, self.stored))


# Exit notifications land here; the actors run on the pump thread, so the list is appended from there.
EXITS: list[str] = []


class ExitRecordingChild(ShellActor):
    actor_kind = "test-child"

    def receiveMsg_ActorExitRequest(self, message: ActorExitRequest, sender: Any) -> None:
        EXITS.append("child")


class ExitRecordingParent(ShellActor):
    actor_kind = "test-parent"

    def receiveMsg_Echo(self, message: Echo, sender: Any) -> None:
        self.createActor(ExitRecordingChild)
        self.send(sender, Echoed(message.request_id, "child created"))

    def receiveMsg_ActorExitRequest(self, message: ActorExitRequest, sender: Any) -> None:
        EXITS.append("parent")


def create(runtime: ActorRuntime, actor_class: type[Any], global_name: str | None = None) -> Any:
    return runtime.create_actor(actor_class, globalName=global_name).result(timeout=RESULT_WAIT)


def echo(runtime: ActorRuntime, address: Any, payload: object, timeout: float = 5.0) -> Future[Echoed]:
    return runtime.ask(address, Echo(runtime.new_request_id(), payload), timeout, Echoed)


# --- asks ----------------------------------------------------------------------------------------------------

def test_asks_from_sixteen_threads_each_get_their_own_reply(runtime: ActorRuntime) -> None:
    actors = [create(runtime, EchoActor) for _ in range(4)]
    asks_per_thread = 200
    wrong: list[tuple[object, object]] = []
    answered = [0] * 16
    start_together = threading.Barrier(16)

    def caller(thread_index: int) -> None:
        start_together.wait()
        for ask_index in range(asks_per_thread):
            payload = (thread_index, ask_index)
            reply = echo(runtime, actors[ask_index % len(actors)], payload).result(timeout=RESULT_WAIT)
            if reply.payload != payload:
                wrong.append((payload, reply.payload))
            answered[thread_index] += 1

    threads = [threading.Thread(target=caller, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert [thread.name for thread in threads if thread.is_alive()] == [], "a caller never got all its replies"
    assert wrong == []
    assert answered == [asks_per_thread] * 16


def test_an_actor_that_never_replies_fails_the_ask_with_actor_timeout(runtime: ActorRuntime) -> None:
    silent = create(runtime, SilentActor)
    future = runtime.ask(silent, Echo(runtime.new_request_id(), "anyone?"), timeout=0.2)

    with pytest.raises(ActorTimeout, match=r"no reply within 0\.2 s"):
        future.result(timeout=RESULT_WAIT)


def test_a_reply_sent_later_from_another_handler_resolves_the_ask(runtime: ActorRuntime) -> None:
    actor = create(runtime, EchoActor)
    held = runtime.ask(actor, Hold(runtime.new_request_id()), timeout=5.0, reply_type=Echoed)
    runtime.tell(actor, Release("released"))

    assert held.result(timeout=RESULT_WAIT).payload == "released"


def test_an_ask_sees_everything_a_tell_submitted_before_it_caused(runtime: ActorRuntime) -> None:
    forwarder = create(runtime, ForwardingActor)
    store = create(runtime, StoringActor)

    seen = []
    for value in range(50):
        runtime.tell(forwarder, Forward(store, value))
        seen.append(echo(runtime, store, "what is stored?"))

    assert [future.result(timeout=RESULT_WAIT).payload for future in seen] == list(range(50))


def test_a_handler_that_always_raises_fails_the_ask_and_the_actor_keeps_serving(
    runtime: ActorRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    actor = create(runtime, EchoActor)
    caplog.set_level(logging.ERROR, logger="actors.base")

    failed = runtime.ask(actor, Explode(runtime.new_request_id()), timeout=5.0)
    with pytest.raises(ActorFailed) as raised:
        failed.result(timeout=RESULT_WAIT)

    assert raised.value.details is not None
    assert "boom for" in raised.value.details
    assert echo(runtime, actor, "still here").result(timeout=RESULT_WAIT).payload == "still here"
    error_lines = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert error_lines, "each failed attempt is logged at ERROR"
    assert all("Explode(request_id=" in line for line in error_lines)


def test_a_reply_of_the_wrong_type_fails_the_ask(runtime: ActorRuntime) -> None:
    actor = create(runtime, EchoActor)
    future = runtime.ask(actor, Echo(runtime.new_request_id(), "x"), timeout=5.0, reply_type=Explode)

    with pytest.raises(ActorFailed, match="unexpected reply type"):
        future.result(timeout=RESULT_WAIT)


def test_a_request_id_already_in_flight_is_rejected(runtime: ActorRuntime) -> None:
    actor = create(runtime, EchoActor)
    first = runtime.ask(actor, Hold("same-id"), timeout=5.0)
    second = runtime.ask(actor, Hold("same-id"), timeout=5.0)

    with pytest.raises(ValueError, match="already in flight"):
        second.result(timeout=RESULT_WAIT)
    runtime.tell(actor, Release("first"))
    assert first.result(timeout=RESULT_WAIT) == Echoed("same-id", "first")


@pytest.mark.parametrize(
    ("message", "use_real_address", "timeout", "error"),
    [
        pytest.param(NoRequestId("x"), True, 1.0, TypeError, id="message-without-request-id"),
        pytest.param(Echo("id", "x"), False, 1.0, TypeError, id="target-is-not-an-address"),
        pytest.param(Echo("id", "x"), True, 0.0, ValueError, id="timeout-not-positive"),
    ],
)
def test_a_malformed_ask_is_refused_in_the_calling_thread(
    runtime: ActorRuntime, message: Any, use_real_address: bool, timeout: float, error: type[Exception]
) -> None:
    target = create(runtime, EchoActor) if use_real_address else "EchoActor"

    with pytest.raises(error):
        runtime.ask(target, message, timeout)


def test_unknown_messages_are_logged_at_debug_and_dropped(
    runtime: ActorRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    actor = create(runtime, EchoActor)
    caplog.set_level(logging.DEBUG, logger="actors.base")

    runtime.tell(actor, Unknown("what is this"))

    assert echo(runtime, actor, "after").result(timeout=RESULT_WAIT).payload == "after"
    ignored = [record for record in caplog.records if "Unknown(note='what is this')" in record.getMessage()]
    assert [record.levelno for record in ignored] == [logging.DEBUG]


def test_two_runtimes_in_one_process_do_not_share_actors(runtime: ActorRuntime) -> None:
    with ActorRuntime(tick_interval=0.01, name="second-runtime") as second:
        mine = create(runtime, EchoActor, global_name="shared-name")
        probe = runtime.ask(mine, Hold("probe"), timeout=5.0, reply_type=Echoed)
        echo(runtime, mine, "the hold is in place").result(timeout=RESULT_WAIT)
        theirs = create(second, EchoActor, global_name="shared-name")
        second.tell(theirs, Release("from second"))
        echo(second, theirs, "the release is done").result(timeout=RESULT_WAIT)
        runtime.tell(mine, Release("from first"))

        # Had the second runtime reached the first one's actor, the probe would carry "from second".
        assert probe.result(timeout=RESULT_WAIT).payload == "from first"


# --- stop ----------------------------------------------------------------------------------------------------

def test_stop_leaves_no_thread_or_actor_behind_and_later_calls_fail() -> None:
    baseline = set(threading.enumerate())
    EXITS.clear()
    actor_runtime = ActorRuntime(tick_interval=0.01, name="stopping-runtime")
    actor_runtime.start()
    parent = create(actor_runtime, ExitRecordingParent)
    echo(actor_runtime, parent, "make a child").result(timeout=RESULT_WAIT)
    silent = create(actor_runtime, SilentActor)
    unanswered = actor_runtime.ask(silent, Echo(actor_runtime.new_request_id(), "x"), timeout=60.0)

    actor_runtime.stop(timeout=10.0)

    assert set(threading.enumerate()) == baseline
    assert sorted(EXITS) == ["child", "parent"]
    with pytest.raises(RuntimeStopped):
        unanswered.result(timeout=RESULT_WAIT)
    with pytest.raises(RuntimeStopped):
        actor_runtime.ask(parent, Echo("late", "x"), timeout=1.0).result(timeout=RESULT_WAIT)
    with pytest.raises(RuntimeStopped):
        actor_runtime.tell(parent, Echo("late", "x"))
    with pytest.raises(RuntimeStopped):
        actor_runtime.create_actor(EchoActor).result(timeout=RESULT_WAIT)
    assert not actor_runtime.is_running


def test_work_queued_before_stop_is_still_delivered() -> None:
    actor_runtime = ActorRuntime(tick_interval=0.01, name="draining-runtime")
    actor_runtime.start()
    actor = create(actor_runtime, EchoActor)
    asks = [echo(actor_runtime, actor, index) for index in range(200)]

    actor_runtime.stop(timeout=10.0)

    assert [future.result(timeout=RESULT_WAIT).payload for future in asks] == list(range(200))


def test_asks_before_start_fail_with_runtime_stopped() -> None:
    never_started = ActorRuntime()

    with pytest.raises(RuntimeStopped):
        never_started.create_actor(EchoActor).result(timeout=RESULT_WAIT)
    with pytest.raises(RuntimeStopped):
        _ = never_started.ticker


# --- the runtime's metrics -----------------------------------------------------------------------------------

def test_handled_messages_and_ask_outcomes_are_counted(runtime: ActorRuntime) -> None:
    actor = create(runtime, EchoActor, global_name="counted-echo")
    handled_labels = {"actor_kind": "test-echo", "actor": "counted-echo"}
    handled_before = metrics.REGISTRY.get_sample_value(
        "homelab_autoscaler_actor_messages_handled_total", handled_labels
    ) or 0.0
    ok_before = metrics.REGISTRY.get_sample_value("homelab_autoscaler_asks_total", {"outcome": "ok"}) or 0.0

    for index in range(3):
        echo(runtime, actor, index).result(timeout=RESULT_WAIT)

    handled_after = metrics.REGISTRY.get_sample_value(
        "homelab_autoscaler_actor_messages_handled_total", handled_labels
    )
    ok_after = metrics.REGISTRY.get_sample_value("homelab_autoscaler_asks_total", {"outcome": "ok"})
    assert handled_after == handled_before + 3
    assert ok_after == ok_before + 3


OPERATOR_METRICS = {
    "homelab_autoscaler_actor_messages_handled": "counter",
    "homelab_autoscaler_actor_handler_seconds": "histogram",
    "homelab_autoscaler_pump_queue_depth": "gauge",
    "homelab_autoscaler_pump_wait_seconds": "histogram",
    "homelab_autoscaler_asks": "counter",
    "homelab_autoscaler_pending_timers": "gauge",
    "homelab_autoscaler_node_state": "gauge",
    "homelab_autoscaler_node_transitions": "counter",
    "homelab_autoscaler_group_target_size": "gauge",
    "homelab_autoscaler_group_machines": "gauge",
    "homelab_autoscaler_boot_failures": "counter",
    "homelab_autoscaler_quarantined_machines": "gauge",
    "homelab_autoscaler_grpc_requests": "counter",
    "homelab_autoscaler_grpc_request_seconds": "histogram",
    "homelab_autoscaler_kube_writes": "counter",
    "homelab_autoscaler_watch_restarts": "counter",
}


def test_a_scrape_has_every_operator_metric_and_the_series_of_what_happened(runtime: ActorRuntime) -> None:
    # Read as Prometheus reads it: families with their types, and samples; a HELP line alone proves nothing.
    asks_before = metrics.REGISTRY.get_sample_value("homelab_autoscaler_asks_total", {"outcome": "ok"}) or 0.0
    echo(runtime, create(runtime, EchoActor, global_name="rendered-echo"), "touch the runtime metrics").result(
        timeout=RESULT_WAIT
    )
    metrics.set_node_state("render-group", "render-node", "Ready")

    families = {family.name: family for family in text_string_to_metric_families(metrics.render().decode())}

    assert {name: families[name].type for name in OPERATOR_METRICS if name in families} == OPERATOR_METRICS
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families.values()
        for sample in family.samples
    }
    handled = ("homelab_autoscaler_actor_messages_handled_total",
               (("actor", "rendered-echo"), ("actor_kind", "test-echo")))
    assert samples[handled] == 1.0
    assert samples[("homelab_autoscaler_actor_handler_seconds_count", (("actor_kind", "test-echo"),))] >= 1.0
    assert samples[("homelab_autoscaler_asks_total", (("outcome", "ok"),))] >= asks_before + 1
    node_state = ("homelab_autoscaler_node_state", (("group", "render-group"), ("node", "render-node"),
                                                    ("state", "Ready")))
    assert samples[node_state] == 1.0
    metrics.forget_node("render-group", "render-node")
    rendered_again = metrics.render().decode()
    assert 'node="render-node"' not in rendered_again
