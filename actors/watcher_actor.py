"""`KubeWatcherActor`: turns the watch threads' raw objects into typed observations for the Supervisor.

The watch threads (`kubeapi.watch`) only read sockets; they hand every `Listed` batch and every
`WatchEvent` to this actor through `ActorRuntime.tell`, untouched. Everything that needs judgement happens here, in
one place and on the pump thread, which is why it is an actor of its own rather than code in the watch threads or
in the Supervisor:

* Parsing. Group and Node resources go through the schemas, core Nodes and power Jobs through small pure readers
  below. An object that cannot be read is logged once per version at WARNING, counted
  (`homelab_autoscaler_watch_objects_skipped_total`) and skipped; the actor never fails on bad input. A Node
  resource whose *status* alone is unreadable is still managed: its status is replaced by a fresh one that keeps
  the Job numbering, so the state machine rebuilds the machine from its Jobs and its Kubernetes Node.
* Staleness. The last resourceVersion of every object is remembered; an event that is not newer (integer compare
  when both versions are digits, as on every real API server; any difference counts as newer otherwise) is dropped.
  Changes nobody acts on are dropped here too, before any parsing, by comparing a digest of what the machines
  read: kubelet heartbeats, and (once the inventory is out) the echoes of the statuses the operator writes.
* Restart recovery. Until the first `Listed` of every expected resource has arrived, nothing is routed: lists and
  the events that follow them are merged into one picture, which goes to the Supervisor as a single
  `InventoryListed` (every machine derived at once, Jobs in flight adopted, none created twice).
* Relists. A later `Listed` (after a 410 Gone, or a periodic resync) is reconciled against what was known: objects
  missing from it become `...Removed` observations, changed ones `...Observed`, unchanged ones nothing.

Stateless apart from those versions: the actor may be recreated with a new runtime (a new leadership term), and
then starts from the next complete set of lists.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from actors import metrics
from actors.base import ShellActor
from actors.messages import (
    GroupInvalid,
    GroupObserved,
    GroupRemoved,
    InventoryListed,
    JobObserved,
    JobRemoved,
    KubeNodeObserved,
    KubeNodeRemoved,
    MachineObserved,
    MachineRemoved,
)
from actors.runtime import ActorRuntime
from actors.watch_port import GROUPS, KUBE_NODES, MACHINES, POWER_JOBS, Listed, WatchEvent, WatchEventType, drain_items
from schemas import labels
from schemas.common import Taint
from schemas.group import Group
from schemas.node import Node, NodeSnapshot, NodeStatus, OperationKind
from schemas.validation import power_way_errors, summarise_validation_error

LOGGER = logging.getLogger(__name__)

WATCHER_GLOBAL_NAME: Final = "homelab-autoscaler-watcher"
INVENTORY_RESOURCES: Final = (GROUPS, MACHINES, KUBE_NODES, POWER_JOBS)
"""The resources whose first lists together make the inventory (restart recovery needs all four)."""
MAX_REPORTED_ERRORS: Final = 3

Observation = GroupObserved | MachineObserved | KubeNodeObserved | JobObserved
Removal = GroupRemoved | MachineRemoved | KubeNodeRemoved | JobRemoved


class MalformedObjectError(ValueError):
    """A watched object cannot be turned into an observation; the message says why."""


@dataclass(frozen=True)
class ConfigureWatcher:
    """The watcher's first message: where observations go, and which resources make up the inventory."""

    supervisor: Any
    """The Supervisor's ActorAddress."""
    inventory_resources: tuple[str, ...] = INVENTORY_RESOURCES


# --- pure readers -------------------------------------------------------------------------------------------


def object_key(resource: str, raw: Mapping[str, Any]) -> str:
    """`<namespace>/<name>`, or the name alone for cluster-scoped core Nodes. Pure."""
    metadata = raw.get("metadata") or {}
    name = str(metadata.get("name") or "")
    return name if resource == KUBE_NODES else f"{metadata.get('namespace') or ''}/{name}"


def resource_version(raw: Mapping[str, Any]) -> str:
    return str((raw.get("metadata") or {}).get("resourceVersion") or "")


def is_newer(candidate: str, known: str) -> bool:
    """Whether version `candidate` supersedes `known`. Pure.

    resourceVersions are opaque by contract, but every API server in use (etcd-backed ones and our fake) issues
    increasing integers, and only an integer compare can tell a stale event from a new one. Anything else is
    compared for equality: a different version is taken as newer.
    """
    if candidate.isdigit() and known.isdigit():
        return int(candidate) > int(known)
    return candidate != known


def describe_validation_error(error: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The first few problems of a validation error, spelled as the webhook spells them (one source). Pure."""
    return summarise_validation_error(error, model, MAX_REPORTED_ERRORS)


def group_invalid(raw: Mapping[str, Any], reason: str) -> GroupInvalid:
    """The message that a Group resource failed our schemas, from what its metadata plainly holds. Pure."""
    metadata = raw.get("metadata") or {}
    generation = metadata.get("generation")
    return GroupInvalid(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        generation=generation if isinstance(generation, int) else None,
        reason=reason,
    )


def parse_group(raw: Mapping[str, Any]) -> Group:
    """A Group resource; raises MalformedObjectError. Pure."""
    try:
        return Group.model_validate(raw)
    except ValidationError as error:
        raise MalformedObjectError(describe_validation_error(error, Group)) from error


def parse_machine(raw: Mapping[str, Any]) -> Node:
    """A Node resource; an unreadable status alone is replaced (see the module docstring). Pure."""
    try:
        return _one_way_to_power(Node.model_validate(raw))
    except ValidationError as error:
        if not all(problem["loc"][:1] == ("status",) for problem in error.errors()):
            raise MalformedObjectError(describe_validation_error(error, Node)) from error
        why = describe_validation_error(error, Node)
    status = raw.get("status")
    attempts = status.get("attempts") if isinstance(status, Mapping) else None
    rebuilt = NodeStatus(
        attempts=attempts if isinstance(attempts, int) and attempts >= 0 else 0,
        reason="StatusRebuilt",
        message=f"status could not be read ({why}); rebuilt from the Kubernetes Node and Jobs",
    )
    try:
        node = Node.model_validate({**raw, "status": {}})
    except ValidationError as error:  # pragma: no cover  # the status was the only problem
        raise MalformedObjectError(describe_validation_error(error, Node)) from error
    return _one_way_to_power(node.model_copy(update={"status": rebuilt}))


def _one_way_to_power(node: Node) -> Node:
    """`node`, unless it names no single workable way to power its machine (raises MalformedObjectError). Pure."""
    problems = power_way_errors(node.spec)
    if problems:
        raise MalformedObjectError("; ".join(str(problem) for problem in problems[:MAX_REPORTED_ERRORS]))
    return node


def signature(resource: str, raw: Mapping[str, Any]) -> bytes | None:
    """A digest of everything of an object the actors read, or None for kinds that are always forwarded. Pure.

    Equal digests mean the change is invisible to the machines: a kubelet heartbeat on a core Node, or the echo
    of a status the operator wrote itself on a Group or Node resource (the Supervisor keeps the statuses its
    actors wrote, which are never older than their echo). Skipping those saves parsing every heartbeat and every
    status write, and a digest is kept instead of the raw parts so that no raw object outlives its event.
    """
    metadata = raw.get("metadata") or {}
    if resource == KUBE_NODES:
        spec = raw.get("spec") or {}
        status = raw.get("status") or {}
        parts: object = (
            _is_ready(status),
            spec.get("providerID") or "",
            bool(spec.get("unschedulable")),
            metadata.get("labels") or {},
            spec.get("taints") or [],
            status.get("capacity") or {},
            status.get("allocatable") or {},
        )
    elif resource in (GROUPS, MACHINES):
        parts = (
            metadata.get("uid"),
            metadata.get("generation"),
            metadata.get("labels") or {},
            metadata.get("annotations") or {},
            metadata.get("deletionTimestamp"),
            raw.get("spec"),
        )
    else:
        return None
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def parse_kube_node(raw: Mapping[str, Any]) -> KubeNodeObserved:
    """A core/v1 Node as the machines see it; taints Kubernetes would not accept are left out. Pure."""
    metadata = raw.get("metadata") or {}
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise MalformedObjectError("metadata.name is missing")
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    taints = tuple(taint for taint in (_taint(item) for item in spec.get("taints") or ()) if taint is not None)
    try:
        snapshot = NodeSnapshot(
            labels=dict(metadata.get("labels") or {}),
            taints=taints,
            capacity=_quantities(status.get("capacity")),
            allocatable=_quantities(status.get("allocatable")),
        )
    except ValidationError as error:
        raise MalformedObjectError(describe_validation_error(error, NodeSnapshot)) from error
    return KubeNodeObserved(
        name=name,
        ready=_is_ready(status),
        provider_id=str(spec.get("providerID") or ""),
        snapshot=snapshot,
        unschedulable=bool(spec.get("unschedulable")),
        taints=taints,
    )


def parse_job(raw: Mapping[str, Any]) -> JobObserved:
    """One of our power Jobs, read from its labels and conditions; raises MalformedObjectError. Pure."""
    metadata = raw.get("metadata") or {}
    job_labels = metadata.get("labels") or {}
    missing = [name for name in (labels.MACHINE_LABEL, labels.OPERATION_LABEL, labels.ATTEMPT_LABEL)
               if not job_labels.get(name)]
    if missing:
        raise MalformedObjectError(f"the Job lacks the label(s) {', '.join(missing)}")
    try:
        kind = OperationKind(job_labels[labels.OPERATION_LABEL])
        attempt = int(job_labels[labels.ATTEMPT_LABEL])
    except ValueError as error:
        raise MalformedObjectError(f"unreadable operation or attempt label: {error}") from error
    status = raw.get("status") or {}
    conditions = {
        str(condition.get("type")): condition
        for condition in status.get("conditions") or ()
        if isinstance(condition, Mapping) and condition.get("status") == "True"
    }
    failed = conditions.get("Failed")
    message = ""
    if failed is not None:
        message = str(failed.get("message") or failed.get("reason") or "the Job failed")
    return JobObserved(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        machine=str(job_labels[labels.MACHINE_LABEL]),
        group=str(job_labels.get(labels.GROUP_LABEL) or ""),
        kind=kind,
        attempt=attempt,
        active=int(status.get("active") or 0) > 0,
        succeeded="Complete" in conditions,
        failed=failed is not None,
        message=message,
        created=parse_timestamp(metadata.get("creationTimestamp")),
    )


def parse_timestamp(text: object) -> datetime | None:
    """A Kubernetes timestamp (RFC 3339, `Z` or an offset), or None. Pure."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def observe(resource: str, raw: Mapping[str, Any]) -> Observation:
    """The observation a listed or changed object means; raises MalformedObjectError. Pure."""
    if resource == GROUPS:
        return GroupObserved(parse_group(raw))
    if resource == MACHINES:
        return MachineObserved(parse_machine(raw))
    if resource == KUBE_NODES:
        return parse_kube_node(raw)
    if resource == POWER_JOBS:
        return parse_job(raw)
    raise MalformedObjectError(f"no observation is known for resource {resource!r}")


def removal(resource: str, raw: Mapping[str, Any]) -> Removal:
    """The observation that the object is gone; needs only its metadata. Pure."""
    metadata = raw.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    name = str(metadata.get("name") or "")
    if resource == GROUPS:
        return GroupRemoved(namespace, name)
    if resource == MACHINES:
        return MachineRemoved(namespace, name)
    if resource == KUBE_NODES:
        return KubeNodeRemoved(name)
    machine = str((metadata.get("labels") or {}).get(labels.MACHINE_LABEL) or "")
    return JobRemoved(namespace, name, machine)


def inventory(pending: Mapping[str, Mapping[str, Observation]]) -> InventoryListed:
    """One InventoryListed from the merged first lists, each resource ordered by key. Pure."""

    def ordered(resource: str) -> list[Observation]:
        observations = pending.get(resource) or {}
        return [observations[key] for key in sorted(observations)]

    return InventoryListed(
        groups=tuple(item.group for item in ordered(GROUPS) if isinstance(item, GroupObserved)),
        machines=tuple(item.node for item in ordered(MACHINES) if isinstance(item, MachineObserved)),
        kube_nodes=tuple(item for item in ordered(KUBE_NODES) if isinstance(item, KubeNodeObserved)),
        jobs=tuple(item for item in ordered(POWER_JOBS) if isinstance(item, JobObserved)),
    )


def _is_ready(status: Mapping[str, Any]) -> bool:
    return any(
        isinstance(condition, Mapping) and condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in status.get("conditions") or ()
    )


def _taint(raw: object) -> Taint | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        return Taint.model_validate(
            {"key": str(raw.get("key") or ""), "value": str(raw.get("value") or ""), "effect": raw.get("effect")}
        )
    except ValidationError:
        return None


def _quantities(raw: object) -> dict[str, str]:
    return {str(name): str(value) for name, value in raw.items()} if isinstance(raw, Mapping) else {}


# --- the actor ------------------------------------------------------------------------------------------------


@dataclass
class _Known:
    version: str
    removal: Removal
    signature: bytes | None = None
    """What the machines read of it (see `signature`); None for power Jobs, which are always forwarded."""


class KubeWatcherActor(ShellActor):
    """Raw watch output in, typed observations out to the Supervisor; see the module docstring."""

    actor_kind = "watcher"

    def __init__(self) -> None:
        super().__init__()
        self._supervisor: Any = None
        self._expected: frozenset[str] = frozenset(INVENTORY_RESOURCES)
        self._known: dict[str, dict[str, _Known]] = {}
        self._listed: set[str] = set()
        self._pending: dict[str, dict[str, Observation]] = {}
        self._inventory_sent = False

    def receiveMsg_ConfigureWatcher(self, message: ConfigureWatcher, sender: Any) -> None:
        self._supervisor = message.supervisor
        self._expected = frozenset(message.inventory_resources)
        self.actor_name = "watcher"

    def receiveMsg_Listed(self, message: Listed, sender: Any) -> None:
        resource = message.resource
        before = self._known.get(resource, {})
        after: dict[str, _Known] = {}
        changed: list[tuple[str, Observation]] = []
        # Drained, not iterated: each raw object is freed once parsed, which keeps the startup peak (and the heap
        # fragmentation it leaves behind) down to one object's worth of raw JSON instead of the whole list.
        for raw in drain_items(message):
            key = object_key(resource, raw)
            version = resource_version(raw)
            previous = before.get(key)
            if previous is not None and not is_newer(version, previous.version):
                after[key] = previous
                continue
            after[key], observation = self._take(resource, key, version, raw, previous)
            if observation is not None:
                changed.append((key, observation))
        self._known[resource] = after
        gone = [entry.removal for key, entry in before.items() if key not in after]
        if self._inventory_sent:
            for removed in gone:
                self._route(removed)
            for _key, observation in changed:
                self._route(observation)
            return
        pending = self._pending.setdefault(resource, {})
        for key in [key for key in pending if key not in after]:
            del pending[key]
        pending.update(changed)
        self._listed.add(resource)
        self._send_inventory_when_complete()

    def receiveMsg_WatchEvent(self, message: WatchEvent, sender: Any) -> None:
        resource, raw = message.resource, message.object
        key = object_key(resource, raw)
        version = resource_version(raw)
        known = self._known.setdefault(resource, {})
        previous = known.get(key)
        if message.type is WatchEventType.DELETED:
            if previous is not None and version and previous.version and is_newer(previous.version, version):
                return  # an old deletion of an object that has been created again since
            known.pop(key, None)
            if self._inventory_sent:
                self._route(removal(resource, raw))
            else:
                self._pending.get(resource, {}).pop(key, None)
            return
        if previous is not None and not is_newer(version, previous.version):
            return  # stale or repeated
        known[key], observation = self._take(resource, key, version, raw, previous)
        if observation is None:
            return
        if self._inventory_sent:
            self._route(observation)
        else:
            self._pending.setdefault(resource, {})[key] = observation

    # --- helpers -------------------------------------------------------------------------------------------------

    def _take(
        self, resource: str, key: str, version: str, raw: Mapping[str, Any], previous: _Known | None
    ) -> tuple[_Known, Observation | None]:
        """What to remember of the object, and its observation (None: nothing new to tell, or unreadable)."""
        digest = signature(resource, raw)
        # A removal needs only metadata, which even an unreadable object has; remembering the version of an
        # unreadable object keeps a relist from logging it again.
        known = _Known(version, removal(resource, raw), digest)
        unchanged = previous is not None and digest is not None and previous.signature == digest
        # Before the inventory a status change still counts: a replaced operator's last writes may land after the
        # list, and restart recovery derives from the newest status there is.
        if unchanged and (self._inventory_sent or resource == KUBE_NODES):
            return known, None
        try:
            observation = observe(resource, raw)
        except MalformedObjectError as error:
            metrics.WATCH_OBJECTS_SKIPPED.labels(resource).inc()
            kept = " (its last readable version stays in use)" if previous is not None else ""
            LOGGER.warning("watch %s: skipping %s at resourceVersion %s%s: %s", resource, key, version, kept, error)
            if resource == GROUPS:
                # The Group's owner must see it where they look (its status and Events), not only in our log.
                self._route(group_invalid(raw, str(error)))
            return known, None
        if isinstance(observation, MachineObserved) and observation.node.status.reason == "StatusRebuilt":
            LOGGER.warning("watch %s: %s: %s", resource, key, observation.node.status.message)
        return known, observation

    def _send_inventory_when_complete(self) -> None:
        if self._inventory_sent or not self._expected <= self._listed:
            return
        listed = inventory(self._pending)
        self._pending.clear()
        self._inventory_sent = True
        LOGGER.debug("watch: every resource listed; inventory of %d groups, %d machines, %d Kubernetes Nodes and "
                    "%d Jobs goes to the supervisor", len(listed.groups), len(listed.machines),
                    len(listed.kube_nodes), len(listed.jobs))
        self._route(listed)

    def _route(self, message: object) -> None:
        if self._supervisor is None:
            LOGGER.error("watcher: not configured; dropping %s", type(message).__name__)
            return
        self.send(self._supervisor, message)


def start_watcher(
    runtime: ActorRuntime,
    supervisor: Any,
    resources: Iterable[str] = INVENTORY_RESOURCES,
    timeout: float = 10.0,
) -> Any:
    """Create the KubeWatcherActor in `runtime`, configured to feed `supervisor`, and return its address."""
    address = runtime.create_actor(KubeWatcherActor, globalName=WATCHER_GLOBAL_NAME).result(timeout)
    runtime.tell(address, ConfigureWatcher(supervisor, tuple(resources)))
    return address
