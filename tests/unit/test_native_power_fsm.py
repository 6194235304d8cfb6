"""Machines powered natively (spec.power): power commands instead of Jobs, and the power-state readback.

Each test drives the pure state machine through what a user would notice: the commands sent (never twice for one
attempt), the state reached, the conditions and Events, and when the machine reads its power state back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.fsm import effects as fx
from actors.fsm import events as ev
from actors.fsm.derive import KubeNodeObservation, derive
from actors.fsm.errors import InvalidTransition
from actors.fsm.exercise_record import is_exercising
from actors.fsm.node import (
    KubeNodePresence,
    Machine,
    MachineConfig,
    Transition,
    exercise_read_back_on,
    job_name,
    pending_timers,
    step,
    timer_token,
)
from actors.power_port import PowerAction
from schemas.common import ConditionStatus
from schemas.labels import CONDITION_OPERATION_FAILED, CONDITION_POWER_READBACK_FAILING
from schemas.node import ExerciseOutcome, NodeSnapshot, NodeState, NodeStatus, Operation, OperationKind, PowerPolicy
from schemas.power import CredentialsSecret as Credentials
from schemas.power import DriverName, Ipmi, PowerSpec, PowerState, SecretKeySelector, Ssh, WakeOnLan

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IPMI = PowerSpec(ipmi=Ipmi(host="10.0.0.5", credentials=Credentials(name="bmc-m1"), force_off_after="2m"))
WOL_SSH = PowerSpec(
    wake_on_lan=WakeOnLan(mac_address="aa:bb:cc:dd:ee:ff"),
    ssh=Ssh(host="10.0.0.7", user="power", private_key=SecretKeySelector(name="ssh-m1", key="id"), known_hosts="k"),
)
CONFIG = MachineConfig(
    namespace="homelab",
    name="m1",
    group="workers",
    kubernetes_node_name="m1",
    power=IPMI,
    readback_transition_seconds=5.0,
    readback_steady_seconds=300.0,
    power_on_grace_seconds=60.0,
    power_on_retries=1,
)
SNAPSHOT = NodeSnapshot(labels={"kubernetes.io/hostname": "m1"}, capacity={"cpu": "8", "pods": "110"})
READY = ev.NodeReady(provider_id="homelab://homelab/m1", snapshot=SNAPSHOT)
ON = ev.PowerStateObserved(PowerState.ON, DriverName.IPMI)
OFF = ev.PowerStateObserved(PowerState.OFF, DriverName.IPMI)


def shut_down(config: MachineConfig = CONFIG, **status: object) -> Machine:
    fields: dict[str, object] = {"state": NodeState.SHUTDOWN, "since": NOW - timedelta(hours=1), "attempts": 2}
    return Machine(config=config, status=NodeStatus.model_validate(fields | status))


def drive(machine: Machine, *steps: tuple[ev.Event, datetime]) -> tuple[Machine, list[fx.Effect]]:
    """Feed events in order; the machine after them and every effect they asked for."""
    effects: list[fx.Effect] = []
    for event, now in steps:
        result = step(machine, event, now)
        machine = result.machine
        effects += result.effects
    return machine, effects


def commands(effects: Sequence[fx.Effect]) -> list[tuple[PowerAction, int]]:
    return [(e.action, e.attempt) for e in effects if isinstance(e, fx.SendPowerCommand)]


def reasons(effects: Sequence[fx.Effect]) -> list[str]:
    return [e.reason for e in effects if isinstance(e, fx.RecordEvent)]


def condition(machine: Machine, type_: str) -> tuple[ConditionStatus, str] | None:
    found = next((c for c in machine.status.conditions if c.type == type_), None)
    return (found.status, found.reason) if found else None


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def booted_natively() -> Machine:
    """Powered on through IPMI, read On, its Kubernetes Node Ready."""
    machine, _ = drive(
        shut_down(),
        (ev.PowerOnRequested(), at(0)),
        (ev.PowerCommandSucceeded(PowerAction.POWER_ON, 3, DriverName.IPMI), at(1)),
        (ON, at(20)),
        (READY, at(40)),
    )
    return machine


# --------------------------------------------------------------------------------------------------
# Powering on


def test_a_power_on_sends_the_command_instead_of_creating_a_job_and_stores_the_intent_first() -> None:
    result = step(shut_down(), ev.PowerOnRequested(), NOW)
    status = result.machine.status
    assert status.state is NodeState.STARTING_UP
    assert status.operation == Operation(
        kind=OperationKind.STARTUP, attempt=3, job_name="m1-startup-3", started=NOW, driver=DriverName.IPMI
    )
    assert result.effects[:2] == (fx.PatchStatus(status), fx.SendPowerCommand(PowerAction.POWER_ON, 3, "m1-startup-3"))
    assert not any(isinstance(effect, fx.CreateJob) for effect in result.effects)
    assert "startup #3: power-on sent by ipmi" in status.message


def test_a_natively_powered_machine_boots_and_records_its_readback() -> None:
    machine, effects = drive(
        shut_down(),
        (ev.PowerOnRequested(), at(0)),
        (ev.PowerCommandSucceeded(PowerAction.POWER_ON, 3, DriverName.IPMI), at(1)),
        (ON, at(6)),
    )
    assert machine.status.state is NodeState.STARTING_UP
    assert machine.status.reason == "PoweredOn"
    assert machine.status.power_readback is not None
    assert (machine.status.power_readback.state, machine.status.power_readback.observed_at) == (PowerState.ON, at(6))
    booted, _ = drive(machine, (READY, at(40)))
    assert booted.status.state is NodeState.READY
    assert booted.status.recent_boot_seconds == (40.0,)
    assert commands(effects) == [(PowerAction.POWER_ON, 3)]


def test_a_power_on_still_read_off_after_the_grace_is_sent_again_then_fails_the_boot_before_boot_timeout() -> None:
    sent, _ = drive(
        shut_down(),
        (ev.PowerOnRequested(), at(0)),
        (ev.PowerCommandSucceeded(PowerAction.POWER_ON, 3, DriverName.IPMI), at(1)),
    )
    within_grace, effects = drive(sent, (OFF, at(30)))
    assert within_grace.status.state is NodeState.STARTING_UP
    assert commands(effects) == []

    retried, effects = drive(within_grace, (OFF, at(62)))
    assert commands(effects) == [(PowerAction.POWER_ON, 4)], "a new attempt, never the same one again"
    assert "PowerOnRetry" in reasons(effects)
    assert retried.status.operation is not None
    assert retried.status.operation.started == at(0), "the boot keeps its start: bootTimeout bounds every attempt"
    assert retried.status.operation_tries == 2

    failed, effects = drive(
        retried,
        (ev.PowerCommandSucceeded(PowerAction.POWER_ON, 4, DriverName.IPMI), at(63)),
        (OFF, at(100)),
        (OFF, at(124)),
    )
    assert failed.status.state is NodeState.BOOT_FAILED
    assert failed.status.reason == "PowerOnNotObserved"
    assert "still reads it Off 1m after power-on #4 by ipmi (2 tries)" in failed.status.message
    assert commands(effects) == []
    assert at(124) < at(CONFIG.boot_timeout_seconds)
    assert condition(failed, CONDITION_OPERATION_FAILED) == (ConditionStatus.TRUE, "PowerOnNotObserved")


@pytest.mark.parametrize(
    ("failure", "retryable"),
    [("CredentialsRejected", False), ("SecretMissing", False), ("TlsVerificationFailed", False), ("TimedOut", True)],
)
def test_a_failed_power_on_fails_the_boot_with_an_event_naming_the_failure(failure: str, retryable: bool) -> None:
    machine, effects = drive(
        shut_down(),
        (ev.PowerOnRequested(), at(0)),
        (ev.PowerCommandFailed(PowerAction.POWER_ON, 3, DriverName.IPMI, failure, "the BMC said no"), at(2)),
    )
    assert machine.status.state is NodeState.BOOT_FAILED
    assert machine.status.consecutive_failures == 1
    warning = next(e for e in effects if isinstance(e, fx.RecordEvent) and e.reason == "PowerOnFailed")
    assert f"power-on #3 by ipmi failed ({failure}): the BMC said no" in warning.message


def test_an_outcome_of_an_older_attempt_changes_nothing() -> None:
    machine, _ = drive(shut_down(), (ev.PowerOnRequested(), at(0)))
    late = ev.PowerCommandFailed(PowerAction.POWER_ON, 2, DriverName.IPMI, "TimedOut")
    assert step(machine, late, at(1)) == Transition(machine)


# --------------------------------------------------------------------------------------------------
# Powering off


def test_a_shutdown_completes_on_readback_off_not_on_the_node_disappearing() -> None:
    machine, effects = drive(
        booted_natively(),
        (ev.PowerOffRequested(drain=False), at(100)),
        (ev.PowerCommandSucceeded(PowerAction.POWER_OFF, 4, DriverName.IPMI), at(101)),
        (ev.NodeNotReady(), at(110)),
        (ev.NodeGone(), at(115)),
    )
    assert commands(effects) == [(PowerAction.POWER_OFF, 4)]
    assert fx.Cordon() in effects
    assert machine.status.state is NodeState.SHUTTING_DOWN, "only the BMC's readback confirms the power-off"
    off, effects = drive(machine, (OFF, at(120)))
    assert off.status.state is NodeState.SHUTDOWN
    assert off.status.reason == "PoweredOff"
    assert "ipmi reads it Off after power-off #4 by ipmi" in off.status.message
    assert off.status.recent_shutdown_seconds == (20.0,)


def test_a_readback_off_while_the_node_is_still_there_deletes_it() -> None:
    machine, effects = drive(
        booted_natively(),
        (ev.PowerOffRequested(drain=False), at(100)),
        (ev.PowerCommandSucceeded(PowerAction.POWER_OFF, 4, DriverName.IPMI), at(101)),
        (ev.NodeNotReady(), at(105)),
        (OFF, at(110)),
    )
    assert machine.status.state is NodeState.SHUTDOWN
    assert fx.DeleteKubeNode() in effects


def test_a_graceful_off_still_read_on_after_force_off_after_is_followed_by_one_forced_off() -> None:
    commanded, _ = drive(
        booted_natively(),
        (ev.PowerOffRequested(drain=False), at(100)),
        (ev.PowerCommandSucceeded(PowerAction.POWER_OFF, 4, DriverName.IPMI), at(101)),
    )
    waiting, effects = drive(commanded, (ON, at(160)))
    assert commands(effects) == []
    forced, effects = drive(waiting, (ON, at(222)))
    assert commands(effects) == [(PowerAction.FORCE_OFF, 4)]
    assert "ForcingOff" in reasons(effects)
    assert forced.status.operation is not None
    assert forced.status.operation.forced_off == at(222)
    still, effects = drive(
        forced,
        (ev.PowerCommandSucceeded(PowerAction.FORCE_OFF, 4, DriverName.IPMI), at(223)),
        (ON, at(228)),
    )
    assert commands(effects) == [], "the power is cut once"
    off, _ = drive(still, (OFF, at(233)))
    assert off.status.state is NodeState.SHUTDOWN


def test_a_failed_power_off_is_retried_as_a_new_attempt_then_the_machine_returns_to_ready() -> None:
    machine, effects = drive(
        booted_natively(),
        (ev.PowerOffRequested(drain=False), at(100)),
        (ev.PowerCommandFailed(PowerAction.POWER_OFF, 4, DriverName.IPMI, "CredentialsRejected"), at(101)),
    )
    assert machine.status.state is NodeState.SHUTTING_DOWN
    assert commands(effects) == [(PowerAction.POWER_OFF, 4), (PowerAction.POWER_OFF, 5)]
    assert "ShutdownRetry" in reasons(effects)
    gave_up, effects = drive(
        machine,
        (ev.PowerCommandFailed(PowerAction.POWER_OFF, 5, DriverName.IPMI, "CredentialsRejected"), at(102)),
        (ev.PowerCommandFailed(PowerAction.POWER_OFF, 6, DriverName.IPMI, "CredentialsRejected"), at(103)),
    )
    assert gave_up.status.state is NodeState.READY
    assert gave_up.status.reason == "ShutdownFailed"
    assert "(CredentialsRejected)" in gave_up.status.message
    assert fx.Uncordon() in effects


def test_wake_on_lan_and_ssh_without_a_bmc_keep_the_node_disappearance_rule() -> None:
    config = replace(CONFIG, power=WOL_SSH)
    machine = replace(
        shut_down(config, state=NodeState.READY, provider_id="homelab://homelab/m1"), kube_node=KubeNodePresence.READY
    )
    assert pending_timers(machine) == (), "nothing can read it back, so nothing is polled"
    stopping, effects = drive(
        machine,
        (ev.PowerOffRequested(drain=False), at(0)),
        (ev.PowerCommandSucceeded(PowerAction.POWER_OFF, 3, DriverName.SSH), at(2)),
    )
    assert commands(effects) == [(PowerAction.POWER_OFF, 3)]
    assert stopping.status.state is NodeState.SHUTTING_DOWN
    off, _ = drive(stopping, (ev.NodeGone(), at(30)))
    assert off.status.state is NodeState.SHUTDOWN
    assert off.status.reason == "PoweredOff"
    assert "powered off by power-off #3 by ssh" in off.status.message


# --------------------------------------------------------------------------------------------------
# Readback: polling, failures, machines switched by hand


def test_the_readback_is_polled_fast_while_switching_and_slowly_otherwise_one_at_a_time() -> None:
    idle = shut_down()
    (timer,) = pending_timers(idle)
    assert timer.kind is ev.TimerKind.READBACK_POLL
    asked, effects = drive(idle, (ev.TimerFired(timer.kind, timer.token), timer.deadline))
    assert fx.ReadPowerState(2) in effects
    assert pending_timers(asked) == (), "no second readback while one is in flight"
    answered, effects = drive(asked, (OFF, timer.deadline + timedelta(seconds=1)))
    (slow,) = pending_timers(answered)
    assert slow.deadline == timer.deadline + timedelta(seconds=300)
    booting, _ = drive(answered, (ev.PowerOnRequested(), timer.deadline + timedelta(seconds=10)))
    fast = next(t for t in pending_timers(booting) if t.kind is ev.TimerKind.READBACK_POLL)
    assert fast.deadline == timer.deadline + timedelta(seconds=5)


def test_a_failing_readback_sets_a_condition_and_one_event_and_never_moves_the_machine() -> None:
    ready = booted_natively()
    failure = ev.PowerReadbackFailed("CredentialsRejected", "user admin refused", DriverName.IPMI)
    failing, effects = drive(ready, (failure, at(400)))
    assert failing.status.state is NodeState.READY
    assert condition(failing, CONDITION_POWER_READBACK_FAILING) == (ConditionStatus.TRUE, "CredentialsRejected")
    assert reasons(effects) == ["PowerReadbackFailed"]
    again, effects = drive(failing, (failure, at(700)))
    assert reasons(effects) == [], "the same failure again adds no Event"
    assert again.status.state is NodeState.READY
    recovered, _ = drive(again, (ON, at(1000)))
    assert condition(recovered, CONDITION_POWER_READBACK_FAILING) == (ConditionStatus.FALSE, "ReadBack")
    assert recovered.status.state is NodeState.READY


def test_a_failing_readback_while_shutting_down_leaves_the_power_off_waiting() -> None:
    commanded, _ = drive(
        booted_natively(),
        (ev.PowerOffRequested(drain=False), at(100)),
        (ev.PowerCommandSucceeded(PowerAction.POWER_OFF, 4, DriverName.IPMI), at(101)),
        (ev.NodeGone(), at(110)),
    )
    failing, effects = drive(commanded, (ev.PowerReadbackFailed("Unreachable", "", DriverName.IPMI), at(120)))
    assert failing.status.state is NodeState.SHUTTING_DOWN
    assert commands(effects) == []


def test_a_machine_read_on_while_believed_off_is_adopted_by_the_node_ready_rules() -> None:
    machine, effects = drive(shut_down(), (ON, at(0)))
    assert machine.status.state is NodeState.SHUTDOWN
    assert reasons(effects) == ["PoweredOnOutsideAutoscaler"]
    _, effects = drive(machine, (ON, at(300)))
    assert reasons(effects) == [], "said once"
    adopted, _ = drive(machine, (READY, at(400)))
    assert adopted.status.state is NodeState.READY
    assert adopted.status.reason == "StartedOutsideAutoscaler"


def test_a_cancelled_native_boot_read_on_is_powered_off_at_once() -> None:
    cancelled, _ = drive(
        shut_down(),
        (ev.PowerOnRequested(), at(0)),
        (ev.CancelBoot(), at(5)),
        (ev.PowerCommandSucceeded(PowerAction.POWER_ON, 3, DriverName.IPMI), at(6)),
    )
    assert cancelled.status.state is NodeState.SHUTDOWN
    read_on, effects = drive(cancelled, (ON, at(10)))
    assert read_on.status.state is NodeState.SHUTTING_DOWN
    assert commands(effects) == [(PowerAction.POWER_OFF, 4)]
    assert reasons(effects) == ["ReleasedBootPoweredOn"]
    off, _ = drive(
        read_on, (ev.PowerCommandSucceeded(PowerAction.POWER_OFF, 4, DriverName.IPMI), at(11)), (OFF, at(16))
    )
    assert off.status.state is NodeState.SHUTDOWN


def test_a_cancelled_native_boot_whose_node_is_ready_first_is_drained_by_the_released_boot_rule() -> None:
    cancelled, _ = drive(
        shut_down(),
        (ev.PowerOnRequested(), at(0)),
        (ev.CancelBoot(), at(5)),
        (ev.PowerCommandSucceeded(PowerAction.POWER_ON, 3, DriverName.IPMI), at(6)),
    )
    powering_off, effects = drive(cancelled, (READY, at(8)))
    assert powering_off.status.state is NodeState.SHUTTING_DOWN
    assert "ReleasedBootCameUp" in reasons(effects)


BOOT_TIMEOUT_TOKEN = timer_token(job_name("m1", OperationKind.STARTUP, 3), ev.TimerKind.BOOT_TIMEOUT)


def test_a_hung_boot_given_up_by_ca_is_powered_off_and_forced_off_when_it_ignores_the_soft_off() -> None:
    # Read On, but its Kubernetes Node never registers (stuck in firmware): the boot times out, CA lets it go.
    failed, _ = drive(
        shut_down(),
        (ev.PowerOnRequested(), at(0)),
        (ev.PowerCommandSucceeded(PowerAction.POWER_ON, 3, DriverName.IPMI), at(1)),
        (ON, at(6)),
        (ev.TimerFired(ev.TimerKind.BOOT_TIMEOUT, BOOT_TIMEOUT_TOKEN), at(600)),
    )
    assert failed.status.state is NodeState.BOOT_FAILED
    released, _ = drive(failed, (ev.PowerOffRequested(), at(620)))
    assert released.status.state is NodeState.SHUTDOWN
    poll = [timer for timer in pending_timers(released) if timer.kind is ev.TimerKind.READBACK_POLL]
    assert [timer.deadline for timer in poll] == [at(625)], "read back at the fast interval while it may come up"

    powering_off, effects = drive(released, (ON, at(625)))
    assert powering_off.status.state is NodeState.SHUTTING_DOWN
    assert commands(effects) == [(PowerAction.POWER_OFF, 4)]
    assert reasons(effects) == ["ReleasedBootPoweredOn"]
    forced, effects = drive(
        powering_off,
        (ev.PowerCommandSucceeded(PowerAction.POWER_OFF, 4, DriverName.IPMI), at(626)),
        (ON, at(750)),  # the soft off was ignored past forceOffAfter (2m)
    )
    assert commands(effects) == [(PowerAction.FORCE_OFF, 4)]
    off, _ = drive(
        forced, (ev.PowerCommandSucceeded(PowerAction.FORCE_OFF, 4, DriverName.IPMI), at(751)), (OFF, at(755))
    )
    assert off.status.state is NodeState.SHUTDOWN
    assert off.status.cooldown_until is not None, "still cooling down after its failed boot"


def test_a_released_boot_read_on_after_boot_timeout_is_left_to_the_adoption_rules() -> None:
    cancelled, _ = drive(
        shut_down(),
        (ev.PowerOnRequested(), at(0)),
        (ev.CancelBoot(), at(5)),
        (ev.PowerCommandSucceeded(PowerAction.POWER_ON, 3, DriverName.IPMI), at(6)),
    )
    later, effects = drive(cancelled, (ON, at(5 + 601)))  # someone else powered it on: not ours to switch off
    assert later.status.state is NodeState.SHUTDOWN
    assert reasons(effects) == ["PoweredOnOutsideAutoscaler"]


def test_a_machine_in_maintenance_is_not_polled() -> None:
    config = replace(CONFIG, power_policy=PowerPolicy.MAINTENANCE)
    machine = shut_down(config, state=NodeState.MAINTENANCE)
    assert pending_timers(machine) == ()


# --------------------------------------------------------------------------------------------------
# Restart


def test_a_restart_mid_power_on_sends_nothing_again_and_reads_back_at_once() -> None:
    operation = Operation(
        kind=OperationKind.STARTUP, attempt=3, job_name="m1-startup-3", started=at(0), driver=DriverName.IPMI
    )
    status = NodeStatus(state=NodeState.STARTING_UP, since=at(0), operation=operation, attempts=3, operation_tries=1)
    derived = derive(status, CONFIG, jobs=(), kube_node=None, now=at(30))
    assert commands(derived.effects) == [], "never the same attempt twice"
    assert not any(isinstance(e, fx.CreateJob) for e in derived.effects)
    assert fx.ReadPowerState(3) in derived.effects
    assert derived.machine.status.state is NodeState.STARTING_UP
    # The readback decides what became of the power-on: still Off after the grace, it is sent as a new attempt.
    retried, effects = drive(derived.machine, (OFF, at(70)))
    assert commands(effects) == [(PowerAction.POWER_ON, 4)]
    assert retried.status.attempts == 4


def test_a_restart_mid_power_off_keeps_waiting_for_the_readback() -> None:
    operation = Operation(
        kind=OperationKind.SHUTDOWN, attempt=4, job_name="m1-shutdown-4", started=at(0), driver=DriverName.IPMI,
        commanded=at(1),
    )
    status = NodeStatus(
        state=NodeState.SHUTTING_DOWN, since=at(0), operation=operation, attempts=4, operation_tries=1
    )
    derived = derive(status, CONFIG, jobs=(), kube_node=None, now=at(30))
    assert derived.machine.status.state is NodeState.SHUTTING_DOWN
    assert commands(derived.effects) == []
    assert fx.ReadPowerState(4) in derived.effects
    assert derived.machine.job_finished, "the recorded outcome survives the restart"
    off, _ = drive(derived.machine, (OFF, at(35)))
    assert off.status.state is NodeState.SHUTDOWN


def test_after_a_restart_machines_at_rest_read_back_spread_over_one_steady_interval() -> None:
    delays = []
    for name in ("m1", "m2", "m3", "m4"):
        config = replace(CONFIG, name=name, kubernetes_node_name=name)
        status = NodeStatus(state=NodeState.SHUTDOWN, since=at(-86400), attempts=2)
        derived = derive(status, config, jobs=(), kube_node=None, now=at(0))
        assert not any(isinstance(e, fx.ReadPowerState) for e in derived.effects), "not all in the first second"
        (poll,) = [e for e in derived.effects if isinstance(e, fx.StartTimer) and e.kind is ev.TimerKind.READBACK_POLL]
        assert 0 <= poll.after_seconds <= CONFIG.readback_steady_seconds
        delays.append(poll.after_seconds)
    assert len(set(delays)) == len(delays)


def test_a_restart_of_an_ssh_power_off_whose_node_is_gone_completes_it() -> None:
    config = replace(CONFIG, power=WOL_SSH)
    operation = Operation(
        kind=OperationKind.SHUTDOWN, attempt=4, job_name="m1-shutdown-4", started=at(0), driver=DriverName.SSH
    )
    status = NodeStatus(
        state=NodeState.SHUTTING_DOWN, since=at(0), operation=operation, attempts=4, operation_tries=1
    )
    derived = derive(status, config, jobs=(), kube_node=None, now=at(30))
    assert derived.machine.status.state is NodeState.SHUTDOWN
    assert commands(derived.effects) == []


# --------------------------------------------------------------------------------------------------
# Random histories: never the same command twice, one readback at a time, failed readbacks never move


@dataclass
class PoweredWorld:
    """A machine's BMC, its Kubernetes Node and the power port, as the machine's effects left them."""

    now: datetime
    machine: Machine
    on: bool = False
    node_ready: bool = False
    commands_in_flight: list[fx.SendPowerCommand] = field(default_factory=list)
    readback_in_flight: bool = False
    timers: dict[str, tuple[ev.TimerKind, datetime]] = field(default_factory=dict)
    sent: list[tuple[PowerAction, int]] = field(default_factory=list)

    def feed(self, event: ev.Event) -> None:
        before = self.machine.status.state
        try:
            result = step(self.machine, event, self.now)
        except InvalidTransition:
            return  # a command refused in this state: nothing happens
        if isinstance(event, ev.PowerReadbackFailed):
            assert result.machine.status.state is before, "a failed readback never moves the machine"
        self.machine = result.machine
        self.apply(result.effects)

    def apply(self, effects: Sequence[fx.Effect]) -> None:
        for effect in effects:
            if isinstance(effect, fx.SendPowerCommand):
                key = (effect.action, effect.attempt)
                assert key not in self.sent, f"{key} sent twice"
                self.sent.append(key)
                self.commands_in_flight.append(effect)
            elif isinstance(effect, fx.ReadPowerState):
                assert not self.readback_in_flight, "a second readback while one is in flight"
                self.readback_in_flight = True
            elif isinstance(effect, fx.StartTimer):
                self.timers[effect.token] = (effect.kind, self.now + timedelta(seconds=effect.after_seconds))
            elif isinstance(effect, fx.CancelTimer):
                self.timers.pop(effect.token, None)
            elif isinstance(effect, fx.CreateJob):
                raise AssertionError("a Job for a machine powered natively")

    def act(self, action: str, seconds: int) -> None:
        if action == "power-on":
            self.feed(ev.PowerOnRequested())
        elif action == "exercise":
            self.feed(ev.PowerOnRequested(exercise=True))
        elif action == "power-off":
            self.feed(ev.PowerOffRequested(drain=False))
        elif action in ("command-done", "command-failed", "command-ignored") and self.commands_in_flight:
            command = self.commands_in_flight.pop(0)
            if action == "command-failed":
                self.feed(ev.PowerCommandFailed(command.action, command.attempt, DriverName.IPMI, "TimedOut"))
                return
            if action == "command-done":  # "command-ignored": the BMC said yes and nothing happened
                self.on = command.action is PowerAction.POWER_ON
            self.feed(ev.PowerCommandSucceeded(command.action, command.attempt, DriverName.IPMI))
        elif action in ("readback", "readback-failed") and self.readback_in_flight:
            self.readback_in_flight = False
            if action == "readback-failed":
                self.feed(ev.PowerReadbackFailed("Unreachable", "no route", DriverName.IPMI))
            else:
                self.feed(ON if self.on else OFF)
        elif action == "node" and self.on != self.node_ready:
            self.node_ready = self.on
            self.feed(READY if self.on else ev.NodeGone())
        elif action == "wait":
            self.now += timedelta(seconds=seconds)
            for token, (kind, deadline) in sorted(self.timers.items(), key=lambda item: item[1][1]):
                if deadline <= self.now and token in self.timers:
                    del self.timers[token]
                    self.feed(ev.TimerFired(kind, token))
        elif action == "restart":
            # The process dies: what was in flight in the old power port is lost with it.
            self.commands_in_flight.clear()
            self.readback_in_flight = False
            self.timers.clear()
            kube_node = KubeNodeObservation(True, "homelab://homelab/m1", SNAPSHOT) if self.node_ready else None
            derived = derive(self.machine.status, self.machine.config, (), kube_node, self.now)
            self.machine = derived.machine
            self.apply(derived.effects)


ACTIONS = st.sampled_from([
    "power-on", "power-off", "command-done", "command-done", "command-failed", "command-ignored", "readback",
    "readback", "readback-failed", "node", "wait", "wait", "restart", "exercise",
])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(st.tuples(ACTIONS, st.integers(1, 200)), min_size=10, max_size=80))
def test_random_histories_never_send_a_command_twice_for_one_attempt(history: list[tuple[str, int]]) -> None:
    world = PoweredWorld(now=NOW, machine=shut_down())
    for action, seconds in history:
        world.act(action, seconds)
        status = world.machine.status
        if is_exercising(status):
            assert status.state in (NodeState.STARTING_UP, NodeState.READY, NodeState.SHUTTING_DOWN)
        if is_exercising(status) and status.state is NodeState.READY:
            # Ready while exercised: only until the BMC reads the power back On, then it is powered off again.
            assert not exercise_read_back_on(world.machine), "a checked exercise is powered off again"


# --------------------------------------------------------------------------------------------------
# Exercise boots: with a BMC, the check is the Kubernetes Node Ready and the power read back On


def test_an_exercise_of_a_machine_with_a_bmc_is_checked_only_once_its_power_reads_back_on() -> None:
    ready, _ = drive(
        shut_down(),
        (ev.PowerOnRequested(exercise=True), at(0)),
        (ev.PowerCommandSucceeded(PowerAction.POWER_ON, 3, DriverName.IPMI), at(1)),
        (READY, at(20)),
    )
    assert ready.status.state is NodeState.READY, "Ready, but its power was not read back On yet"
    record = ready.status.last_exercise
    assert record is not None
    assert record.outcome is ExerciseOutcome.RUNNING

    checked, effects = drive(ready, (ON, at(25)))
    assert checked.status.state is NodeState.SHUTTING_DOWN
    assert "ExerciseChecked" in reasons(effects)
    assert checked.status.last_exercise is not None
    assert "power read back On" in checked.status.last_exercise.message

    drained, _ = drive(checked, (ev.DrainFinished(succeeded=True), at(30)))
    off, effects = drive(
        drained,
        (ev.PowerCommandSucceeded(PowerAction.POWER_OFF, 4, DriverName.IPMI), at(31)),
        (ev.NodeGone(), at(35)),
        (OFF, at(40)),
    )
    assert off.status.state is NodeState.SHUTDOWN
    assert off.status.last_exercise is not None
    assert off.status.last_exercise.outcome is ExerciseOutcome.SUCCEEDED
    assert "ExerciseSucceeded" in reasons(effects)


def test_an_exercise_whose_power_on_is_refused_by_the_bmc_is_a_failed_boot() -> None:
    failed, effects = drive(
        shut_down(),
        (ev.PowerOnRequested(exercise=True), at(0)),
        (ev.PowerCommandFailed(PowerAction.POWER_ON, 3, DriverName.IPMI, "CredentialsRejected", "401"), at(1)),
    )
    assert failed.status.state is NodeState.SHUTDOWN
    assert failed.status.consecutive_failures == 1
    assert failed.status.last_exercise is not None
    assert failed.status.last_exercise.outcome is ExerciseOutcome.FAILED
    assert "ExerciseFailed" in reasons(effects)
