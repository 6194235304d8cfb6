"""The wire contract: the generated code is current, CA's method paths and field numbers are exact, and
what we serialize is read correctly by both the pre-1.35 and the 1.35+ layouts of CA's proto.

The two CA layouts are rebuilt here from descriptor_pb2, field by field as each CA version declares them,
so a renumbering in our superset shows up as a wrong value read by a "real" older or newer client.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, message_factory, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from grpc_gateway import convert
from grpc_gateway.views import TemplateNode
from protos import externalgrpc_pb2, externalgrpc_pb2_grpc, k8s_node_pb2, regenerate
from schemas.group import AutoscalingOptions

SERVICE = "clusterautoscaler.cloudprovider.v1.externalgrpc.CloudProvider"
PACKAGE = "clusterautoscaler.cloudprovider.v1.externalgrpc"
KUBE_PACKAGE = "homelab_autoscaler.kubernetes.v1"

# The 15 RPCs with their request and response messages, in CA's order.
RPCS = [
    ("NodeGroups", "NodeGroupsRequest", "NodeGroupsResponse"),
    ("NodeGroupForNode", "NodeGroupForNodeRequest", "NodeGroupForNodeResponse"),
    ("PricingNodePrice", "PricingNodePriceRequest", "PricingNodePriceResponse"),
    ("PricingPodPrice", "PricingPodPriceRequest", "PricingPodPriceResponse"),
    ("GPULabel", "GPULabelRequest", "GPULabelResponse"),
    ("GetAvailableGPUTypes", "GetAvailableGPUTypesRequest", "GetAvailableGPUTypesResponse"),
    ("Cleanup", "CleanupRequest", "CleanupResponse"),
    ("Refresh", "RefreshRequest", "RefreshResponse"),
    ("NodeGroupTargetSize", "NodeGroupTargetSizeRequest", "NodeGroupTargetSizeResponse"),
    ("NodeGroupIncreaseSize", "NodeGroupIncreaseSizeRequest", "NodeGroupIncreaseSizeResponse"),
    ("NodeGroupDeleteNodes", "NodeGroupDeleteNodesRequest", "NodeGroupDeleteNodesResponse"),
    (
        "NodeGroupDecreaseTargetSize",
        "NodeGroupDecreaseTargetSizeRequest",
        "NodeGroupDecreaseTargetSizeResponse",
    ),
    ("NodeGroupNodes", "NodeGroupNodesRequest", "NodeGroupNodesResponse"),
    ("NodeGroupTemplateNodeInfo", "NodeGroupTemplateNodeInfoRequest", "NodeGroupTemplateNodeInfoResponse"),
    ("NodeGroupGetOptions", "NodeGroupAutoscalingOptionsRequest", "NodeGroupAutoscalingOptionsResponse"),
]

_SCALAR_TYPE_NAMES = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_INT64: "int64",
}


def declared_type(field: FieldDescriptor) -> str:
    """The field's type as a .proto file would spell it, our package prefixes dropped."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = (field.message_type.fields_by_name[name] for name in ("key", "value"))
        return f"map<{declared_type(key)}, {declared_type(value)}>"
    if field.message_type is not None:
        name = field.message_type.full_name
    elif field.enum_type is not None:
        name = field.enum_type.full_name
    else:
        name = _SCALAR_TYPE_NAMES[field.type]
    name = name.removeprefix(f"{PACKAGE}.").removeprefix(f"{KUBE_PACKAGE}.")
    return f"repeated {name}" if field.is_repeated else name


def test_generated_code_is_current() -> None:
    assert regenerate.stale_files() == []


def test_service_full_name_and_rpc_signatures() -> None:
    service = externalgrpc_pb2.DESCRIPTOR.services_by_name["CloudProvider"]

    signatures = [(m.name, m.input_type.name, m.output_type.name) for m in service.methods]

    assert service.full_name == SERVICE
    assert signatures == RPCS
    assert not any(m.client_streaming or m.server_streaming for m in service.methods)


