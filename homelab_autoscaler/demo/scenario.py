"""The demo's script: a stand-in for Cluster Autoscaler that drives the operator over real gRPC, and what must follow.

Two parts (the readers that do the I/O are in `readers`):

- The steps (`scenario_steps`), pure: each says what CA does (an RPC it calls, as CA would name the nodes) and what
  must then be seen, as a list of `Check`s over an `Observation` and the run's `History`. The roles come from the
  homelab (`Cast`): the scale-up of three minis chooses the machine that cannot boot, because priorities say so.
- The `Driver`, which loops like CA: every tick it observes both sides, records what changed and shows it; a step
  acts once, then waits for its checks until its deadline, then lingers a moment so a person can read the outcome.

Scenario: CA connects (all off) → scales `minis` up by 3 (two boot and register, one fails and is reported as a
failed creation) → deletes the failed stand-in (it cools down) → scales `gpu` up by 1 → scales a running mini down
(cordon, shutdown Job, Node deleted, Shutdown) → the outcome holds. The mini scaled down is the one the operator
switches natively: Wake-on-LAN boots it and its IPMI BMC reads it back On, then powers it off and reads it back Off
(which, not the Node going away, confirms the power-off); no power Job ever runs for it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

import grpc
from kubernetes import client as kube_client

from actors.errors import OperatorError
from homelab_autoscaler.demo.homelab import DemoHomelab, Timing
from homelab_autoscaler.demo.observation import (
    Change,
    ChangeKind,
    Check,
    History,
    InstanceSeen,
    Observation,
    StepStatus,
)
from homelab_autoscaler.demo.readers import (
    Autoscaler,
    CloudProviderClient,
    Cluster,
    ClusterReader,
    RefusedCall,
    observe,
)
from homelab_autoscaler.status_view import MachineColumn
from schemas.node import NodeState
from schemas.power import DriverName, PowerState

LOGGER = logging.getLogger(__name__)

SCALE_UP_DELTA: Final = 3
EXIT_REACHED: Final = 0
EXIT_NOT_REACHED: Final = 1
EXIT_INTERRUPTED: Final = 130


class ScenarioError(Exception):
    """The cast does not fit the homelab: the scenario cannot be played in it."""


class Interrupted(Exception):  # an event, not an error: a person pressed Ctrl-C
    """The run was asked to stop before the scenario finished."""


# --- the cast and the steps (pure) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cast:
    """Who plays which part, read from the homelab (see the module docstring)."""

    homelab: DemoHomelab
    scale_up_group: str
    chosen: tuple[str, ...]
    """The machines the first scale-up powers on (highest priority first)."""
    failing: str
    second_group: str
    second_machine: str
    scaled_down: str
    """The running mini CA removes at the end (the lower-priority one of those that booted)."""

    @property
    def booting(self) -> tuple[str, ...]:
        return tuple(name for name in self.chosen if name != self.failing)

    @property
    def untouched(self) -> tuple[str, ...]:
        """Machines no step powers on."""
        used = {*self.chosen, self.second_machine}
        return tuple(machine.name for machine in self.homelab.machines if machine.name not in used)

    @property
    def native(self) -> tuple[str, ...]:
        """Machines the operator switches itself (Wake-on-LAN on, IPMI off and readback)."""
        return tuple(machine.name for machine in self.homelab.native_machines())

    def provider_id(self, machine: str) -> str:
        return self.homelab.machine(machine).expected_provider_id(self.homelab.namespace)

    def group_id(self, machine: str) -> str:
        return self.homelab.group_id(self.homelab.machine(machine).group)


def cast_of(homelab: DemoHomelab, delta: int = SCALE_UP_DELTA) -> Cast:
    """The roles of the scenario in `homelab`; raises ScenarioError when the homelab cannot play them. Pure."""
    failing = [machine for machine in homelab.machines if machine.fails_to_boot]
    if len(failing) != 1:
        raise ScenarioError("the demo homelab needs exactly one machine that fails to boot")
    first_group = failing[0].group
    chosen = tuple(machine.name for machine in homelab.members(first_group)[:delta])
    if failing[0].name not in chosen or len(chosen) < delta:
        raise ScenarioError(f"a scale-up of {delta} in {first_group} would not choose {failing[0].name}")
    others = [group.name for group in homelab.groups if group.name != first_group and homelab.members(group.name)]
    if not others:
        raise ScenarioError("the demo homelab needs a second group")
    booting = [name for name in chosen if name != failing[0].name]
    return Cast(
        homelab=homelab,
        scale_up_group=first_group,
        chosen=chosen,
        failing=failing[0].name,
        second_group=others[0],
        second_machine=homelab.members(others[0])[0].name,
        scaled_down=booting[-1],
    )


Act = Callable[[Autoscaler, Observation], str]
"""Makes CA's calls for a step; returns them as one line for the log."""
Goal = Callable[[Observation, History], tuple[Check, ...]]


