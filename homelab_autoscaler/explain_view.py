"""What `homelab-autoscaler explain NODE` says: why a machine is in its state and what happens next, in sentences.

Separate from the command so everything a person reads is a pure function of what was read (the Node resource, its
Group, its power Jobs, the Events on both, optionally the operator's `/metrics`) and `now`: tests feed hand-made
objects and a fixed clock. The deadlines come from the state machine's own `pending_timers` and configuration, so
the "what happens next" sentences cannot drift from what the operator will actually do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from actors.fsm import energy
from actors.fsm.durations import summarize
from actors.fsm.events import TimerKind
from actors.fsm.exercise_record import is_exercising
from actors.fsm.node import Machine, MachineConfig, is_cooling_down, pending_timers
from homelab_autoscaler.status_view import InvalidResource, human_age, kwh_text
from schemas import labels
from schemas.common import ConditionStatus, format_duration, parse_duration
from schemas.group import Group, GroupSpec
from schemas.node import ExerciseOutcome, Node, NodeState, PowerPolicy

RECENT_JOBS: Final = 3
RECENT_EVENTS: Final = 5
CA_EVENT_REASONS: Final = frozenset(
    {"ScaleUp", "ScaleDown", "TargetDecreased", "IncreaseSizeRefused", "DeleteNodesRefused",
     "DecreaseTargetSizeRefused", "NotStoredInTime"}
)
"""Events the operator records on a Group for each size change Cluster Autoscaler asks for (and each refusal)."""


@dataclass(frozen=True)
class JobLine:
    """One power Job of the machine, newest first."""

    name: str
    operation: str
    created: datetime | None
    outcome: str
    """`running`, `succeeded` or `failed` (with the reason when the Job gave one)."""


@dataclass(frozen=True)
class EventLine:
    """One Kubernetes Event, newest first."""

    type: str
    reason: str
    message: str
    at: datetime | None
    count: int = 1


@dataclass(frozen=True)
class Explanation:
    """The machine, why it is in its state, what happens next, and the recent facts behind both."""

    namespace: str
    name: str
    group: str | None
    state: str
    since: datetime | None
    why: tuple[str, ...]
    next: tuple[str, ...]
    jobs: tuple[JobLine, ...] = ()
    events: tuple[EventLine, ...] = ()
    autoscaler: tuple[EventLine, ...] = ()
    """What Cluster Autoscaler last asked of the machine's group (and how the operator answered)."""
    operator: tuple[str, ...] = field(default=())
    """What the operator's `/metrics` say of the machine now, or why they were not read."""


# --- reading the raw objects -----------------------------------------------------------------------------------


def _time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def job_lines(raw_jobs: Iterable[Mapping[str, Any]]) -> tuple[JobLine, ...]:
    """The machine's power Jobs, newest first, at most `RECENT_JOBS`. Pure."""
    lines = []
    for job in raw_jobs:
        metadata = job.get("metadata") or {}
        status = job.get("status") or {}
        outcome = "running"
        for condition in status.get("conditions") or ():
            if condition.get("status") != "True":
                continue
            if condition.get("type") == "Complete":
                outcome = "succeeded"
            elif condition.get("type") == "Failed":
                detail = condition.get("message") or condition.get("reason") or ""
                outcome = f"failed: {detail}" if detail else "failed"
        operation = (metadata.get("labels") or {}).get(labels.OPERATION_LABEL, "?")
        lines.append(JobLine(str(metadata.get("name", "?")), str(operation), _time(metadata.get("creationTimestamp")),
                             outcome))
    lines.sort(key=lambda line: (line.created or datetime.min.replace(tzinfo=UTC), line.name), reverse=True)
    return tuple(lines[:RECENT_JOBS])


