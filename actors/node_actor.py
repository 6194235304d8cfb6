"""`NodeActor`: the thin shell around one machine's power state machine.

The deciding is done by `actors.fsm` (`derive` on start, `step` on every event); this shell only carries things
in and out, which is why it is separate from the pure core and small enough to read at a glance:

* in: the first `ConfigureMachine` (derive), `MachineEvent` (group commands and observations routed by the
  Supervisor), `TimerDue` from the ticker (applied as the FSM event `TimerFired`), `EffectFailed` /
  `DrainCompleted` from the adapters, and `MachineReconfigured` when the Node resource or its Group changed;
* in, for machines powered natively (spec.power): `PowerOutcome` from the power port, applied as the FSM events
  `PowerCommandSucceeded` / `PowerCommandFailed` / `PowerStateObserved` / `PowerReadbackFailed`;
* out: timer effects to the ticker, power commands and readbacks as `PowerRequest`s to the power port (each with its
  deadline; with no port wired, answered at once with a failure naming that), every other effect of a transition
  as one `EffectBatch` to the effect port (so their order is kept), `MachineStateChanged` to the group whenever
  what the group sees changed, the written status to the Supervisor (so a replacement actor derives from it), and
  metrics. A group command that asks for
  confirmation gets exactly one `IntentStored` back: from the writer once the command's status write is stored
  (the batch carries a `StoredNotice`), or from here at once when the command wrote no status.

A command the machine refuses (`InvalidTransition`, e.g. a power-on that raced a failure) is logged at WARNING,
the state is kept, and the group is told the real state at once, so its mirror corrects itself. Stale timer
tokens are the state machine's business (it ignores them). Handlers are idempotent where Thespian may retry them:
a retried message is a repeated event, which the state machine either ignores or treats as a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from prometheus_client import Counter

from actors import metrics, power_metrics, wiring
from actors.base import ShellActor
from actors.effects_port import EffectBatch, MachineRef, StoredNotice
from actors.fsm import effects as fx
from actors.fsm import readback
from actors.fsm.derive import derive
from actors.fsm.effect_failures import failure_event
from actors.fsm.errors import InvalidTransition
from actors.fsm.events import (
    ConfigChanged,
    DrainFinished,
    Event,
    PowerCommandFailed,
    PowerCommandSucceeded,
    PowerReadbackFailed,
    PowerStateObserved,
    ResetRequested,
    TimerFired,
    TimerKind,
    WriteFailed,
)
from actors.fsm.group import instance_status, machine_view
from actors.fsm.node import Machine, MachineConfig, Transition, pending_timers, step
from actors.messages import (
    ConfigureMachine,
    DrainCompleted,
    EffectFailed,
    IntentStored,
    MachineEvent,
    MachineReconfigured,
    MachineStateChanged,
    MachineStatusWritten,
)
from actors.power_port import PowerAction, PowerFailure, PowerOutcome, PowerRequest
from actors.read_model import MachineSnapshot
from actors.ticker_actor import CancelTimer, StartTimer, TimerDue, ticker_address
from schemas import labels
from schemas.group import GroupSpec
from schemas.node import ExerciseOutcome, Node, NodeState, NodeStatus, OperationKind, kubernetes_node_name

LOGGER = logging.getLogger(__name__)

metrics.declare_node_states(state.value for state in NodeState)


def group_name(group_id: str) -> str:
    """The Group's name from its id `<namespace>/<name>`. Pure."""
    return group_id.partition("/")[2] or group_id


def hourly_price(node: Node) -> Decimal | None:
    """The machine's declared hourly price, if any. Pure."""
    price = node.spec.pricing.hourly_price
    return Decimal(price) if price is not None else None


def state_report(machine: Machine, node: Node, commands_handled: int) -> MachineStateChanged:
    """What the group is told about `machine` (its view, its read-model snapshot, its template source). Pure."""
    view = machine_view(machine, node.spec.priority, hourly_price(node), node.spec.pricing.power_watts)
    snapshot = MachineSnapshot(
        name=machine.config.name,
        namespace=machine.config.namespace,
        kubernetes_node_name=machine.config.kubernetes_node_name,
        provider_id=view.provider_id,
        state=view.state,
        power_policy=view.power_policy,
        instance=instance_status(view),
        hourly_price=view.hourly_price,
        power_watts=view.power_watts,
        exercising=view.exercising,
    )
    return MachineStateChanged(view, snapshot, machine.status.last_ready, commands_handled)