@dataclass(frozen=True)
class Step:
    title: str
    explanation: str
    goal: Goal
    world_seconds: float
    """How long the simulated world needs for the goal at speed 1 (the deadline is derived from it)."""
    act: Act | None = None
    columns: tuple[MachineColumn, ...] = ()
    """The machine table's columns the step is about: a narrow live view gives up every other column first."""


def scenario_steps(cast: Cast) -> tuple[Step, ...]:
    """The whole script. Pure: acts and goals are closures over the cast."""
    first_id = cast.homelab.group_id(cast.scale_up_group)
    second_id = cast.homelab.group_id(cast.second_group)
    failing_id = cast.provider_id(cast.failing)

    def connected(seen: Observation, history: History) -> tuple[Check, ...]:
        listed = {group.id for group in seen.groups}
        return (
            Check(f"CA lists the node groups {first_id} and {second_id}", {first_id, second_id} <= listed),
            Check(
                "every machine is off: targets 0, no instances",
                all(group.target == 0 and not group.instances for group in seen.groups)
                and all(machine.state == NodeState.SHUTDOWN.value for machine in seen.view.machines),
            ),
        )

    def scale_up(ca: Autoscaler, seen: Observation) -> str:
        ca.increase_size(first_id, SCALE_UP_DELTA)
        return f"NodeGroupIncreaseSize id={first_id} delta={SCALE_UP_DELTA}"

    def scaled_up(seen: Observation, history: History) -> tuple[Check, ...]:
        return (
            _target(seen, first_id, SCALE_UP_DELTA),
            *(_running(seen, cast, name) for name in cast.booting),
            *(_switched_on_natively(history, name) for name in cast.booting if name in cast.native),
            Check(
                f"{cast.failing}'s failed boot reaches CA: {failing_id} creating + error",
                _failed_creation(seen, first_id, failing_id) is not None,
            ),
        )

    def delete_failed(ca: Autoscaler, seen: Observation) -> str:
        # CA builds a stand-in node for an instance that never registered and names it by the instance id.
        ca.delete_nodes(first_id, [(failing_id, failing_id)])
        return f"NodeGroupDeleteNodes id={first_id} nodes=[{failing_id}] (the failed creation's stand-in)"

    def failed_deleted(seen: Observation, history: History) -> tuple[Check, ...]:
        machine = seen.machine(cast.failing)
        group = seen.group(first_id)
        return (
            _target(seen, first_id, SCALE_UP_DELTA - 1),
            Check(f"{failing_id} is no longer listed", group is not None and group.instance(failing_id) is None),
            Check(
                f"{cast.failing} is Shutdown and cooling down",
                machine is not None
                and machine.state == NodeState.SHUTDOWN.value
                and bool(machine.cooldown_seconds)
                and (machine.consecutive_failures or 0) >= 1,
            ),
        )

    def scale_up_second(ca: Autoscaler, seen: Observation) -> str:
        ca.increase_size(second_id, 1)
        return f"NodeGroupIncreaseSize id={second_id} delta=1"

    def second_scaled_up(seen: Observation, history: History) -> tuple[Check, ...]:
        return _target(seen, second_id, 1), _running(seen, cast, cast.second_machine)

    def scale_down(ca: Autoscaler, seen: Observation) -> str:
        node = seen.kube_node(cast.scaled_down)
        provider_id = node.provider_id if node is not None else cast.provider_id(cast.scaled_down)
        ca.delete_nodes(first_id, [(cast.scaled_down, provider_id)])
        return f"NodeGroupDeleteNodes id={first_id} nodes=[{cast.scaled_down} {provider_id}] (unneeded)"

    def scaled_down(seen: Observation, history: History) -> tuple[Check, ...]:
        name = cast.scaled_down
        group = seen.group(first_id)
        machine = seen.machine(name)
        switched_off = (
            _switched_off_natively(history, name)
            if name in cast.native
            else Check(f"{name}'s shutdown Job created", bool(history.jobs_of(name, "shutdown")))
        )
        return (
            _target(seen, first_id, SCALE_UP_DELTA - 2),
            Check(f"{name} cordoned", name in history.cordoned),
            switched_off,
            Check(f"Kubernetes Node {name} deleted", name in history.deleted and seen.kube_node(name) is None),
            Check(f"{name} is Shutdown", machine is not None and machine.state == NodeState.SHUTDOWN.value),
            Check(
                f"{cast.provider_id(name)} is no longer listed",
                group is not None and group.instance(cast.provider_id(name)) is None,
            ),
        )

    return (
        Step(
            "Cluster Autoscaler connects",
            "Every loop CA calls Refresh and NodeGroups, then NodeGroupTargetSize and NodeGroupNodes per group. "
            "All six machines are off.",
            connected,
            world_seconds=2.0,
        ),
        Step(
            f"Scale up {cast.scale_up_group} by {SCALE_UP_DELTA}",
            f"Pods are pending, so CA asks for {SCALE_UP_DELTA} more {cast.scale_up_group}. The operator picks "
            f"{', '.join(cast.chosen)} by priority and switches them on: {_power_on_text(cast)}; {cast.failing}'s "
            "power path is broken.",
            scaled_up,
            world_seconds=15.0,
            act=scale_up,
            columns=(MachineColumn.STATE, MachineColumn.OPERATION),
        ),
        Step(
            "CA gives up on the failed boot",
            "CA sees a creating instance with an error and deletes its stand-in node. The operator lowers the "
            f"target and puts {cast.failing} in cooldown instead of trying it again at once.",
            failed_deleted,
            world_seconds=3.0,
            act=delete_failed,
            columns=(MachineColumn.STATE, MachineColumn.COOLDOWN, MachineColumn.LAST_ERROR),
        ),
        Step(
            f"Scale up {cast.second_group} by 1",
            f"A pod wants a GPU: CA asks {cast.second_group} for one machine and {cast.second_machine} boots.",
            second_scaled_up,
            world_seconds=15.0,
            act=scale_up_second,
            columns=(MachineColumn.STATE, MachineColumn.OPERATION),
        ),
        Step(
            f"Scale down {cast.scaled_down}",
            f"{cast.scaled_down} has been idle: CA deletes it. The operator cordons and drains it, "
            + ("powers it off through its IPMI BMC, deletes the Kubernetes Node once the BMC reads it Off"
               if cast.scaled_down in cast.native else
               "runs its shutdown Job, deletes the Kubernetes Node once the machine is off")
            + ", and lowers the target.",
            scaled_down,
            world_seconds=15.0,
            act=scale_down,
            columns=(MachineColumn.STATE, MachineColumn.OPERATION),
        ),
        Step(
            "Outcome",
            "What the run should leave behind, checked against the API objects and CA's view.",
            lambda seen, history: outcome_checks(cast, seen, history),
            world_seconds=2.0,
        ),
    )