def event_lines(
    raw_events: Iterable[Mapping[str, Any]], reasons: frozenset[str] | None = None
) -> tuple[EventLine, ...]:
    """Events, newest first, at most `RECENT_EVENTS`; only those with one of `reasons` when given. Pure."""
    found: list[tuple[datetime, int, EventLine]] = []
    for event in raw_events:
        reason = str(event.get("reason") or "")
        if reasons is not None and reason not in reasons:
            continue
        at = _time(event.get("lastTimestamp")) or _time(event.get("eventTime")) or _time(event.get("firstTimestamp"))
        line = EventLine(str(event.get("type") or ""), reason, str(event.get("message") or ""), at,
                         int(event.get("count") or 1))
        version = str((event.get("metadata") or {}).get("resourceVersion") or "")
        found.append((at or datetime.min.replace(tzinfo=UTC), int(version) if version.isdigit() else -1, line))
    # Event times have whole seconds. Within one second the newer write decides: resource versions are opaque by
    # contract but increase with each write on every API server in use (etcd revisions), which is all a tie needs.
    found.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
    return tuple(line for _at, _version, line in found[:RECENT_EVENTS])


# --- the sentences ---------------------------------------------------------------------------------------------


def _when(moment: datetime, now: datetime) -> str:
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    left = (moment - now).total_seconds()
    return f"{stamp} (in {human_age(left)})" if left > 0 else f"{stamp} ({human_age(-left)} ago)"


def _why(node: Node, spec: GroupSpec | None, now: datetime) -> list[str]:
    status = node.status
    name, state = node.metadata.name, status.state
    verb = f"has been {state.value} for {human_age((now - status.since).total_seconds())}" if status.since else \
        f"is {state.value}"
    sentences = [f"{name} {verb}" + (f" ({status.reason}: {status.message})." if status.message
                                                      else f" ({status.reason})." if status.reason else ".")]
    quarantine_after = spec.failure_policy.quarantine_after if spec is not None else None
    failures = status.consecutive_failures
    if state is NodeState.QUARANTINED:
        sentences.append(
            f"It was quarantined after {failures} consecutive failed boots and is never chosen again until a person "
            f"resets it: kubectl annotate hnode {name} {labels.RESET_ANNOTATION}=$(date +%s) --overwrite"
        )
    elif failures:
        limit = f" of {quarantine_after} allowed before quarantine" if quarantine_after else ""
        sentences.append(f"Its last {failures} boot(s) failed in a row ({failures}{limit}).")
    if node.spec.power_policy is not PowerPolicy.AUTO:
        meaning = {
            PowerPolicy.ON: "it is kept powered on and never powered off by the autoscaler",
            PowerPolicy.OFF: "it is kept powered off and never chosen for a scale-up",
            PowerPolicy.MAINTENANCE: "the autoscaler leaves it alone (no power operations, in no group for CA)",
        }[node.spec.power_policy]
        sentences.append(f"Its powerPolicy is {node.spec.power_policy.value}: {meaning}.")
    record = status.last_exercise
    if record is not None and record.outcome is ExerciseOutcome.RUNNING:
        sentences.append(
            f"It is being exercised (since {_when(record.started, now)}): powered on to check it still boots, then "
            "off again; Cluster Autoscaler does not see it meanwhile, and takes it first if it asks for a machine."
        )
    elif record is not None:
        sentences.append(
            f"Its last exercise, started {_when(record.started, now)}, {record.outcome.value}: {record.message}."
        )
    for condition in status.conditions:
        if condition.type == labels.CONDITION_WRITE_FAILED and condition.status is ConditionStatus.TRUE:
            sentences.append(f"A write to the Kubernetes API failed: {condition.message or condition.reason}.")
    sentences += _power_sentences(node, now)
    return sentences