def power_event(outcome: PowerOutcome) -> Event:
    """The state-machine event an outcome of the power port stands for. Pure.

    A failed outcome without a reason (a port that gave none) counts as `DriversUnavailable`.
    """
    failure = (outcome.failure or PowerFailure.DRIVERS_UNAVAILABLE).value
    if outcome.action is PowerAction.READ_POWER_STATE:
        if outcome.succeeded and outcome.observed is not None and outcome.driver is not None:
            return PowerStateObserved(outcome.observed, outcome.driver)
        return PowerReadbackFailed(failure, outcome.message, outcome.driver)
    if outcome.succeeded:
        return PowerCommandSucceeded(outcome.action, outcome.attempt, outcome.driver)
    return PowerCommandFailed(outcome.action, outcome.attempt, outcome.driver, failure, outcome.message)


def _timer_message(owner: Any, effect: fx.StartTimer | fx.CancelTimer) -> StartTimer | CancelTimer:
    if isinstance(effect, fx.StartTimer):
        return StartTimer(owner, effect.token, effect.after_seconds, effect.kind.value)
    return CancelTimer(owner, effect.token)


class NodeActor(ShellActor):
    """Owns one machine's `Machine` value; see the module docstring."""

    actor_kind = "node"

    def __init__(self) -> None:
        super().__init__()
        self._wiring: wiring.Wiring | None = None
        self._machine: Machine | None = None
        self._node: Node | None = None
        self._group_id = ""
        self._group_spec: GroupSpec | None = None
        self._group_address: Any = None
        self._supervisor: Any = None
        self._ticker: Any = None
        self._commands_handled = 0
        self._last_report: MachineStateChanged | None = None
        self._boot_failures: Counter | None = None

    # --- handlers --------------------------------------------------------------------------------------------

    def receiveMsg_ConfigureMachine(self, message: ConfigureMachine, sender: Any) -> None:
        self._wiring = wiring.lookup(message.wiring_key)
        self._supervisor = sender
        self._adopt(message.node, message.group_id, message.group_spec, message.group_address)
        derived = derive(message.node.status, self._config(), message.jobs, message.kube_node, self._now())
        self._machine = derived.machine
        self._execute(derived.effects)
        state = derived.machine.status.state
        self._export_state()
        self._observe_durations(derived.finished)
        self._export_energy()
        self._export_readback_age(derived.machine.status)
        # DEBUG: every machine derives at each start; the operator logs one summary line for all of them.
        LOGGER.debug("node=%s group=%s derived state=%s effects=%s", self.actor_name, self._group_id, state.value,
                    _names(derived.effects))
        self._apply_reset_annotation()
        self._report(force=True)

    def receiveMsg_MachineReconfigured(self, message: MachineReconfigured, sender: Any) -> None:
        if self._machine is None:
            LOGGER.debug("node %s: reconfigured before it was configured; ignored", self.actor_name)
            return
        self._adopt(message.node, message.group_id, message.group_spec, message.group_address)
        self._apply(ConfigChanged(self._config()))
        self._export_energy()  # the declared draw or the group's price may be what changed
        self._apply_reset_annotation()
        self._report(force=True)

    def receiveMsg_MachineEvent(self, message: MachineEvent, sender: Any) -> None:
        self._commands_handled = max(self._commands_handled, message.command_sequence)
        if not message.confirm_stored:
            self._apply(message.event)
            return
        notice = StoredNotice(sender, IntentStored(self._machine_name(), message.command_sequence))
        if not self._apply(message.event, notice):
            self.send(notice.recipient, notice.message)  # nothing to store: the group need not wait for it

    def receiveMsg_TimerDue(self, message: TimerDue, sender: Any) -> None:
        self._apply(TimerFired(TimerKind(str(message.payload)), message.token))

    def receiveMsg_EffectFailed(self, message: EffectFailed, sender: Any) -> None:
        effect = message.effect
        event = failure_event(effect, message.message, message.permanent)
        if event is None or isinstance(event, WriteFailed):
            # The timers of the state machine catch what this failure leaves undone (a Job never created
            # times out; a status not written is written again with the next transition). The machine makes
            # it visible as a condition and an Event; a failed status or Event write is only logged, since
            # reporting it would take another such write (the machine ignores those reports too).
            LOGGER.warning("node=%s group=%s effect %s failed (%s): %s", self.actor_name, self._group_id,
                           type(effect).__name__, "permanent" if message.permanent else "retries exhausted",
                           message.message)
        if event is not None:
            self._apply(event)

    def receiveMsg_DrainCompleted(self, message: DrainCompleted, sender: Any) -> None:
        self._apply(DrainFinished(message.succeeded, message.message))

    def receiveMsg_PowerOutcome(self, message: PowerOutcome, sender: Any) -> None:
        if self._node is None or message.machine_key != self._machine_key():
            LOGGER.debug("node %s: power outcome for %s ignored", self.actor_name, message.machine_key)
            return
        self._apply(power_event(message))

    def receiveMsg_ActorExitRequest(self, message: object, sender: Any) -> None:
        # Timers of a retired actor would only fire into the void; cancel them so the ticker stays small.
        if self._machine is not None:
            self._execute(fx.CancelTimer(timer.token) for timer in pending_timers(self._machine))
            # Its energy is counted from the status it holds: a stopped actor (a lost leadership, a stopped operator)
            # must not go on counting a status that is no longer current.
            metrics.ENERGY.forget(self._group_id, self._machine.config.name)
            power_metrics.READBACK_AGES.forget(self._group_id, self._machine.config.name)

    # --- the one path every event takes ----------------------------------------------------------------------

    def _apply(self, event: Event, stored_notice: StoredNotice | None = None) -> bool:
        """Step the machine; True when a status write was submitted (carrying `stored_notice`, when given)."""
        machine = self._machine
        if machine is None:
            LOGGER.debug("node %s: %r before configuration; ignored", self.actor_name, event)
            return False
        try:
            transition = step(machine, event, self._now())
        except InvalidTransition as refusal:
            LOGGER.warning("node=%s group=%s refused: %s", self.actor_name, self._group_id, refusal)
            self._report(force=True)
            return False
        writes_status = self._commit(event, machine, transition, stored_notice)
        self._report()
        return writes_status

    def _commit(
        self, event: Event, before: Machine, transition: Transition, stored_notice: StoredNotice | None
    ) -> bool:
        self._machine = transition.machine
        writes_status = self._execute(transition.effects, stored_notice)
        self._observe_durations(transition.finished)
        self._export_energy()
        old, new = before.status.state, transition.machine.status.state
        if new is not old:
            self._count_transition(old, new)
            LOGGER.info("node=%s group=%s from=%s event=%s to=%s effects=%s", self.actor_name, self._group_id,
                        old.value, type(event).__name__, new.value, _names(transition.effects))
        self._count_exercise(before.status, transition.machine.status)
        return writes_status

    def _execute(self, effects: Iterable[fx.Effect], stored_notice: StoredNotice | None = None) -> bool:
        """Timers to the ticker; power commands and readbacks to the power port; everything else, in order, as one
        batch to the effect port.

        True when the batch writes the status; only then does it carry `stored_notice`.
        """
        batch: list[fx.Effect] = []
        power: list[fx.SendPowerCommand | fx.ReadPowerState] = []
        for effect in effects:
            if isinstance(effect, fx.StartTimer | fx.CancelTimer):
                self.send(self._ticker_address(), _timer_message(self.myAddress, effect))
            elif isinstance(effect, fx.SendPowerCommand | fx.ReadPowerState):
                power.append(effect)
            else:
                batch.append(effect)
        written = [effect.status for effect in batch if isinstance(effect, fx.PatchStatus)]
        if batch:
            self._require_wiring().effects.submit(
                EffectBatch(
                    self._machine_ref(), self._node, self._group_spec, tuple(batch), self.myAddress,
                    stored_notice if written else None,
                )
            )
        # After the batch is queued, so a command's status write (write-ahead) is on its way first; should the process
        # die before it is stored, the readback finds the machine on and the adoption rules take it from there.
        for request in power:
            self._submit_power(request)
        if written:
            self._export_readback_age(written[-1])
        if written and self._supervisor is not None and self._node is not None:
            metadata = self._node.metadata
            self.send(self._supervisor, MachineStatusWritten(metadata.namespace, metadata.name, written[-1]))
        return bool(written)

    def _submit_power(self, effect: fx.SendPowerCommand | fx.ReadPowerState) -> None:
        """Hand a power command or readback to the power port; without one (or without spec.power), fail it here."""
        action = effect.action if isinstance(effect, fx.SendPowerCommand) else PowerAction.READ_POWER_STATE
        port = self._require_wiring().power
        power = self._node.spec.power if self._node is not None else None
        if port is None or power is None:
            why = (
                "native power drivers unavailable: this operator was started without them"
                if port is None
                else "the Node resource no longer sets spec.power"
            )
            if isinstance(effect, fx.SendPowerCommand):
                LOGGER.warning("node=%s group=%s %s #%d not sent: %s", self.actor_name, self._group_id, action.value,
                               effect.attempt, why)
            failure = PowerFailure.DRIVERS_UNAVAILABLE if port is None else PowerFailure.UNSUPPORTED
            self.send(self.myAddress, PowerOutcome(self._machine_key(), action, effect.attempt, None, False,
                                                   failure=failure, message=why))
            return
        config = self._machine.config if self._machine is not None else self._config()
        deadline = readback.command_deadline_seconds(
            action, power, config.power_on_grace_seconds, config.shutdown_timeout_seconds
        )
        port.submit(PowerRequest(self._machine_key(), action, effect.attempt, power, deadline, self.myAddress))

    def _export_readback_age(self, status: NodeStatus) -> None:
        if self._node is None or self._machine is None:
            return
        observed = status.power_readback.observed_at if status.power_readback is not None else None
        if not readback.reads_back(self._node.spec.power):
            observed = None
        power_metrics.READBACK_AGES.set_machine(
            self._group_id, self._machine.config.name, observed, self._require_wiring().clock
        )

    def _export_state(self) -> None:
        """Publish the state gauge and keep the group's boot-failure counter at hand."""
        if self._machine is None:
            return
        metrics.set_node_state(self._group_id, self._machine.config.name, self._machine.status.state.value)
        self._boot_failures = metrics.BOOT_FAILURES.labels(self._group_id)

    def _count_transition(self, old: NodeState, new: NodeState) -> None:
        machine = self._machine
        assert machine is not None  # committed just before
        metrics.record_transition(self._group_id, machine.config.name, old.value, new.value)
        if new is NodeState.BOOT_FAILED and self._boot_failures is not None:
            self._boot_failures.inc()

    def _count_exercise(self, before: NodeStatus, after: NodeStatus) -> None:
        """Count an exercise that just ended; a failed exercise boot is a boot failure too (its BootFailed state
        lasts no longer than the step that released it, so the transition count above never sees it)."""
        record = after.last_exercise
        if record is None or record == before.last_exercise or record.outcome is ExerciseOutcome.RUNNING:
            return
        metrics.EXERCISES.labels(self._group_id, record.outcome.value).inc()
        failed_boot = after.consecutive_failures > before.consecutive_failures
        if record.outcome is ExerciseOutcome.FAILED and failed_boot and self._boot_failures is not None:
            self._boot_failures.inc()

    def _export_energy(self) -> None:
        """Hand the energy collector what it computes this machine's counters from at each scrape."""
        if self._machine is None or self._node is None:
            return
        pricing = self._node.spec.pricing
        price = self._group_spec.energy_price if self._group_spec is not None else None
        basis = metrics.EnergyBasis.of(
            self._machine.status,
            pricing.power_watts,
            pricing.standby_watts,
            Decimal(price) if price is not None else None,
            self._require_wiring().clock,
        )
        metrics.ENERGY.set_machine(self._group_id, self._machine.config.name, basis)

    def _observe_durations(self, finished: Iterable[tuple[OperationKind, float]]) -> None:
        for kind, seconds in finished:
            histogram = metrics.BOOT_SECONDS if kind is OperationKind.STARTUP else metrics.SHUTDOWN_SECONDS
            histogram.labels(self._group_id).observe(seconds)

    def _report(self, force: bool = False) -> None:
        if self._machine is None or self._node is None or self._group_address is None:
            return
        report = state_report(self._machine, self._node, self._commands_handled)
        if force or report != self._last_report:
            self._last_report = report
            self.send(self._group_address, report)

    # --- small helpers ---------------------------------------------------------------------------------------

    def _adopt(self, node: Node, group_id: str, group_spec: GroupSpec, group_address: Any) -> None:
        moved = self._machine is not None and group_id != self._group_id
        if moved and self._machine is not None:
            # Its series move with it instead of lingering under the old group.
            metrics.forget_node(self._group_id, self._machine.config.name)
        self._node, self._group_id, self._group_spec = node, group_id, group_spec
        if moved:
            self._export_state()
        self._group_address = group_address
        self.actor_name = f"{node.metadata.namespace}/{node.metadata.name}"

    def _config(self) -> MachineConfig:
        # Both are set by _adopt before any use.
        assert self._node is not None
        assert self._group_spec is not None
        return MachineConfig.from_resources(self._node, group_name(self._group_id), self._group_spec)

    def _apply_reset_annotation(self) -> None:
        token = self._node.metadata.annotations.get(labels.RESET_ANNOTATION) if self._node else None
        if token:
            self._apply(ResetRequested(token))  # a token handled before is ignored by the state machine

    def _machine_name(self) -> str:
        return self._node.metadata.name if self._node is not None else str(self.actor_name)

    def _machine_key(self) -> str:
        """`<namespace>/<name>`, as power requests and outcomes name the machine."""
        assert self._node is not None
        return f"{self._node.metadata.namespace}/{self._node.metadata.name}"

    def _machine_ref(self) -> MachineRef:
        assert self._node is not None
        metadata = self._node.metadata
        return MachineRef(metadata.namespace, metadata.name, kubernetes_node_name(self._node),
                          group_name(self._group_id))

    def _require_wiring(self) -> wiring.Wiring:
        if self._wiring is None:
            raise wiring.WiringNotFound(f"node {self.actor_name} has not been configured")
        return self._wiring

    def _now(self) -> datetime:
        return self._require_wiring().clock()

    def _ticker_address(self) -> Any:
        if self._ticker is None:
            self._ticker = ticker_address(self, self._require_wiring().ticker)
        return self._ticker


def _names(effects: Iterable[fx.Effect]) -> str:
    return ",".join(type(effect).__name__ for effect in effects) or "-"