def outcome_checks(cast: Cast, seen: Observation, history: History) -> tuple[Check, ...]:
    """The scenario's expected end state, and its history. Pure."""
    first_id = cast.homelab.group_id(cast.scale_up_group)
    second_id = cast.homelab.group_id(cast.second_group)
    still_running = [name for name in cast.booting if name != cast.scaled_down] + [cast.second_machine]
    failing = seen.machine(cast.failing)
    checks = [
        _target(seen, first_id, len(cast.booting) - 1),
        _target(seen, second_id, 1),
        *(_running(seen, cast, name) for name in still_running),
        Check(
            f"{cast.failing} failed to boot once and is cooling down in Shutdown",
            NodeState.BOOT_FAILED.value in history.states(cast.failing)
            and failing is not None
            and failing.state == NodeState.SHUTDOWN.value
            and bool(failing.cooldown_seconds),
        ),
        Check(
            f"{cast.scaled_down} went Ready → ShuttingDown → Shutdown",
            _in_order(history.states(cast.scaled_down), [NodeState.READY, NodeState.SHUTTING_DOWN, NodeState.SHUTDOWN]),
        ),
        Check(
            f"{', '.join(cast.untouched)} never powered on",
            all(set(history.states(name)) == {NodeState.SHUTDOWN.value} and not history.jobs_of(name)
                for name in cast.untouched),
        ),
    ]
    if cast.scaled_down in cast.native:
        checks.append(_switched_natively(history, cast.scaled_down))
    return tuple(checks)