def _power_sentences(node: Node, now: datetime) -> list[str]:
    """How a machine powered natively is switched, and what its BMC last read back."""
    power = node.spec.power
    if power is None:
        return []
    on = power.power_on_driver.value if power.power_on_driver is not None else "nothing"
    off = power.power_off_driver.value if power.power_off_driver is not None else "nothing"
    sentences = [f"It is powered natively: on by {on}, off by {off}."]
    readback = node.status.power_readback
    if power.readback_driver is None:
        sentences.append("Its power state cannot be read back (no BMC), so a power-off is confirmed by its "
                         "Kubernetes Node going away.")
    elif readback is None:
        sentences.append(f"Its power state has not been read back by {power.readback_driver.value} yet.")
    else:
        age = human_age((now - readback.observed_at).total_seconds())
        sentences.append(f"{readback.driver.value} last read it {readback.state.value}, {age} ago.")
    for condition in node.status.conditions:
        if condition.type == labels.CONDITION_POWER_READBACK_FAILING and condition.status is ConditionStatus.TRUE:
            sentences.append(f"Its power readback is failing ({condition.reason}): {condition.message}.")
    return sentences


def _next(node: Node, group_name: str, spec: GroupSpec | None, now: datetime) -> list[str]:
    status = node.status
    state = status.state
    if spec is None:
        return [f"Its group {group_name!r} has no Group resource, so the operator does nothing with it."]
    machine = Machine(MachineConfig.from_resources(node, group_name, spec), status)
    deadlines = {timer.kind: timer.deadline for timer in pending_timers(machine)}
    operation = status.operation
    if state is NodeState.SHUTDOWN:
        if is_cooling_down(status, now) and status.cooldown_until is not None:
            return [f"It cools down after its failed boot until {_when(status.cooldown_until, now)} and is not "
                    "chosen for a boot before then."]
        if node.spec.power_policy is PowerPolicy.OFF:
            return ["It stays off until its powerPolicy changes."]
        if spec.exercise is not None and status.since is not None and node.spec.power_policy is PowerPolicy.AUTO:
            due = status.since + timedelta(seconds=parse_duration(spec.exercise.every))
            window = " (in the group's exercise window)" if spec.exercise.window is not None else ""
            return [f"It stays off until Cluster Autoscaler asks group {group_name} for more machines and it is the "
                    f"best powered-off machine, or until it is exercised, from {_when(due, now)}{window}."]
        return [f"It stays off until Cluster Autoscaler asks group {group_name} for more machines and it is the "
                "best powered-off machine (priority, then price)."]
    if state is NodeState.STARTING_UP:
        if operation is None:
            return ["It waits for a boot slot: the group's maxConcurrentBoots machines are already booting; its "
                    "startup Job is created when one of them finishes."]
        deadline = deadlines.get(TimerKind.BOOT_TIMEOUT)
        timeout = format_duration(machine.config.boot_timeout_seconds)
        running = human_age((now - operation.started).total_seconds())
        if operation.driver is not None:
            text = f"Its power-on #{operation.attempt} was sent by {operation.driver.value} {running} ago."
        else:
            text = f"Its startup Job {operation.job_name} was created {running} ago."
        if deadline is not None:
            told = "the exercise fails and it cools down" if is_exercising(status) else \
                "Cluster Autoscaler is told of a failed creation"
            text += f" If its Kubernetes Node is not Ready by {_when(deadline, now)}, the boot fails (bootTimeout " \
                    f"{timeout}) and {told}."
        return [text]
    if state is NodeState.READY:
        if node.spec.power_policy is PowerPolicy.ON:
            return ["It stays on (powerPolicy On)."]
        return [f"It stays on until Cluster Autoscaler finds it unneeded and deletes it from group {group_name}; then "
                "it is cordoned and powered off."]
    if state is NodeState.SHUTTING_DOWN:
        if operation is None:
            return ["Its Kubernetes Node is being drained; the shutdown Job is created when the drain finishes."]
        tries = f"try {status.operation_tries} of {1 + machine.config.shutdown_retries}"
        deadline = deadlines.get(TimerKind.SHUTDOWN_TIMEOUT)
        if operation.driver is not None and node.spec.power is not None and node.spec.power.readback_driver:
            text = f"Power-off #{operation.attempt} by {operation.driver.value} ({tries}) is powering it off; it is " \
                   f"off once {node.spec.power.readback_driver.value} reads it Off."
        elif operation.driver is not None:
            text = f"Power-off #{operation.attempt} by {operation.driver.value} ({tries}) is powering it off; it is " \
                   "off once the command is done and its Kubernetes Node goes away."
        else:
            text = f"Shutdown Job {operation.job_name} ({tries}) is powering it off; it is off once the Job " \
                   "succeeds and its Kubernetes Node goes away."
        if deadline is not None:
            text += f" If that is not confirmed by {_when(deadline, now)}, the power-off is retried, and after the " \
                    "last try the machine is returned to Ready."
        return [text]
    if state is NodeState.BOOT_FAILED:
        until = f" until {_when(status.cooldown_until, now)}" if status.cooldown_until else ""
        after = spec.failure_policy.quarantine_after
        then = "it is quarantined" if status.consecutive_failures >= after else f"it cools down{until}"
        return [f"Cluster Autoscaler sees a failed creation and removes the instance (DeleteNodes); then {then}."]
    if state is NodeState.QUARANTINED:
        return ["Nothing happens until the reset annotation is set to a new value; then it is available again."]
    return ["Nothing happens until its powerPolicy is set back to Auto (or On or Off)."]