class RecordingChannel:
    """Stands in for grpc.Channel: remembers the method paths a client stub is built with."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def unary_unary(self, path: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        self.paths.append(path)
        return lambda *call_args, **call_kwargs: None


class RecordingServer:
    """Stands in for grpc.Server: remembers what the generated registration function hands it."""

    def __init__(self) -> None:
        self.registered: dict[str, list[str]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.registered[service] = list(handlers)


def test_client_method_paths_are_cas_exactly() -> None:
    channel = RecordingChannel()

    externalgrpc_pb2_grpc.CloudProviderStub(channel)

    assert channel.paths == [f"/{SERVICE}/{rpc}" for rpc, _, _ in RPCS]


def test_server_registers_every_rpc_under_cas_service_name() -> None:
    server = RecordingServer()
    servicer = externalgrpc_pb2_grpc.CloudProviderServicer()

    externalgrpc_pb2_grpc.add_CloudProviderServicer_to_server(servicer, server)

    assert server.registered == {SERVICE: [rpc for rpc, _, _ in RPCS]}


TIMESTAMP = "google.protobuf.Timestamp"
DURATION = "google.protobuf.Duration"
OPTIONS = "NodeGroupAutoscalingOptions"

# (message, field, number, declared type): the current layout, the legacy fields and the pending ones.
EXTERNALGRPC_FIELDS = [
    ("NodeGroup", "id", 1, "string"),
    ("NodeGroup", "minSize", 2, "int32"),
    ("NodeGroup", "maxSize", 3, "int32"),
    ("NodeGroup", "debug", 4, "string"),
    ("ExternalGrpcNode", "providerID", 1, "string"),
    ("ExternalGrpcNode", "name", 2, "string"),
    ("ExternalGrpcNode", "labels", 3, "map<string, string>"),
    ("ExternalGrpcNode", "annotations", 4, "map<string, string>"),
    ("NodeGroupsResponse", "nodeGroups", 1, "repeated NodeGroup"),
    ("NodeGroupForNodeRequest", "node", 1, "ExternalGrpcNode"),
    ("NodeGroupForNodeResponse", "nodeGroup", 1, "NodeGroup"),
    ("PricingNodePriceRequest", "node", 1, "ExternalGrpcNode"),
    ("PricingNodePriceRequest", "startTime", 2, TIMESTAMP),
    ("PricingNodePriceRequest", "endTime", 3, TIMESTAMP),
    ("PricingNodePriceRequest", "startTimestamp", 4, TIMESTAMP),
    ("PricingNodePriceRequest", "endTimestamp", 5, TIMESTAMP),
    ("PricingNodePriceResponse", "price", 1, "double"),
    ("PricingPodPriceRequest", "pod", 1, "bytes"),
    ("PricingPodPriceRequest", "startTime", 2, TIMESTAMP),
    ("PricingPodPriceRequest", "endTime", 3, TIMESTAMP),
    ("PricingPodPriceRequest", "pod_bytes", 4, "bytes"),
    ("PricingPodPriceRequest", "startTimestamp", 5, TIMESTAMP),
    ("PricingPodPriceRequest", "endTimestamp", 6, TIMESTAMP),
    ("PricingPodPriceResponse", "price", 1, "double"),
    ("GPULabelResponse", "label", 1, "string"),
    ("GetAvailableGPUTypesResponse", "gpuTypes", 1, "map<string, google.protobuf.Any>"),
    ("NodeGroupTargetSizeRequest", "id", 1, "string"),
    ("NodeGroupTargetSizeResponse", "targetSize", 1, "int32"),
    ("NodeGroupIncreaseSizeRequest", "delta", 1, "int32"),
    ("NodeGroupIncreaseSizeRequest", "id", 2, "string"),
    ("NodeGroupDeleteNodesRequest", "nodes", 1, "repeated ExternalGrpcNode"),
    ("NodeGroupDeleteNodesRequest", "id", 2, "string"),
    ("NodeGroupDecreaseTargetSizeRequest", "delta", 1, "int32"),
    ("NodeGroupDecreaseTargetSizeRequest", "id", 2, "string"),
    ("NodeGroupNodesRequest", "id", 1, "string"),
    ("NodeGroupNodesResponse", "instances", 1, "repeated Instance"),
    ("Instance", "id", 1, "string"),
    ("Instance", "status", 2, "InstanceStatus"),
    ("InstanceStatus", "instanceState", 1, "InstanceStatus.InstanceState"),
    ("InstanceStatus", "errorInfo", 2, "InstanceErrorInfo"),
    ("InstanceErrorInfo", "errorCode", 1, "string"),
    ("InstanceErrorInfo", "errorMessage", 2, "string"),
    ("InstanceErrorInfo", "instanceErrorClass", 3, "int32"),
    ("NodeGroupTemplateNodeInfoRequest", "id", 1, "string"),
    ("NodeGroupTemplateNodeInfoResponse", "nodeInfo", 1, "bytes"),
    ("NodeGroupTemplateNodeInfoResponse", "nodeBytes", 2, "bytes"),
    ("NodeGroupTemplateNodeInfoResponse", "resourceSliceBytes", 3, "repeated bytes"),
    ("K8sDuration", "duration", 1, "int64"),
    (OPTIONS, "scaleDownUtilizationThreshold", 1, "double"),
    (OPTIONS, "scaleDownGpuUtilizationThreshold", 2, "double"),
    (OPTIONS, "scaleDownUnneededTime", 3, "K8sDuration"),
    (OPTIONS, "scaleDownUnreadyTime", 4, "K8sDuration"),
    (OPTIONS, "MaxNodeProvisionTime", 5, "K8sDuration"),
    (OPTIONS, "zeroOrMaxNodeScaling", 6, "bool"),
    (OPTIONS, "ignoreDaemonSetsUtilization", 7, "bool"),
    (OPTIONS, "scaleDownUnneededDuration", 8, DURATION),
    (OPTIONS, "scaleDownUnreadyDuration", 9, DURATION),
    (OPTIONS, "MaxNodeProvisionDuration", 10, DURATION),
    (OPTIONS, "maxNodeStartupDuration", 11, DURATION),
    (OPTIONS, "allowNonAtomicScaleUpToMax", 12, "bool"),
    ("NodeGroupAutoscalingOptionsRequest", "id", 1, "string"),
    ("NodeGroupAutoscalingOptionsRequest", "defaults", 2, OPTIONS),
    ("NodeGroupAutoscalingOptionsResponse", "nodeGroupAutoscalingOptions", 1, OPTIONS),
]

# The v1.Node subset: numbers as in Kubernetes' generated.proto (proto2).
KUBERNETES_NODE_FIELDS = [
    ("Node", "metadata", 1, "ObjectMeta"),
    ("Node", "spec", 2, "NodeSpec"),
    ("Node", "status", 3, "NodeStatus"),
    ("ObjectMeta", "name", 1, "string"),
    ("ObjectMeta", "generateName", 2, "string"),
    ("ObjectMeta", "namespace", 3, "string"),
    ("ObjectMeta", "uid", 5, "string"),
    ("ObjectMeta", "labels", 11, "map<string, string>"),
    ("ObjectMeta", "annotations", 12, "map<string, string>"),
    ("NodeSpec", "podCIDR", 1, "string"),
    ("NodeSpec", "providerID", 3, "string"),
    ("NodeSpec", "unschedulable", 4, "bool"),
    ("NodeSpec", "taints", 5, "repeated Taint"),
    ("NodeSpec", "podCIDRs", 7, "repeated string"),
    ("Taint", "key", 1, "string"),
    ("Taint", "value", 2, "string"),
    ("Taint", "effect", 3, "string"),
    ("Taint", "timeAdded", 4, "Time"),
    ("NodeStatus", "capacity", 1, "map<string, Quantity>"),
    ("NodeStatus", "allocatable", 2, "map<string, Quantity>"),
    ("NodeStatus", "phase", 3, "string"),
    ("NodeStatus", "conditions", 4, "repeated NodeCondition"),
    ("NodeStatus", "addresses", 5, "repeated NodeAddress"),
    ("NodeCondition", "type", 1, "string"),
    ("NodeCondition", "status", 2, "string"),
    ("NodeCondition", "lastHeartbeatTime", 3, "Time"),
    ("NodeCondition", "lastTransitionTime", 4, "Time"),
    ("NodeCondition", "reason", 5, "string"),
    ("NodeCondition", "message", 6, "string"),
    ("NodeAddress", "type", 1, "string"),
    ("NodeAddress", "address", 2, "string"),
    ("Quantity", "string", 1, "string"),
    ("Time", "seconds", 1, "int64"),
    ("Time", "nanos", 2, "int32"),
]


def field_table(rows: list[tuple[str, str, int, str]]) -> list[Any]:
    return [pytest.param(*row, id=f"{row[0]}.{row[1]}={row[2]}") for row in rows]


@pytest.mark.parametrize(("message", "field", "number", "type_name"), field_table(EXTERNALGRPC_FIELDS))
def test_externalgrpc_field_numbers(message: str, field: str, number: int, type_name: str) -> None:
    descriptor = externalgrpc_pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name[field]

    assert (descriptor.number, declared_type(descriptor)) == (number, type_name)


@pytest.mark.parametrize(("message", "field", "number", "type_name"), field_table(KUBERNETES_NODE_FIELDS))
def test_kubernetes_node_field_numbers(message: str, field: str, number: int, type_name: str) -> None:
    descriptor = k8s_node_pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name[field]

    assert (descriptor.number, declared_type(descriptor)) == (number, type_name)


def test_instance_state_enum_values() -> None:
    states = externalgrpc_pb2.InstanceStatus.InstanceState.DESCRIPTOR

    assert {value.name: value.number for value in states.values} == {
        "unspecified": 0,
        "instanceRunning": 1,
        "instanceCreating": 2,
        "instanceDeleting": 3,
    }


# ---- CA's two layouts, rebuilt as each CA version's proto declares them -------------------------------

# (field name, number, type): a scalar name, a message full name starting with ".", or a local message.
FieldSpec = tuple[str, int, str]

_SCALAR_TYPES = {name: type_code for type_code, name in _SCALAR_TYPE_NAMES.items()}
KUBE_TIME = f".{KUBE_PACKAGE}.Time"

LEGACY_LAYOUT: dict[str, list[FieldSpec]] = {
    # CA 1.29 … 1.34.1: Kubernetes REST types inside the proto (metav1.Duration, metav1.Time, v1.Node).
    "KubernetesDuration": [("duration", 1, "int64")],
    "NodeGroupAutoscalingOptions": [
        ("scaleDownUtilizationThreshold", 1, "double"),
        ("scaleDownGpuUtilizationThreshold", 2, "double"),
        ("scaleDownUnneededTime", 3, "KubernetesDuration"),
        ("scaleDownUnreadyTime", 4, "KubernetesDuration"),
        ("MaxNodeProvisionTime", 5, "KubernetesDuration"),
        ("zeroOrMaxNodeScaling", 6, "bool"),
        ("ignoreDaemonSetsUtilization", 7, "bool"),
    ],
    "NodeGroupTemplateNodeInfoResponse": [("nodeInfo", 1, f".{KUBE_PACKAGE}.Node")],
    "PricingNodePriceRequest": [("startTime", 2, KUBE_TIME), ("endTime", 3, KUBE_TIME)],
    "PricingPodPriceRequest": [("pod", 1, "bytes"), ("startTime", 2, KUBE_TIME), ("endTime", 3, KUBE_TIME)],
}

CURRENT_LAYOUT: dict[str, list[FieldSpec]] = {
    # CA 1.35 and later: only well-known types; renumbered peers of the legacy fields.
    "NodeGroupAutoscalingOptions": [
        ("scaleDownUtilizationThreshold", 1, "double"),
        ("scaleDownGpuUtilizationThreshold", 2, "double"),
        ("zeroOrMaxNodeScaling", 6, "bool"),
        ("ignoreDaemonSetsUtilization", 7, "bool"),
        ("scaleDownUnneededDuration", 8, ".google.protobuf.Duration"),
        ("scaleDownUnreadyDuration", 9, ".google.protobuf.Duration"),
        ("MaxNodeProvisionDuration", 10, ".google.protobuf.Duration"),
    ],
    "NodeGroupTemplateNodeInfoResponse": [("nodeBytes", 2, "bytes")],
    "PricingNodePriceRequest": [
        ("startTimestamp", 4, ".google.protobuf.Timestamp"),
        ("endTimestamp", 5, ".google.protobuf.Timestamp"),
    ],
    "PricingPodPriceRequest": [
        ("pod_bytes", 4, "bytes"),
        ("startTimestamp", 5, ".google.protobuf.Timestamp"),
        ("endTimestamp", 6, ".google.protobuf.Timestamp"),
    ],
}


def build_layout(package: str, layout: dict[str, list[FieldSpec]]) -> dict[str, type[Message]]:
    """Message classes for one CA version's view of the wire, in a private descriptor pool."""
    pool = descriptor_pool.DescriptorPool()
    for dependency in (duration_pb2.DESCRIPTOR, timestamp_pb2.DESCRIPTOR, k8s_node_pb2.DESCRIPTOR):
        dependency_proto = descriptor_pb2.FileDescriptorProto()
        dependency.CopyToProto(dependency_proto)
        pool.Add(dependency_proto)
    file_proto = descriptor_pb2.FileDescriptorProto(
        name=f"{package}.proto",
        package=package,
        syntax="proto3",
        dependency=[
            "google/protobuf/duration.proto",
            "google/protobuf/timestamp.proto",
            k8s_node_pb2.DESCRIPTOR.name,
        ],
    )
    for message_name, fields in layout.items():
        message_proto = file_proto.message_type.add(name=message_name)
        for field_name, number, type_name in fields:
            field_proto = message_proto.field.add(
                name=field_name, number=number, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
            )
            if type_name in _SCALAR_TYPES:
                field_proto.type = _SCALAR_TYPES[type_name]
            else:
                field_proto.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                field_proto.type_name = type_name if type_name.startswith(".") else f".{package}.{type_name}"
    pool.Add(file_proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for name in layout
    }