def _switched_on_natively(history: History, name: str) -> Check:
    """Booted by a magic packet, no startup Job, and the BMC read it back On."""
    done = (
        history.drivers.get(name, {}).get("startup") == DriverName.WAKE_ON_LAN.value
        and not history.jobs_of(name, "startup")
        and PowerState.ON.value in history.readbacks.get(name, ())
    )
    return Check(f"{name} switched on by Wake-on-LAN (no Job), its BMC reads it back On", done)


def _switched_off_natively(history: History, name: str) -> Check:
    """Powered off through the BMC, no shutdown Job, and the BMC read it back Off after On."""
    readbacks = history.readbacks.get(name, [])
    done = (
        history.drivers.get(name, {}).get("shutdown") == DriverName.IPMI.value
        and not history.jobs_of(name, "shutdown")
        and _in_order(readbacks, [PowerState.ON, PowerState.OFF])
        and readbacks[-1] == PowerState.OFF.value
    )
    return Check(f"{name} powered off by IPMI (no Job), its BMC reads it back Off", done)


def _switched_natively(history: History, name: str) -> Check:
    drivers = history.drivers.get(name, {})
    done = (
        drivers == {"startup": DriverName.WAKE_ON_LAN.value, "shutdown": DriverName.IPMI.value}
        and not history.jobs_of(name)
        and _in_order(history.readbacks.get(name, []), [PowerState.ON, PowerState.OFF])
    )
    return Check(f"{name} switched natively: Wake-on-LAN on, IPMI off, read back On then Off, no power Job", done)


def _power_on_text(cast: Cast) -> str:
    native = [name for name in cast.chosen if name in cast.native]
    if not native:
        return "startup Jobs"
    return f"startup Jobs, and Wake-on-LAN for {', '.join(native)}, whose BMC reads the power back"


def _target(seen: Observation, group_id: str, target: int) -> Check:
    group = seen.group(group_id)
    return Check(f"CA reads target {target} for {group_id}", group is not None and group.target == target)


def _running(seen: Observation, cast: Cast, name: str) -> Check:
    """Booted, registered, and the instance CA sees running is the Node's providerID, byte for byte."""
    provider_id = cast.provider_id(name)
    node = seen.kube_node(name)
    group = seen.group(cast.group_id(name))
    instance = group.instance(provider_id) if group is not None else None
    machine = seen.machine(name)
    done = (
        machine is not None
        and machine.state == NodeState.READY.value
        and node is not None
        and node.provider_id == provider_id
        and node.group_id == cast.group_id(name)
        and instance is not None
        and instance.state == "running"
    )
    return Check(f"{name} Ready, registered as {provider_id}, and CA sees that id running", done)


def _failed_creation(seen: Observation, group_id: str, instance_id: str) -> InstanceSeen | None:
    group = seen.group(group_id)
    instance = group.instance(instance_id) if group is not None else None
    if instance is not None and instance.state == "creating" and instance.error_code:
        return instance
    return None


def _in_order(states: Sequence[str], wanted: Sequence[NodeState | PowerState]) -> bool:
    """Whether `wanted` appears in `states` in order (other states may come between). Pure."""
    position = 0
    for state in states:
        if position < len(wanted) and state == wanted[position].value:
            position += 1
    return position == len(wanted)


# --- the driver --------------------------------------------------------------------------------------------------


class Display(Protocol):
    """Where the driver shows each round: the live view, a line per change, or nothing."""

    def show(self, observation: Observation, changes: Sequence[Change], step: StepStatus | None) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ScenarioResult:
    """How a run ended."""

    exit_code: int
    message: str
    history: History
    failed_step: str = ""
    missing: tuple[str, ...] = ()

    @property
    def reached(self) -> bool:
        return self.exit_code == EXIT_REACHED