def _operator_facts(metrics: Mapping[str, Mapping[tuple[tuple[str, str], ...], float]] | None, group_id: str,
                    name: str, reason: str) -> list[str]:
    if metrics is None:
        return [f"The operator's metrics were not read: {reason}."] if reason else []
    facts = []
    node_labels = (("group", group_id), ("node", name))
    states = [dict(key).get("state") for key in metrics.get("homelab_autoscaler_node_state", {})
              if dict(key).get("group") == group_id and dict(key).get("node") == name]
    if states:
        facts.append(f"The operator holds it as {states[0]}.")
    else:
        facts.append("The operator reports no state for it (it is not the acting leader, or does not manage it).")
    target = metrics.get("homelab_autoscaler_group_target_size", {}).get((("group", group_id),))
    if target is not None:
        facts.append(f"Group {group_id} has a target size of {target:.0f} machines.")
    draw = metrics.get("homelab_autoscaler_machine_power_draw_watts", {}).get(node_labels)
    used = metrics.get("homelab_autoscaler_machine_energy_used_joules_total", {}).get(node_labels)
    avoided = metrics.get("homelab_autoscaler_machine_energy_avoided_joules_total", {}).get(node_labels)
    if draw is not None and used is not None and avoided is not None:
        facts.append(f"It draws {draw:.0f} W now; {kwh_text(used / 3600)} kWh used and {kwh_text(avoided / 3600)} "
                     "kWh avoided since accounting began.")
    return facts


