"""Random Cluster Autoscaler requests against the real gRPC gateway backed by real group and node actors.

Each example starts its own small homelab: an `ActorRuntime` with the Supervisor, two groups and their machines
(listed as the watchers would list them, with a `FakeEffectPort` in place of the Kubernetes writer), the
`ActorMutations` port the operator uses, and a `CloudProviderServicer` served on 127.0.0.1 port 0. Then it sends
a short program of random calls: unknown, empty and garbled group ids; zero, negative, huge and int32-extreme
deltas; nodes that are empty, named only, identified only by providerID, duplicated, CA's stand-ins, thousands of
them at once; random text in every string field; random pricing windows and option defaults; and raw bytes on
the wire. For every call:

- the status code is one the call may answer (`EXPECTED_CODES`): never UNKNOWN or our INTERNAL catch-all;
- it answers before its deadline (a hang would surface as DEADLINE_EXCEEDED, which no call may answer here);
- a call that did not succeed changed nothing CA can see (each group's target, instances and machine states).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, TypeAlias

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from actors.fsm.group import InstanceView
from actors.read_model import ReadModel
from actors.runtime import ActorRuntime
from grpc_gateway.mutations import ActorMutations
from grpc_gateway.server import create_server, stop_server
from grpc_gateway.servicer import CloudProviderServicer
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas.labels import CA_FAKE_NODE_REASON_ANNOTATION
from schemas.node import NodeState, NodeStatus
from tests.support.actor_fakes import kube_node, make_group, make_node, start_lab

Code: TypeAlias = grpc.StatusCode
CALL_DEADLINE: Final = 10.0
"""Seconds a call may take; far above any honest answer (mutations time out on their own after 2 s)."""
MUTATION_TIMEOUT: Final = 2.0
SERVICE: Final = "clusterautoscaler.cloudprovider.v1.externalgrpc.CloudProvider"
GRPC_UNDECODABLE_REQUEST: Final = "Exception deserializing request!"
"""grpcio's own answer (INTERNAL) to bytes that are not the request message; our servicer never sees them."""

# Python's datetime (and protobuf's Timestamp) spans years 1 to 9999; outside it a pricing window is invalid.
MIN_TIMESTAMP_SECONDS: Final = -62_135_596_800
MAX_TIMESTAMP_SECONDS: Final = 253_402_300_799
# CA's option defaults are carried over as int64 nanoseconds; a longer default is invalid.
MAX_DURATION_SECONDS: Final = (2**63 - 1) // 10**9 - 1
PROTOBUF_DURATION_SECONDS: Final = 315_576_000_000
"""The longest protobuf Duration (about 10,000 years), either sign."""
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

EXPECTED_CODES: Final[dict[str, frozenset[Code]]] = {
    "NodeGroups": frozenset({Code.OK}),
    "NodeGroupForNode": frozenset({Code.OK}),
    "NodeGroupTargetSize": frozenset({Code.OK, Code.NOT_FOUND}),
    "NodeGroupNodes": frozenset({Code.OK, Code.NOT_FOUND}),
    "NodeGroupGetOptions": frozenset({Code.OK, Code.NOT_FOUND, Code.INVALID_ARGUMENT}),
    "NodeGroupTemplateNodeInfo": frozenset({Code.OK, Code.NOT_FOUND, Code.UNIMPLEMENTED}),
    "NodeGroupIncreaseSize": frozenset(
        {Code.OK, Code.NOT_FOUND, Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED, Code.FAILED_PRECONDITION}
    ),
    "NodeGroupDeleteNodes": frozenset({Code.OK, Code.NOT_FOUND, Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION}),
    "NodeGroupDecreaseTargetSize": frozenset(
        {Code.OK, Code.NOT_FOUND, Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION}
    ),
    "PricingNodePrice": frozenset({Code.OK, Code.INVALID_ARGUMENT, Code.UNIMPLEMENTED}),
    "PricingPodPrice": frozenset({Code.OK, Code.INVALID_ARGUMENT, Code.UNIMPLEMENTED}),
    "GPULabel": frozenset({Code.OK}),
    "GetAvailableGPUTypes": frozenset({Code.OK}),
    "Refresh": frozenset({Code.OK}),
    "Cleanup": frozenset({Code.OK}),
}
"""What each call may answer to any request at all, while this replica leads and its actors run."""
MUTATIONS: Final = frozenset({"NodeGroupIncreaseSize", "NodeGroupDeleteNodes", "NodeGroupDecreaseTargetSize"})
REQUEST_TYPES: Final[dict[str, type[Any]]] = {
    method.name: method.input_type._concrete_class
    for method in externalgrpc.DESCRIPTOR.services_by_name["CloudProvider"].methods
}

# --- the homelab -------------------------------------------------------------------------------------------------

NAMESPACE: Final = "lab"
WORKERS: Final = f"{NAMESPACE}/workers"
GPU: Final = f"{NAMESPACE}/gpu"
READY_MACHINE: Final = "w-1"
MACHINES: Final = ("w-1", "w-2", "w-3", "g-1", "g-2")


def provider_id(machine: str) -> str:
    return f"homelab://{NAMESPACE}/{machine}"


def _inventory() -> tuple[Any, ...]:
    groups = (
        make_group("workers", max_size=3, min_size=1),
        make_group(
            "gpu", max_size=2, gpu_label="accelerator", gpu_types=["rtx"],
            autoscaling_options={"scale_down_unneeded_time": "30m"},
        ),
    )
    ready = NodeStatus.model_validate({"state": NodeState.READY, "providerID": provider_id(READY_MACHINE)})
    machines = (
        make_node(READY_MACHINE, price="0.12", status=ready, provider_id=provider_id(READY_MACHINE)),
        make_node("w-2", watts=65, provider_id=provider_id("w-2")),
        make_node("w-3", provider_id=provider_id("w-3")),
        make_node("g-1", group="gpu", provider_id=provider_id("g-1")),
        make_node("g-2", group="gpu", provider_id=provider_id("g-2")),
    )
    return groups, machines, (kube_node(READY_MACHINE, provider_id=provider_id(READY_MACHINE)),)


@dataclass
class RunningGateway:
    stub: externalgrpc_grpc.CloudProviderStub
    channel: grpc.Channel
    read_model: ReadModel

    def state(self) -> tuple[tuple[str, int, tuple[InstanceView, ...], tuple[tuple[str, NodeState], ...]], ...]:
        """What CA can see of every group: target, instances, and each machine's state."""
        return tuple(
            (group.id, group.target_size, group.instances, tuple((m.name, m.state) for m in group.machines))
            for group in self.read_model.groups()
        )

    def call(self, rpc: str, request: Any) -> tuple[Code, str]:
        try:
            getattr(self.stub, rpc)(request, timeout=CALL_DEADLINE)
        except grpc.RpcError as error:
            return error.code(), str(error.details())
        return Code.OK, ""

    def call_raw(self, rpc: str, payload: bytes) -> tuple[Code, str]:
        """Send `payload` as the request message's bytes, whatever they are."""
        method = self.channel.unary_unary(f"/{SERVICE}/{rpc}")
        try:
            method(payload, timeout=CALL_DEADLINE)
        except grpc.RpcError as error:
            return error.code(), str(error.details())
        return Code.OK, ""


@contextlib.contextmanager
def running_gateway() -> Iterator[RunningGateway]:
    """The homelab behind a real server on 127.0.0.1:0; everything is stopped (threads joined) on exit."""
    runtime = ActorRuntime(tick_interval=0.01, name="fuzz-gateway")
    runtime.start()
    try:
        with start_lab(runtime) as lab:
            lab.list_inventory(*_inventory())
            assert lab.machine(READY_MACHINE).state is NodeState.READY
            lab.read_model.set_inventory_applied(True)  # what the operator does once the Supervisor has it
            mutations = ActorMutations(runtime, lambda: lab.supervisor, timeout_seconds=MUTATION_TIMEOUT)
            servicer = CloudProviderServicer(lab.read_model, mutations, price_per_kwh=Decimal("0.30"))
            server, port = create_server("127.0.0.1:0", servicer, tls=None, max_workers=4)
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            try:
                yield RunningGateway(externalgrpc_grpc.CloudProviderStub(channel), channel, lab.read_model)
            finally:
                channel.close()
                stop_server(server, grace_seconds=0)
    finally:
        runtime.stop(timeout=10.0)


# --- strategies ----------------------------------------------------------------------------------------------------

TEXT = st.text(max_size=48)
"""Any Unicode text (protobuf strings must be UTF-8; raw bytes go through `test_raw_bytes_...`)."""
GROUP_IDS = st.one_of(
    st.sampled_from([WORKERS, GPU, "", "lab", "lab/", "/workers", "LAB/WORKERS", f"{WORKERS} ", f"{WORKERS}\x00",
                     "lab/workers/extra", "other/workers"]),
    TEXT,
)
DELTAS = st.one_of(st.sampled_from([0, 1, -1, 2, -2, 3, -3, INT32_MAX, INT32_MIN]), st.integers(INT32_MIN, INT32_MAX))
KNOWN_NAMES = [*MACHINES, "control-plane", ""]
KNOWN_PROVIDER_IDS = [*(provider_id(machine) for machine in MACHINES), "homelab://lab/nobody", ""]
NAMES = st.one_of(st.sampled_from(KNOWN_NAMES), TEXT)
PROVIDER_IDS = st.one_of(st.sampled_from(KNOWN_PROVIDER_IDS), TEXT)
STRING_MAPS = st.dictionaries(TEXT, TEXT, max_size=3)