class Driver:
    """Loops like CA: observe both sides each tick, record, show; plays steps and waits for their checks."""

    def __init__(
        self,
        ca: Autoscaler,
        reader: Cluster,
        display: Display,
        timing: Timing,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ca = ca
        self.reader = reader
        self.display = display
        self.timing = timing
        self.history = History()
        self._stop = stop or threading.Event()
        self._clock = clock
        self._wall_clock = wall_clock
        self._started = clock()
        self._pending: list[Change] = []

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def play(self, steps: Sequence[Step]) -> ScenarioResult:
        """Every step in order; the result says whether each reached its checks within its deadline."""
        try:
            for number, step in enumerate(steps, start=1):
                missing = self._play_step(number, len(steps), step)
                if missing:
                    deadline = self.timing.deadline(step.world_seconds)
                    message = (
                        f"step {number} ({step.title}) did not reach its outcome within {deadline:.1f} s; "
                        f"still missing: {'; '.join(missing)}"
                    )
                    return ScenarioResult(EXIT_NOT_REACHED, message, self.history, step.title, tuple(missing))
        except Interrupted:
            return ScenarioResult(EXIT_INTERRUPTED, "interrupted before the scenario finished", self.history)
        except RefusedCall as error:
            return ScenarioResult(EXIT_NOT_REACHED, str(error), self.history)
        except (grpc.RpcError, OperatorError) as error:
            # The hot calls are served from snapshots and should never fail; when one does, that is the finding.
            return ScenarioResult(EXIT_NOT_REACHED, describe_read_failure(error), self.history)
        return ScenarioResult(EXIT_REACHED, "every step reached its outcome", self.history)

    def watch(self) -> None:
        """Keep observing and showing changes until stopped (for `--serve`); a failed look is logged and retried."""
        try:
            while True:
                try:
                    self.tick(None)
                except (grpc.RpcError, OperatorError) as error:
                    LOGGER.warning("demo: %s; looking again", describe_read_failure(error))
                self._wait(self.timing.tick_seconds)
        except Interrupted:
            return

    def tick(self, step: StepStatus | None, goal: Goal | None = None) -> tuple[Observation, tuple[Check, ...]]:
        """One round: observe, record, evaluate the goal, show."""
        observation = observe(self.ca, self.reader, self.elapsed, self._wall_clock())
        changes = self._pending + self.history.record(observation)
        self._pending = []
        checks = goal(observation, self.history) if goal is not None else ()
        shown = dataclasses.replace(step, checks=checks) if step is not None else None
        self.display.show(observation, changes, shown)
        return observation, checks

    def _play_step(self, number: int, total: int, step: Step) -> list[str]:
        started = self.elapsed
        status = StepStatus(number, total, step.title, step.explanation, started, columns=step.columns)
        self._note(ChangeKind.STEP, f"step {number}/{total}", step.title, step.explanation)
        observation, checks = self.tick(status, step.goal)
        if step.act is not None:
            self._note(ChangeKind.CALL, "CA", step.act(self.ca, observation))
        deadline = self._clock() + self.timing.deadline(step.world_seconds)
        while True:
            observation, checks = self.tick(status, step.goal)
            if all(check.done for check in checks):
                break
            if self._clock() > deadline:
                return [check.text for check in checks if not check.done]
            self._wait(self.timing.tick_seconds)
        self._note(ChangeKind.STEP, f"step {number}/{total}", f"reached in {self.elapsed - started:.1f} s")
        lingering = self._clock() + self.timing.pause_seconds
        while self._clock() < lingering:
            self._wait(min(self.timing.tick_seconds, max(0.0, lingering - self._clock())))
            self.tick(status, step.goal)
        return []

    def _note(self, kind: ChangeKind, subject: str, text: str, detail: str = "") -> None:
        self._pending.append(self.history.note(self.elapsed, kind, subject, text, detail))

    def _wait(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise Interrupted()


def describe_read_failure(error: grpc.RpcError | OperatorError) -> str:
    """One line for a failed look at either side. Pure."""
    if isinstance(error, OperatorError):
        return f"the API could not be read: {error}"
    code = getattr(error, "code", None)
    details = getattr(error, "details", None)
    if callable(code) and callable(details):
        return f"CA's loop failed: {code().name}: {details()}"
    return f"CA's loop failed: {error}"


def play(
    homelab: DemoHomelab,
    grpc_target: str,
    api_client: kube_client.ApiClient,
    display: Display,
    stop: threading.Event | None = None,
) -> ScenarioResult:
    """Play the whole scenario against a running homelab; CA's calls go to `grpc_target`."""
    steps = scenario_steps(cast_of(homelab))
    ca = CloudProviderClient(grpc_target)
    try:
        return Driver(ca, ClusterReader(api_client, homelab.namespace), display, homelab.timing, stop).play(steps)
    finally:
        ca.close()


def watch(
    homelab: DemoHomelab,
    grpc_target: str,
    api_client: kube_client.ApiClient,
    display: Display,
    stop: threading.Event,
) -> None:
    """Show what changes (whoever causes it: a person with kubectl, a real CA) until `stop` is set."""
    ca = CloudProviderClient(grpc_target)
    try:
        Driver(ca, ClusterReader(api_client, homelab.namespace), display, homelab.timing, stop).watch()
    finally:
        ca.close()