def explain(
    node: Node | InvalidResource,
    group: Group | InvalidResource | None,
    raw_jobs: Sequence[Mapping[str, Any]],
    node_events: Sequence[Mapping[str, Any]],
    group_events: Sequence[Mapping[str, Any]],
    now: datetime,
    metrics: Mapping[str, Mapping[tuple[tuple[str, str], ...], float]] | None = None,
    metrics_reason: str = "",
) -> Explanation:
    """The explanation of one machine at `now`. Pure."""
    if isinstance(node, InvalidResource):
        return Explanation(
            node.namespace, node.name, node.group, "Invalid", None,
            (f"The Node resource {node.name} does not parse, so the operator skips it: {node.reason}.",),
            ("Fix the resource (kubectl edit hnode); the operator picks it up at once.",),
        )
    group_name = node.metadata.labels.get(labels.GROUP_LABEL)
    spec = group.spec if isinstance(group, Group) else None
    why = _why(node, spec, now)
    if group_name is None:
        why.append(f"It has no {labels.GROUP_LABEL} label, so it belongs to no group and the operator ignores it.")
        upcoming: list[str] = []
    elif isinstance(group, InvalidResource):
        upcoming = [f"Its Group resource {group_name} does not parse ({group.reason}): fix it first."]
    else:
        upcoming = _next(node, group_name, spec, now)
    pricing = node.spec.pricing
    figures = energy.machine_energy(node.status, pricing.power_watts, pricing.standby_watts, now)
    if figures is None:
        why.append("Its energy is unknown: it declares no spec.pricing.powerWatts.")
    boots = summarize(node.status.recent_boot_seconds)
    if boots is not None:
        why.append(f"Its last {boots.count} boot(s) took {human_age(boots.p50)} at the median, "
                   f"{human_age(boots.max)} at most.")
    group_id = f"{node.metadata.namespace}/{group_name}" if group_name else ""
    return Explanation(
        namespace=node.metadata.namespace,
        name=node.metadata.name,
        group=group_name,
        state=node.status.state.value,
        since=node.status.since,
        why=tuple(why),
        next=tuple(upcoming),
        jobs=job_lines(raw_jobs),
        events=event_lines(node_events),
        autoscaler=event_lines(group_events, CA_EVENT_REASONS),
        operator=tuple(_operator_facts(metrics, group_id, node.metadata.name, metrics_reason)),
    )


# --- output ----------------------------------------------------------------------------------------------------


def _stamp(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment is not None else None


def render_text(explanation: Explanation, now: datetime) -> str:
    """The explanation as paragraphs for a person. Pure."""
    where = f" in group {explanation.group}" if explanation.group else ""
    lines = [f"Machine {explanation.namespace}/{explanation.name}{where}: {explanation.state}", ""]
    lines += ["Why:", *(f"  {sentence}" for sentence in explanation.why)]
    if explanation.next:
        lines += ["", "What happens next:", *(f"  {sentence}" for sentence in explanation.next)]
    if explanation.jobs:
        lines += ["", "Recent power Jobs:"]
        for job in explanation.jobs:
            age = f", created {human_age((now - job.created).total_seconds())} ago" if job.created else ""
            lines.append(f"  {job.name} ({job.operation}{age}): {job.outcome}")
    for title, events in (("Recent events", explanation.events),
                          ("What Cluster Autoscaler last asked of the group", explanation.autoscaler)):
        if events:
            lines += ["", f"{title}:"]
            for event in events:
                age = f"{human_age((now - event.at).total_seconds())} ago" if event.at else "at an unknown time"
                repeated = f" (x{event.count})" if event.count > 1 else ""
                lines.append(f"  {age}: {event.type} {event.reason}{repeated}: {event.message}")
    if explanation.operator:
        lines += ["", "The operator now:", *(f"  {sentence}" for sentence in explanation.operator)]
    return "\n".join(lines) + "\n"


def to_document(explanation: Explanation) -> dict[str, Any]:
    """The `-o json` document; every key always present. Pure."""
    def events(lines: Sequence[EventLine]) -> list[dict[str, Any]]:
        return [{"type": line.type, "reason": line.reason, "message": line.message, "at": _stamp(line.at),
                 "count": line.count} for line in lines]

    return {
        "namespace": explanation.namespace,
        "name": explanation.name,
        "group": explanation.group,
        "state": explanation.state,
        "since": _stamp(explanation.since),
        "why": list(explanation.why),
        "next": list(explanation.next),
        "jobs": [{"name": job.name, "operation": job.operation, "created": _stamp(job.created),
                  "outcome": job.outcome} for job in explanation.jobs],
        "events": events(explanation.events),
        "autoscaler": events(explanation.autoscaler),
        "operator": list(explanation.operator),
    }


def parse_metrics(exposition: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """An operator's `/metrics` text as sample name → sorted labels → value. Pure."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples
