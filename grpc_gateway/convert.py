"""Pure converters between the gateway's plain views and the externalgrpc wire messages.

Every rule about *how* CA must be answered, as opposed to *what* the answer is, lives here: which field
layout each CA version reads (both are always filled), what a scale-from-zero template Node must contain
(and which per-machine labels and transient taints a snapshot of a real member must lose first), how
per-group option overrides are merged into CA's own defaults, how a machine's price over a window is
reckoned, and how CA's stand-in nodes are told apart from real ones. Keeping these rules in pure functions
lets them be tested as tables without a server, and keeps the servicer down to "look up, convert, reply".
Nothing here does I/O or imports grpc itself. A request that cannot be converted (a timestamp or duration out
of range) raises the gateway's `InvalidRequest`, naming the field, so CA gets INVALID_ARGUMENT and not INTERNAL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

from google.protobuf.message import DecodeError

from actors.fsm.group import InstanceState, InstanceView
from actors.read_model import GroupSnapshot, MachineSnapshot
from grpc_gateway.errors import InvalidRequest
from grpc_gateway.views import NodeGroupView, NodeRef, TemplateNode
from protos import externalgrpc_pb2 as externalgrpc
from protos import k8s_node_pb2 as kubernetes
from schemas.common import AUTO, parse_duration, parse_quantity
from schemas.group import AutoscalingOptions
from schemas.labels import (
    CA_DELETION_CANDIDATE_TAINT,
    CA_FAKE_NODE_REASON_ANNOTATION,
    CA_TO_BE_DELETED_TAINT,
    EXERCISE_TAINT,
    MACHINE_LABEL,
    NODE_GROUP_ANNOTATION,
    UNSCHEDULABLE_TAINT,
)
from schemas.node import NodeState

OS_LABEL: Final = "kubernetes.io/os"
ARCH_LABEL: Final = "kubernetes.io/arch"
HOSTNAME_LABEL: Final = "kubernetes.io/hostname"

DEFAULT_MAX_PODS: Final = "110"
"""The kubelet's default maxPods, used when a template names no `pods` capacity (0 pods fits nothing)."""

CA_DEFAULT_UTILIZATION_THRESHOLD: Final = 0.5
CA_DEFAULT_GPU_UTILIZATION_THRESHOLD: Final = 0.5
CA_DEFAULT_MAX_NODE_STARTUP_SECONDS: Final = 15 * 60

_NANOSECONDS_PER_SECOND: Final = 1_000_000_000
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS_PER_HOUR: Final = Decimal(3600)
_DEFAULT_CPU_REQUEST: Final = Decimal("0.1")
_DEFAULT_MEMORY_REQUEST: Final = Decimal(200 * 1024 * 1024)
"""What the scheduler counts for a container that requests no CPU or memory (100m, 200Mi)."""
_WATTS_PER_KILOWATT: Final = Decimal(1000)

PER_MACHINE_LABELS: Final = frozenset({HOSTNAME_LABEL, MACHINE_LABEL})
"""Labels that name one machine; a template built from a member's snapshot must not claim them."""

TRANSIENT_TAINTS: Final = frozenset(
    {
        CA_TO_BE_DELETED_TAINT,
        CA_DELETION_CANDIDATE_TAINT,
        EXERCISE_TAINT,
        UNSCHEDULABLE_TAINT,
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/network-unavailable",
        "node.cloudprovider.kubernetes.io/uninitialized",
    }
)
"""Taints a member only carries for a while (cordoned, draining, under pressure, chosen by CA, exercised); a new member
would not have them, and a template carrying them would make CA believe no pending pod fits the group."""

_DURATION_OPTIONS: Final = (
    # (current Duration field, legacy K8sDuration field, CA flag default in seconds, override attribute)
    ("scaleDownUnneededDuration", "scaleDownUnneededTime", 10 * 60, "scale_down_unneeded_time"),
    ("scaleDownUnreadyDuration", "scaleDownUnreadyTime", 20 * 60, "scale_down_unready_time"),
    ("MaxNodeProvisionDuration", "MaxNodeProvisionTime", 15 * 60, "max_node_provision_time"),
)

_WIRE_INSTANCE_STATES: Final = {
    InstanceState.CREATING: externalgrpc.InstanceStatus.instanceCreating,
    InstanceState.RUNNING: externalgrpc.InstanceStatus.instanceRunning,
    InstanceState.DELETING: externalgrpc.InstanceStatus.instanceDeleting,
}

# What in-tree providers put in a template node: Ready, and no pressure. Reasons are ours.
_TEMPLATE_CONDITIONS: Final = (
    ("Ready", "True", "TemplateNodeReady"),
    ("MemoryPressure", "False", "TemplateNodeNoPressure"),
    ("DiskPressure", "False", "TemplateNodeNoPressure"),
    ("PIDPressure", "False", "TemplateNodeNoPressure"),
    ("NetworkUnavailable", "False", "TemplateNodeNetworkReady"),
)


def to_pb_node_group(view: NodeGroupView) -> externalgrpc.NodeGroup:
    """The wire form of a group. Pure."""
    return externalgrpc.NodeGroup(id=view.id, minSize=view.min_size, maxSize=view.max_size, debug=view.debug)


def node_group_view(group: GroupSnapshot) -> NodeGroupView:
    """How a group introduces itself to CA; the debug text is what CA prints beside the group. Pure."""
    return NodeGroupView(
        id=group.id,
        min_size=group.min_size,
        max_size=group.max_size,
        debug=f"{len(group.machines)} machines, target {group.target_size}",
    )


def to_pb_instance(view: InstanceView) -> externalgrpc.Instance:
    """The wire form of an instance; error info is attached only when there is an error code. Pure.

    CA treats any non-empty errorCode on a creating instance as a failed creation, and an errorInfo with
    an empty code as no error, so leaving the message unset when there is no error is equivalent and smaller.
    """
    status = externalgrpc.InstanceStatus(instanceState=_WIRE_INSTANCE_STATES[view.state])
    if view.error is not None and view.error.code:
        status.errorInfo.errorCode = view.error.code
        status.errorInfo.errorMessage = view.error.message
        status.errorInfo.instanceErrorClass = int(view.error.error_class)
    return externalgrpc.Instance(id=view.id, status=status)


def template_node(group: GroupSnapshot) -> TemplateNode | None:
    """What a new member of `group` would look like, or None when the group has no template source. Pure.

    The source is either a snapshot of a member last seen Ready or the Group's declared template. Labels that
    name one machine and taints a member only carries for a while are dropped; CA renames the template (and
    its hostname label) anyway, so the name only has to be a valid, recognisable node name.
    """
    source = group.template
    if source is None:
        return None
    return TemplateNode(
        name=f"template-{group.namespace}-{group.name}",
        group_id=group.id,
        labels={key: value for key, value in source.labels.items() if key not in PER_MACHINE_LABELS},
        taints=tuple(taint for taint in source.taints if taint.key not in TRANSIENT_TAINTS),
        capacity=dict(source.capacity),
        allocatable=dict(source.allocatable),
    )


def to_pb_node(template: TemplateNode) -> kubernetes.Node:
    """A v1.Node that a scheduler simulation can place pods on, as a new member would register. Pure.

    It carries no timestamps, so the same template always serializes to the same bytes.
    """
    node = kubernetes.Node()
    node.metadata.name = template.name
    node.metadata.labels.update(_template_labels(template))
    if template.group_id:
        node.metadata.annotations[NODE_GROUP_ANNOTATION] = template.group_id
    if template.provider_id:
        node.spec.providerID = template.provider_id
    for taint in template.taints:
        node.spec.taints.add(key=taint.key, value=taint.value, effect=taint.effect.value)
    capacity = _with_pods(template.capacity, DEFAULT_MAX_PODS)
    allocatable = _with_pods(template.allocatable or capacity, capacity["pods"])
    for resource, quantity in capacity.items():
        node.status.capacity[resource].string = quantity
    for resource, quantity in allocatable.items():
        node.status.allocatable[resource].string = quantity
    for condition_type, status, reason in _TEMPLATE_CONDITIONS:
        node.status.conditions.add(type=condition_type, status=status, reason=reason)
    return node


def node_bytes(template: TemplateNode) -> bytes:
    """The template as CA unmarshals it: plain protobuf v1.Node bytes, map keys sorted. Pure."""
    serialized: bytes = to_pb_node(template).SerializeToString(deterministic=True)
    return serialized


def template_response(template: TemplateNode) -> externalgrpc.NodeGroupTemplateNodeInfoResponse:
    """The TemplateNodeInfo answer with the same Node in the legacy field 1 and the current field 2. Pure."""
    return template_response_from_bytes(node_bytes(template))


def template_response_from_bytes(serialized: bytes) -> externalgrpc.NodeGroupTemplateNodeInfoResponse:
    """The TemplateNodeInfo answer for an already serialized Node (the servicer caches the bytes). Pure."""
    if not serialized:
        # OK with empty bytes makes CA dereference a nil template; refuse to build that answer at all.
        raise ValueError("a template response needs a serialized Node, not empty bytes")
    return externalgrpc.NodeGroupTemplateNodeInfoResponse(nodeInfo=serialized, nodeBytes=serialized)


def autoscaling_options(
    defaults: externalgrpc.NodeGroupAutoscalingOptions | None,
    overrides: AutoscalingOptions | None,
    learned_provision_seconds: float | None = None,
) -> externalgrpc.NodeGroupAutoscalingOptions | None:
    """The options to return for a group, or None to leave the response unset. Pure.

    CA replaces every option with the response's value, and reads an unset field as zero (a zero
    max-node-provision-time makes every booting machine time out at once). So with no override we answer
    nothing and CA keeps its flags. With overrides we start from CA's own `defaults` (from whichever
    duration layout its version sent; CA's documented flag defaults if it sent neither or no defaults at
    all), apply the overrides, and write every duration in both layouts. Raises `InvalidRequest` naming the
    field when a default we must carry over is too long for the legacy layout's int64 nanoseconds.

    `maxNodeProvisionTime: auto` answers `learned_provision_seconds` (the group's observed boots, see
    `actors.fsm.durations.learned_provision_seconds`); while that is None (too few boots seen) it answers CA's
    own default, exactly as if the option were not overridden.

    Caveat worth surfacing to users: CA 1.35 and 1.36 have no field for max-node-startup-time and set it
    to zero whenever options are returned (upstream issue #10245); we fill the pending field 11 anyway.
    """
    if overrides is None or not _overridden_names(overrides):
        return None
    options = externalgrpc.NodeGroupAutoscalingOptions()
    if defaults is None:
        options.scaleDownUtilizationThreshold = CA_DEFAULT_UTILIZATION_THRESHOLD
        options.scaleDownGpuUtilizationThreshold = CA_DEFAULT_GPU_UTILIZATION_THRESHOLD
    else:
        options.CopyFrom(defaults)
    if overrides.scale_down_utilization_threshold is not None:
        options.scaleDownUtilizationThreshold = overrides.scale_down_utilization_threshold
    if overrides.scale_down_gpu_utilization_threshold is not None:
        options.scaleDownGpuUtilizationThreshold = overrides.scale_down_gpu_utilization_threshold
    if overrides.zero_or_max_node_scaling is not None:
        options.zeroOrMaxNodeScaling = overrides.zero_or_max_node_scaling
    if overrides.ignore_daemon_sets_utilization is not None:
        options.ignoreDaemonSetsUtilization = overrides.ignore_daemon_sets_utilization
    for current_field, legacy_field, ca_default_seconds, override_name in _DURATION_OPTIONS:
        override: str | None = getattr(overrides, override_name)
        if override == AUTO:
            learned = learned_provision_seconds if override_name == "max_node_provision_time" else None
            override = None if learned is None else f"{learned}s"
        nanoseconds = (
            _seconds_to_nanoseconds(parse_duration(override))
            if override is not None
            else _default_duration_nanoseconds(options, current_field, legacy_field)
        )
        if nanoseconds is None:
            nanoseconds = ca_default_seconds * _NANOSECONDS_PER_SECOND
        getattr(options, current_field).FromNanoseconds(nanoseconds)
        getattr(options, legacy_field).duration = nanoseconds
    # Field 11 has no legacy layout; readers that know it would have sent it, others ignore it.
    if not options.HasField("maxNodeStartupDuration"):
        options.maxNodeStartupDuration.FromSeconds(CA_DEFAULT_MAX_NODE_STARTUP_SECONDS)
    return options


def options_response(
    request: externalgrpc.NodeGroupAutoscalingOptionsRequest,
    overrides: AutoscalingOptions | None,
    learned_provision_seconds: float | None = None,
) -> externalgrpc.NodeGroupAutoscalingOptionsResponse:
    """The NodeGroupGetOptions answer: options unset unless the group overrides something. Pure."""
    defaults = request.defaults if request.HasField("defaults") else None
    options = autoscaling_options(defaults, overrides, learned_provision_seconds)
    if options is None:
        return externalgrpc.NodeGroupAutoscalingOptionsResponse()
    return externalgrpc.NodeGroupAutoscalingOptionsResponse(nodeGroupAutoscalingOptions=options)


def node_from_pb(node: externalgrpc.ExternalGrpcNode) -> NodeRef:
    """The node CA asks about; flags CA's stand-ins for unregistered or failed instances. Pure.

    CA builds a stand-in with name == providerID == the instance id and the fake-node-reason
    annotation; such a node has no real name, so callers must resolve it by providerID.
    """
    annotations = dict(node.annotations)
    named_after_provider_id = node.providerID != "" and node.name == node.providerID
    is_stand_in = CA_FAKE_NODE_REASON_ANNOTATION in annotations and named_after_provider_id
    return NodeRef(
        name=node.name,
        provider_id=node.providerID,
        labels=dict(node.labels),
        annotations=annotations,
        is_stand_in=is_stand_in,
    )


def pricing_window(
    request: externalgrpc.PricingNodePriceRequest | externalgrpc.PricingPodPriceRequest,
) -> tuple[datetime | None, datetime | None]:
    """The (start, end) of a pricing request in UTC, None where CA sent nothing. Pure.

    The current timestamp fields are read first; CA before 1.34.2 only sends the legacy ones. A timestamp
    outside the years 1 to 9999 raises `InvalidRequest` naming its field.
    """
    return (
        _timestamp_field(request, "startTimestamp", "startTime"),
        _timestamp_field(request, "endTimestamp", "endTime"),
    )


def node_price(
    machine: MachineSnapshot, start: datetime, end: datetime, price_per_kwh: Decimal | None
) -> Decimal | None:
    """What running `machine` from `start` to `end` costs, or None when nothing prices it. Pure.

    The machine's hourly price wins; a machine with only a power draw is priced by energy (kilowatts times hours
    times the operator's price per kWh) when the operator was given one. The caller checks that end is not before start.
    """
    hourly = hourly_price(machine, price_per_kwh)
    return None if hourly is None else hourly * hours(start, end)


def hourly_price(machine: MachineSnapshot, price_per_kwh: Decimal | None) -> Decimal | None:
    """What an hour of `machine` powered on costs (see `node_price`), or None when nothing prices it. Pure."""
    if machine.hourly_price is not None:
        return machine.hourly_price
    if machine.power_watts is not None and price_per_kwh is not None:
        return Decimal(machine.power_watts) / _WATTS_PER_KILOWATT * price_per_kwh
    return None


def template_group_id(node: externalgrpc.ExternalGrpcNode) -> str:
    """The node group a template node was made for ("" for any other node), from the annotation we put on it. Pure.

    CA's price expander prices each expansion option by its template node, renamed by CA, so the annotation is
    the one stable way back to the group.
    """
    return str(node.annotations.get(NODE_GROUP_ANNOTATION, ""))


def next_machine_price(group: GroupSnapshot, price_per_kwh: Decimal | None) -> Decimal | None:
    """The hourly price of the cheapest powered-off machine of `group`: what one more member would cost. Pure.

    Scale-up powers on higher-priority machines first and, among equals, the cheaper one, so for a group without
    priorities this is the machine IncreaseSize would choose. None when no powered-off machine is priced.
    """
    prices = [
        price
        for machine in group.machines
        if machine.state is NodeState.SHUTDOWN and (price := hourly_price(machine, price_per_kwh)) is not None
    ]
    return min(prices, default=None)


@dataclass(frozen=True)
class ReferenceMachine:
    """The machine a pod's price is measured against: an hour of it and the CPU and memory it offers."""

    hourly_price: Decimal
    cpu: Decimal
    """Cores."""
    memory: Decimal
    """Bytes."""


def reference_machine(groups: Iterable[GroupSnapshot], price_per_kwh: Decimal | None) -> ReferenceMachine | None:
    """The cheapest priced machine of the homelab with a known size (its group's template), or None. Pure."""
    best: ReferenceMachine | None = None
    for group in groups:
        if group.template is None:
            continue
        try:
            cpu = parse_quantity(group.template.capacity.get("cpu", "0"))
            memory = parse_quantity(group.template.capacity.get("memory", "0"))
        except ValueError:
            continue
        if cpu <= 0 or memory <= 0:
            continue
        for machine in group.machines:
            price = hourly_price(machine, price_per_kwh)
            if price is not None and price > 0 and (best is None or price < best.hourly_price):
                best = ReferenceMachine(price, cpu, memory)
    return best


def pod_requests(serialized: bytes) -> tuple[Decimal, Decimal]:
    """The CPU (cores) and memory (bytes) a serialized v1.Pod requests, as the scheduler counts them. Pure.

    A container that requests no CPU or memory counts the scheduler's defaults (100m, 200Mi), so every pod has a
    price; init containers run one at a time before the others, so the larger of the two sums counts; the pod's
    overhead is added. Raises `InvalidRequest` for bytes that are no Pod or a request that is no quantity.
    """
    pod = kubernetes.Pod()
    try:
        pod.ParseFromString(serialized)
    except DecodeError as error:
        raise InvalidRequest(f"the pod to price is not a serialized v1.Pod: {error}") from error

    def summed(containers: Iterable[kubernetes.Container]) -> tuple[Decimal, Decimal]:
        cpu = memory = Decimal(0)
        for container in containers:
            requests = container.resources.requests
            cpu += _request(requests, "cpu") or _DEFAULT_CPU_REQUEST
            memory += _request(requests, "memory") or _DEFAULT_MEMORY_REQUEST
        return cpu, memory

    cpu, memory = summed(pod.spec.containers)
    for init in pod.spec.initContainers:
        init_cpu, init_memory = summed((init,))
        cpu, memory = max(cpu, init_cpu), max(memory, init_memory)
    return (
        cpu + (_request(pod.spec.overhead, "cpu") or Decimal(0)),
        memory + (_request(pod.spec.overhead, "memory") or Decimal(0)),
    )


def pod_price(
    requests: tuple[Decimal, Decimal], reference: ReferenceMachine, start: datetime, end: datetime
) -> Decimal:
    """A pod's share of the reference machine (its larger share, of CPU or of memory) for the window. Pure."""
    cpu, memory = requests
    share = max(cpu / reference.cpu, memory / reference.memory)
    return share * reference.hourly_price * hours(start, end)


def _request(resources: Mapping[str, kubernetes.Quantity], name: str) -> Decimal | None:
    quantity = resources.get(name)
    if quantity is None or not quantity.string:
        return None
    try:
        return parse_quantity(quantity.string)
    except ValueError as error:
        raise InvalidRequest(f"the pod to price requests {name} {quantity.string!r}: {error}") from error


def hours(start: datetime, end: datetime) -> Decimal:
    """The length of a pricing window in hours, exact. Pure."""
    window = end - start
    # From the timedelta's integer parts, so an hour is exactly 1 and not a float's neighbour of it.
    seconds = Decimal(window.days * 86_400 + window.seconds) + Decimal(window.microseconds) / 1_000_000
    return seconds / _SECONDS_PER_HOUR


def pod_bytes(request: externalgrpc.PricingPodPriceRequest) -> bytes:
    """The serialized v1.Pod of a pod-pricing request, from the current field or the legacy one. Pure."""
    return request.pod_bytes or request.pod


def _template_labels(template: TemplateNode) -> dict[str, str]:
    # Well-known labels first so a snapshot of a real node (which carries its own) wins.
    labels = {OS_LABEL: "linux", HOSTNAME_LABEL: template.name}
    if template.architecture:
        labels[ARCH_LABEL] = template.architecture
    labels.update(template.labels)
    return labels


def _with_pods(resources: Mapping[str, str], pods_if_missing: str) -> dict[str, str]:
    return {"pods": pods_if_missing, **resources}


def _overridden_names(overrides: AutoscalingOptions) -> set[str]:
    return {name for name in type(overrides).model_fields if getattr(overrides, name) is not None}


def _seconds_to_nanoseconds(seconds: float) -> int:
    # Through Decimal so 0.1 s is exactly 100 ms and not a float rounding artefact.
    return int(Decimal(repr(seconds)) * _NANOSECONDS_PER_SECOND)


def _default_duration_nanoseconds(
    options: externalgrpc.NodeGroupAutoscalingOptions, current_field: str, legacy_field: str
) -> int | None:
    if options.HasField(current_field):
        nanoseconds: int = getattr(options, current_field).ToNanoseconds()
        # A protobuf Duration reaches ±10,000 years; the legacy K8sDuration is int64 nanoseconds (±292 years),
        # and both layouts are always written, so a longer default has no faithful answer.
        if not _INT64_MIN <= nanoseconds <= _INT64_MAX:
            raise InvalidRequest(
                f"defaults.{current_field} of {getattr(options, current_field).seconds} s is out of range: "
                "option durations must fit int64 nanoseconds (about ±292 years)"
            )
        return nanoseconds
    if options.HasField(legacy_field):
        legacy_nanoseconds: int = getattr(options, legacy_field).duration
        return legacy_nanoseconds
    return None


def _timestamp_field(
    request: externalgrpc.PricingNodePriceRequest | externalgrpc.PricingPodPriceRequest,
    current_field: str,
    legacy_field: str,
) -> datetime | None:
    for field_name in (current_field, legacy_field):
        if request.HasField(field_name):
            timestamp = getattr(request, field_name)
            try:
                return _UNIX_EPOCH + timedelta(seconds=timestamp.seconds, microseconds=timestamp.nanos // 1000)
            except OverflowError as error:
                # datetime spans years 1 to 9999, the same range protobuf allows a Timestamp.
                raise InvalidRequest(
                    f"{field_name} (seconds={timestamp.seconds}, nanos={timestamp.nanos}) is outside "
                    "the years 1 to 9999"
                ) from error
    return None