def _stand_in(instance_id: str) -> externalgrpc.ExternalGrpcNode:
    """How CA names an instance without a registered Node: name == providerID, plus its annotation."""
    return externalgrpc.ExternalGrpcNode(
        name=instance_id, providerID=instance_id, annotations={CA_FAKE_NODE_REASON_ANNOTATION: "registration"}
    )


NODES = st.one_of(
    st.builds(externalgrpc.ExternalGrpcNode, name=NAMES, providerID=PROVIDER_IDS, labels=STRING_MAPS,
              annotations=STRING_MAPS),
    st.builds(externalgrpc.ExternalGrpcNode, name=NAMES),
    st.builds(externalgrpc.ExternalGrpcNode, providerID=PROVIDER_IDS),
    st.builds(externalgrpc.ExternalGrpcNode, name=st.sampled_from(MACHINES),
              providerID=st.sampled_from(MACHINES).map(provider_id)),
    PROVIDER_IDS.map(_stand_in),
    st.just(externalgrpc.ExternalGrpcNode()),
)


def _thousands(count: int, prefix: str) -> list[externalgrpc.ExternalGrpcNode]:
    return [
        externalgrpc.ExternalGrpcNode(name=f"{prefix}-{index}", providerID=f"homelab://{prefix}/{index}")
        for index in range(count)
    ]


NODE_LISTS = st.one_of(
    st.lists(NODES, max_size=8),
    st.tuples(NODES, st.integers(2, 50)).map(lambda repeated: [repeated[0]] * repeated[1]),
    st.tuples(st.integers(1000, 5000), st.sampled_from(["ghost", READY_MACHINE])).map(lambda made: _thousands(*made)),
)
TIMESTAMPS = st.one_of(
    st.none(),
    st.builds(timestamp_pb2.Timestamp, seconds=st.integers(MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS),
              nanos=st.integers(0, 999_999_999)),
    # Anything the wire can carry: years outside 1 to 9999, and nanos protobuf would call invalid.
    st.builds(timestamp_pb2.Timestamp, seconds=st.integers(INT64_MIN, INT64_MAX),
              nanos=st.integers(INT32_MIN, INT32_MAX)),
)
DURATIONS = st.one_of(
    st.none(),
    st.builds(duration_pb2.Duration, seconds=st.integers(-MAX_DURATION_SECONDS, MAX_DURATION_SECONDS),
              nanos=st.integers(0, 999_999_999)),
    # Up to protobuf's own limit, far past int64 nanoseconds.
    st.builds(duration_pb2.Duration, seconds=st.integers(-PROTOBUF_DURATION_SECONDS, PROTOBUF_DURATION_SECONDS),
              nanos=st.integers(-999_999_999, 999_999_999)),
)


def _pricing(request_type: type[Any], fields: dict[str, Any]) -> Any:
    return request_type(**{name: value for name, value in fields.items() if value is not None})


def _pricing_requests(request_type: type[Any], **extra: Any) -> st.SearchStrategy[Any]:
    return st.builds(
        lambda fields: _pricing(request_type, fields),
        st.fixed_dictionaries(
            {"startTimestamp": TIMESTAMPS, "endTimestamp": TIMESTAMPS, "startTime": TIMESTAMPS, "endTime": TIMESTAMPS},
            optional=extra,
        ),
    )


def _options(fields: dict[str, Any]) -> externalgrpc.NodeGroupAutoscalingOptions:
    return externalgrpc.NodeGroupAutoscalingOptions(**{k: v for k, v in fields.items() if v is not None})


OPTION_DEFAULTS = st.one_of(
    st.none(),
    st.fixed_dictionaries({
        "scaleDownUtilizationThreshold": st.floats(),
        "scaleDownGpuUtilizationThreshold": st.floats(),
        "scaleDownUnneededDuration": DURATIONS,
        "scaleDownUnreadyDuration": DURATIONS,
        "MaxNodeProvisionDuration": DURATIONS,
        "maxNodeStartupDuration": DURATIONS,
        "zeroOrMaxNodeScaling": st.booleans(),
    }).map(_options),
)  # fmt: skip


def _with_defaults(group_id: str, defaults: externalgrpc.NodeGroupAutoscalingOptions | None) -> Any:
    request = externalgrpc.NodeGroupAutoscalingOptionsRequest(id=group_id)
    if defaults is not None:
        request.defaults.CopyFrom(defaults)
    return request


REQUESTS: Final[dict[str, st.SearchStrategy[Any]]] = {
    "NodeGroups": st.just(externalgrpc.NodeGroupsRequest()),
    "NodeGroupForNode": st.builds(externalgrpc.NodeGroupForNodeRequest, node=NODES),
    "NodeGroupTargetSize": st.builds(externalgrpc.NodeGroupTargetSizeRequest, id=GROUP_IDS),
    "NodeGroupNodes": st.builds(externalgrpc.NodeGroupNodesRequest, id=GROUP_IDS),
    "NodeGroupGetOptions": st.builds(_with_defaults, GROUP_IDS, OPTION_DEFAULTS),
    "NodeGroupTemplateNodeInfo": st.builds(externalgrpc.NodeGroupTemplateNodeInfoRequest, id=GROUP_IDS),
    "NodeGroupIncreaseSize": st.builds(externalgrpc.NodeGroupIncreaseSizeRequest, id=GROUP_IDS, delta=DELTAS),
    "NodeGroupDeleteNodes": st.builds(
        lambda group_id, nodes: externalgrpc.NodeGroupDeleteNodesRequest(id=group_id, nodes=nodes),
        GROUP_IDS, NODE_LISTS,
    ),
    "NodeGroupDecreaseTargetSize": st.builds(
        externalgrpc.NodeGroupDecreaseTargetSizeRequest, id=GROUP_IDS, delta=DELTAS
    ),
    "PricingNodePrice": st.tuples(_pricing_requests(externalgrpc.PricingNodePriceRequest), NODES).map(
        lambda made: _priced_node(*made)
    ),
    "PricingPodPrice": st.tuples(_pricing_requests(externalgrpc.PricingPodPriceRequest), st.binary(max_size=64)).map(
        lambda made: _priced_pod(*made)
    ),
    "GPULabel": st.just(externalgrpc.GPULabelRequest()),
    "GetAvailableGPUTypes": st.just(externalgrpc.GetAvailableGPUTypesRequest()),
    "Refresh": st.just(externalgrpc.RefreshRequest()),
    "Cleanup": st.just(externalgrpc.CleanupRequest()),
}  # fmt: skip


def _priced_node(request: Any, node: externalgrpc.ExternalGrpcNode) -> Any:
    request.node.CopyFrom(node)
    return request


def _priced_pod(request: Any, pod: bytes) -> Any:
    request.pod_bytes = pod
    return request


CALLS = st.one_of(*(st.tuples(st.just(rpc), strategy) for rpc, strategy in REQUESTS.items()))
PROGRAMS = st.lists(CALLS, min_size=1, max_size=4)

Call = tuple[str, Any]


def _program(*calls: Call) -> list[Call]:
    return list(calls)


def _delete(group_id: str, nodes: list[externalgrpc.ExternalGrpcNode]) -> Call:
    return "NodeGroupDeleteNodes", externalgrpc.NodeGroupDeleteNodesRequest(id=group_id, nodes=nodes)


def _increase(group_id: str, delta: int) -> Call:
    return "NodeGroupIncreaseSize", externalgrpc.NodeGroupIncreaseSizeRequest(id=group_id, delta=delta)


def _decrease(group_id: str, delta: int) -> Call:
    return "NodeGroupDecreaseTargetSize", externalgrpc.NodeGroupDecreaseTargetSizeRequest(id=group_id, delta=delta)


# --- properties ----------------------------------------------------------------------------------------------------


def check_answer(gateway: RunningGateway, rpc: str, answer: Callable[[], tuple[Code, str]]) -> None:
    """Make one call and assert the answer and what it left behind."""
    before = gateway.state()
    code, details = answer()
    assert code in EXPECTED_CODES[rpc], f"{rpc} answered {code.name}: {details}"
    if code is not Code.OK or rpc not in MUTATIONS:
        assert gateway.state() == before, f"{rpc} answered {code.name} but changed what CA sees"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(program=PROGRAMS)
@example(program=_program(_delete(WORKERS, _thousands(5000, "ghost"))))
@example(program=_program(_delete(WORKERS, _thousands(3000, READY_MACHINE))))
@example(program=_program(_delete(WORKERS, [externalgrpc.ExternalGrpcNode(name=READY_MACHINE)] * 2000)))
@example(program=_program(_increase(WORKERS, INT32_MAX), _increase(WORKERS, INT32_MIN), _increase(WORKERS, 0)))
@example(program=_program(_decrease(WORKERS, INT32_MIN), _decrease(WORKERS, INT32_MAX), _decrease("", -1)))
@example(program=_program(_increase(WORKERS, 2), _decrease(WORKERS, INT32_MIN), _increase(WORKERS, 1)))
@example(program=_program(_delete(WORKERS, []), _delete("", [externalgrpc.ExternalGrpcNode()])))
def test_random_requests_get_an_expected_status_and_rejections_change_nothing(program: list[Call]) -> None:
    run_program(program)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif("'slow' not in config.getoption('markexpr')", reason="only when asked for: pytest -m slow")
@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(program=PROGRAMS)
def test_random_requests_at_length(program: list[Call]) -> None:
    """The same property over many more programs (several minutes): `pytest -m slow tests/fuzz`."""
    run_program(program)


def run_program(program: list[Call]) -> None:
    with running_gateway() as gateway:
        for rpc, request in program:
            check_answer(gateway, rpc, functools.partial(gateway.call, rpc, request))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=st.lists(st.tuples(st.sampled_from(sorted(REQUEST_TYPES)), st.binary(max_size=256)), min_size=1,
                      max_size=6))
def test_raw_bytes_on_the_wire_are_answered_and_change_nothing(calls: list[tuple[str, bytes]]) -> None:
    with running_gateway() as gateway:
        for rpc, payload in calls:
            before = gateway.state()
            code, details = gateway.call_raw(rpc, payload)
            if code is Code.INTERNAL:
                # Only grpcio's refusal to parse the bytes: our servicer never answers INTERNAL to input.
                assert details == GRPC_UNDECODABLE_REQUEST, details
                assert gateway.state() == before
                continue
            assert code in EXPECTED_CODES[rpc], f"{rpc} answered {code.name}: {details}"
            if code is not Code.OK or rpc not in MUTATIONS:
                assert gateway.state() == before


def test_the_gateway_still_answers_after_a_flood_of_bad_requests() -> None:
    with running_gateway() as gateway:
        for delta in (0, -1, INT32_MIN, INT32_MAX):
            gateway.call(*_increase(WORKERS, delta))
        gateway.call(*_delete(WORKERS, _thousands(5000, "ghost")))
        assert gateway.call(*_increase(WORKERS, 1)) == (Code.OK, "")
        assert dict((group, target) for group, target, *_ in gateway.state())[WORKERS] == 2


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param(MAX_TIMESTAMP_SECONDS + 1, id="after-year-9999"),
        pytest.param(MIN_TIMESTAMP_SECONDS - 1, id="before-year-1"),
        pytest.param(2**62, id="int64-huge"),
    ],
)
def test_pricing_timestamps_outside_what_python_can_represent_are_invalid_arguments(seconds: int) -> None:
    request = externalgrpc.PricingNodePriceRequest(
        node=externalgrpc.ExternalGrpcNode(name=READY_MACHINE, providerID=provider_id(READY_MACHINE)),
        startTimestamp=timestamp_pb2.Timestamp(seconds=0),
        endTimestamp=timestamp_pb2.Timestamp(seconds=seconds),
    )
    with running_gateway() as gateway:
        code, details = gateway.call("PricingNodePrice", request)
    assert code is Code.INVALID_ARGUMENT, details
    assert "endTimestamp" in details


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param(MAX_DURATION_SECONDS + 2, id="just-past-int64-nanoseconds"),
        pytest.param(PROTOBUF_DURATION_SECONDS, id="protobuf-duration-maximum"),
        pytest.param(-PROTOBUF_DURATION_SECONDS, id="protobuf-duration-minimum"),
    ],
)
def test_option_defaults_too_long_for_int64_nanoseconds_are_invalid_arguments(seconds: int) -> None:
    request = externalgrpc.NodeGroupAutoscalingOptionsRequest(id=GPU)  # the group that overrides options
    request.defaults.scaleDownUnreadyDuration.CopyFrom(duration_pb2.Duration(seconds=seconds))
    with running_gateway() as gateway:
        code, details = gateway.call("NodeGroupGetOptions", request)
        assert code is Code.INVALID_ARGUMENT, details
        assert "scaleDownUnreadyDuration" in details
        # The longest default that fits is still carried over, and the refusal left the group answering.
        request.defaults.scaleDownUnreadyDuration.CopyFrom(duration_pb2.Duration(seconds=MAX_DURATION_SECONDS))
        assert gateway.call("NodeGroupGetOptions", request) == (Code.OK, "")