LEGACY = build_layout("legacy_ca_1_34", LEGACY_LAYOUT)
CURRENT = build_layout("current_ca_1_35", CURRENT_LAYOUT)

TEMPLATE = TemplateNode(
    name="template-gpu",
    labels={"infra.homecluster.dev/group": "gpu"},
    capacity={"cpu": "8", "memory": "31Gi", "pods": "110"},
)
OVERRIDES = AutoscalingOptions(
    scale_down_unneeded_time="7m", scale_down_unready_time="30m", max_node_provision_time="25m"
)


def reread(message: Message, reader: type[Message]) -> Any:
    return reader.FromString(message.SerializeToString())


def test_legacy_reader_finds_the_template_node_in_field_one() -> None:
    response = reread(convert.template_response(TEMPLATE), LEGACY["NodeGroupTemplateNodeInfoResponse"])

    node = response.nodeInfo
    assert node.metadata.name == "template-gpu"
    assert node.status.allocatable["pods"].string == "110"


def test_current_reader_finds_the_template_node_in_field_two() -> None:
    response = reread(convert.template_response(TEMPLATE), CURRENT["NodeGroupTemplateNodeInfoResponse"])

    node = k8s_node_pb2.Node.FromString(response.nodeBytes)
    assert node.metadata.name == "template-gpu"
    assert node.status.allocatable["pods"].string == "110"


@pytest.mark.parametrize(
    ("field", "seconds"),
    [
        pytest.param("scaleDownUnneededTime", 7 * 60, id="unneeded"),
        pytest.param("scaleDownUnreadyTime", 30 * 60, id="unready"),
        pytest.param("MaxNodeProvisionTime", 25 * 60, id="max-node-provision"),
    ],
)
def test_legacy_reader_gets_durations_in_nanoseconds(field: str, seconds: int) -> None:
    options = convert.autoscaling_options(None, OVERRIDES)
    assert options is not None

    legacy = reread(options, LEGACY["NodeGroupAutoscalingOptions"])

    assert getattr(legacy, field).duration == seconds * 1_000_000_000


@pytest.mark.parametrize(
    ("field", "seconds"),
    [
        pytest.param("scaleDownUnneededDuration", 7 * 60, id="unneeded"),
        pytest.param("scaleDownUnreadyDuration", 30 * 60, id="unready"),
        pytest.param("MaxNodeProvisionDuration", 25 * 60, id="max-node-provision"),
    ],
)
def test_current_reader_gets_durations_as_protobuf_durations(field: str, seconds: int) -> None:
    options = convert.autoscaling_options(None, OVERRIDES)
    assert options is not None

    current = reread(options, CURRENT["NodeGroupAutoscalingOptions"])

    assert getattr(current, field).ToSeconds() == seconds


@pytest.mark.parametrize(
    ("layout", "defaults"),
    [
        pytest.param(
            LEGACY,
            {"scaleDownUnneededTime": {"duration": 300_000_000_000}, "scaleDownUtilizationThreshold": 0.6},
            id="legacy-client",
        ),
        pytest.param(
            CURRENT,
            {"scaleDownUnneededDuration": {"seconds": 300}, "scaleDownUtilizationThreshold": 0.6},
            id="current-client",
        ),
    ],
)
def test_defaults_sent_by_either_layout_come_back_in_both(
    layout: dict[str, type[Message]], defaults: dict[str, Any]
) -> None:
    sent = layout["NodeGroupAutoscalingOptions"](**defaults)
    received = externalgrpc_pb2.NodeGroupAutoscalingOptions.FromString(sent.SerializeToString())

    options = convert.autoscaling_options(received, AutoscalingOptions(zero_or_max_node_scaling=True))
    assert options is not None
    legacy = reread(options, LEGACY["NodeGroupAutoscalingOptions"])
    current = reread(options, CURRENT["NodeGroupAutoscalingOptions"])

    assert legacy.scaleDownUnneededTime.duration == 300_000_000_000
    assert current.scaleDownUnneededDuration.ToSeconds() == 300
    assert (legacy.scaleDownUtilizationThreshold, current.scaleDownUtilizationThreshold) == (0.6, 0.6)
    assert (legacy.zeroOrMaxNodeScaling, current.zeroOrMaxNodeScaling) == (True, True)


START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
END = datetime(2026, 5, 1, 13, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("layout", "message", "fields"),
    [
        pytest.param(
            LEGACY,
            "PricingNodePriceRequest",
            {"startTime": {"seconds": int(START.timestamp())}, "endTime": {"seconds": int(END.timestamp())}},
            id="legacy-node-price",
        ),
        pytest.param(
            LEGACY,
            "PricingPodPriceRequest",
            {"startTime": {"seconds": int(START.timestamp())}, "endTime": {"seconds": int(END.timestamp())}},
            id="legacy-pod-price",
        ),
        pytest.param(
            CURRENT,
            "PricingNodePriceRequest",
            {
                "startTimestamp": {"seconds": int(START.timestamp())},
                "endTimestamp": {"seconds": int(END.timestamp())},
            },
            id="current-node-price",
        ),
        pytest.param(
            CURRENT,
            "PricingPodPriceRequest",
            {
                "startTimestamp": {"seconds": int(START.timestamp())},
                "endTimestamp": {"seconds": int(END.timestamp())},
            },
            id="current-pod-price",
        ),
    ],
)
def test_pricing_window_from_either_layout(
    layout: dict[str, type[Message]], message: str, fields: dict[str, Any]
) -> None:
    sent = layout[message](**fields)
    superset_type: type[Message] = getattr(externalgrpc_pb2, message)

    received = superset_type.FromString(sent.SerializeToString())

    assert convert.pricing_window(received) == (START, END)
