"""The CloudProvider service over a real server and channel: what CA gets for every call, and every error.

The read model is the hand-built `lab` homelab (see conftest.py); size changes go to a fake port, except in the
one test at the end that wires `ActorMutations` to a real actor runtime with a stand-in Supervisor.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
import pytest

from actors import messages
from actors import metrics as operator_metrics
from actors.base import ShellActor
from actors.fsm.group import InstanceState, InstanceView
from actors.messages import DecreaseTargetSize, DeleteNodes, ErrorKind, IncreaseSize, MutationReply, NodeIdentity
from actors.read_model import MachineSnapshot, ReadModel
from actors.runtime import ActorRuntime
from grpc_gateway.mutations import ActorMutations, MutationRefused, MutationTimedOut, MutationUnavailable
from grpc_gateway.server import create_server, stop_server
from grpc_gateway.servicer import CloudProviderServicer
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from protos import k8s_node_pb2 as kubernetes
from schemas.group import AutoscalingOptions
from schemas.node import NodeState
from tests.gateway.conftest import ODD_PROVIDER_ID, FakeMutations, Gateway, GatewayFactory, machine

FAKE_NODE_REASON = "k8s.io/cluster-autoscaler/fake-node-reason"
States = externalgrpc.InstanceStatus
Code = grpc.StatusCode


def node(name: str, provider_id: str = "", **annotations: str) -> externalgrpc.ExternalGrpcNode:
    return externalgrpc.ExternalGrpcNode(name=name, providerID=provider_id, annotations=annotations)


def stand_in(provider_id: str) -> externalgrpc.ExternalGrpcNode:
    """The node CA makes up for an instance that has not registered (name == providerID, annotated)."""
    return externalgrpc.ExternalGrpcNode(
        name=provider_id, providerID=provider_id, annotations={FAKE_NODE_REASON: "unregistered"}
    )


def rpc_error(gateway: Gateway, rpc: str, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        getattr(gateway.stub, rpc)(request, timeout=10)
    return caught.value


# ---- groups and membership ----------------------------------------------------------------------------


def test_node_groups_lists_every_group_with_its_bounds(gateway: Gateway) -> None:
    response = gateway.stub.NodeGroups(externalgrpc.NodeGroupsRequest())

    assert [(group.id, group.minSize, group.maxSize, group.debug) for group in response.nodeGroups] == [
        ("garage/pis", 0, 2, "1 machines, target 0"),
        ("lab/gpu", 0, 3, "3 machines, target 2"),
        ("lab/workers", 1, 6, "5 machines, target 3"),
    ]


@pytest.mark.parametrize(
    ("asked", "want_group"),
    [
        pytest.param(node("gpu-1", "homelab://lab/gpu-1"), "lab/gpu", id="registered-node"),
        pytest.param(node("w-1", ODD_PROVIDER_ID), "lab/workers", id="provider-id-byte-for-byte"),
        pytest.param(node("gpu-1", "k3s://gpu-1"), "lab/gpu", id="unexpected-provider-id-found-by-name"),
        pytest.param(node("gpu-1"), "", id="empty-provider-id-not-an-instance-yet"),
        pytest.param(stand_in("homelab://lab/gpu-2"), "lab/gpu", id="stand-in-for-booting-machine"),
        pytest.param(stand_in("homelab://lab/w-2"), "lab/workers", id="stand-in-for-failed-boot"),
        pytest.param(node("pi-1", "homelab://garage/pi-1"), "garage/pis", id="other-namespace"),
        pytest.param(node("control-plane", "k3s://control-plane"), "", id="control-plane-in-no-group"),
        pytest.param(node("w-5", "homelab://lab/w-5"), "", id="maintenance-machine-in-no-group"),
        pytest.param(stand_in("homelab://lab/ghost"), "", id="stand-in-of-unknown-instance"),
        pytest.param(node(""), "", id="empty-node"),
    ],
)
def test_node_group_for_node(gateway: Gateway, asked: externalgrpc.ExternalGrpcNode, want_group: str) -> None:
    response = gateway.stub.NodeGroupForNode(externalgrpc.NodeGroupForNodeRequest(node=asked))

    assert response.nodeGroup.id == want_group


def test_node_group_for_node_carries_the_real_bounds(gateway: Gateway) -> None:
    # CA freezes min/max from this answer into the group object it caches for the loop.
    response = gateway.stub.NodeGroupForNode(
        externalgrpc.NodeGroupForNodeRequest(node=node("w-1", ODD_PROVIDER_ID))
    )

    assert (response.nodeGroup.minSize, response.nodeGroup.maxSize) == (1, 6)


# ---- sizes and instances ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group_id", "want"),
    [
        pytest.param("lab/gpu", 2, id="gpu"),
        pytest.param("lab/workers", 3, id="workers"),
        pytest.param("garage/pis", 0, id="scaled-to-zero"),
    ],
)
def test_target_size_is_the_snapshots(gateway: Gateway, group_id: str, want: int) -> None:
    response = gateway.stub.NodeGroupTargetSize(externalgrpc.NodeGroupTargetSizeRequest(id=group_id))

    assert response.targetSize == want


def instances(gateway: Gateway, group_id: str) -> list[tuple[str, int, str, int]]:
    response = gateway.stub.NodeGroupNodes(externalgrpc.NodeGroupNodesRequest(id=group_id))
    return [
        (
            instance.id,
            instance.status.instanceState,
            instance.status.errorInfo.errorCode,
            instance.status.errorInfo.instanceErrorClass,
        )
        for instance in response.instances
    ]


@pytest.mark.parametrize(
    ("group_id", "want"),
    [
        pytest.param(
            "lab/gpu",
            [
                ("homelab://lab/gpu-1", States.instanceRunning, "", 0),
                ("homelab://lab/gpu-2", States.instanceCreating, "", 0),
            ],
            id="running-and-booting-spare-not-listed",
        ),
        pytest.param(
            "lab/workers",
            [
                (ODD_PROVIDER_ID, States.instanceRunning, "", 0),
                ("homelab://lab/w-2", States.instanceCreating, "BootFailed", 99),
                ("homelab://lab/w-3", States.instanceDeleting, "", 0),
            ],
            id="failed-boot-is-creating-with-error-and-maintenance-unlisted",
        ),
        pytest.param("garage/pis", [], id="all-off-lists-nothing"),
    ],
)
def test_node_group_nodes(gateway: Gateway, group_id: str, want: list[tuple[str, int, str, int]]) -> None:
    assert instances(gateway, group_id) == want


def test_failed_boot_says_what_failed(gateway: Gateway) -> None:
    response = gateway.stub.NodeGroupNodes(externalgrpc.NodeGroupNodesRequest(id="lab/workers"))

    failed = next(instance for instance in response.instances if instance.status.errorInfo.errorCode)
    assert failed.status.errorInfo.errorMessage == "no Ready node after 10m"


# ---- size changes -------------------------------------------------------------------------------------


def target(gateway: Gateway, group_id: str) -> int:
    return int(gateway.stub.NodeGroupTargetSize(externalgrpc.NodeGroupTargetSizeRequest(id=group_id)).targetSize)


def test_increase_size_changes_the_target_before_answering(gateway: Gateway) -> None:
    gateway.stub.NodeGroupIncreaseSize(externalgrpc.NodeGroupIncreaseSizeRequest(id="lab/gpu", delta=1))

    assert gateway.mutations.calls == [("increase_size", "lab/gpu", 1)]
    assert target(gateway, "lab/gpu") == 3


def test_delete_nodes_passes_real_and_stand_in_nodes(gateway: Gateway) -> None:
    request = externalgrpc.NodeGroupDeleteNodesRequest(
        id="lab/workers", nodes=[node("w-1", ODD_PROVIDER_ID), stand_in("homelab://lab/w-2")]
    )

    gateway.stub.NodeGroupDeleteNodes(request)

    assert gateway.mutations.calls == [
        (
            "delete_nodes",
            "lab/workers",
            (
                NodeIdentity(name="w-1", provider_id=ODD_PROVIDER_ID),
                NodeIdentity(name="homelab://lab/w-2", provider_id="homelab://lab/w-2"),
            ),
        )
    ]
    assert target(gateway, "lab/workers") == 1


def test_decrease_target_size(gateway: Gateway) -> None:
    gateway.stub.NodeGroupDecreaseTargetSize(
        externalgrpc.NodeGroupDecreaseTargetSizeRequest(id="lab/gpu", delta=-1)
    )

    assert gateway.mutations.calls == [("decrease_target_size", "lab/gpu", -1)]
    assert target(gateway, "lab/gpu") == 1


class HeldMutations(FakeMutations):
    """Holds each change inside the port until the test releases it, so the test sees CA's side meanwhile."""

    def __init__(self, read_model: ReadModel) -> None:
        super().__init__(read_model)
        self.entered = threading.Event()
        self.release = threading.Event()

    def _apply(self, method: str, group_id: str, argument: object, target_change: int) -> None:
        self.entered.set()
        if not self.release.wait(10):
            raise AssertionError("the test never released the change")
        super()._apply(method, group_id, argument, target_change)


@pytest.mark.parametrize(
    ("rpc", "request_message", "target_after"),
    [
        pytest.param("NodeGroupIncreaseSize", externalgrpc.NodeGroupIncreaseSizeRequest(id="lab/gpu", delta=1), 3,
                     id="IncreaseSize"),
        pytest.param("NodeGroupDeleteNodes", externalgrpc.NodeGroupDeleteNodesRequest(
            id="lab/gpu", nodes=[node("gpu-1", "homelab://lab/gpu-1")]), 1, id="DeleteNodes"),
        pytest.param("NodeGroupDecreaseTargetSize",
                     externalgrpc.NodeGroupDecreaseTargetSizeRequest(id="lab/gpu", delta=-1), 1,
                     id="DecreaseTargetSize"),
    ],
)
def test_a_size_change_is_answered_only_once_its_target_is_published(
    lab: ReadModel, rpc: str, request_message: Any, target_after: int
) -> None:
    # CA reads TargetSize right after the answer: an answer sent before the change lands would show it the old one.
    mutations = HeldMutations(lab)
    server, port = create_server("127.0.0.1:0", CloudProviderServicer(lab, mutations), tls=None)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, ThreadPoolExecutor(1) as pool:
            stub = externalgrpc_grpc.CloudProviderStub(channel)

            def target_now() -> int:
                answer = stub.NodeGroupTargetSize(externalgrpc.NodeGroupTargetSizeRequest(id="lab/gpu"), timeout=10)
                return int(answer.targetSize)

            answer = pool.submit(getattr(stub, rpc), request_message, timeout=10)
            assert mutations.entered.wait(10), "the change never reached the port"
            assert not answer.done(), "answered while the change was still under way"
            assert target_now() == 2  # meanwhile CA still reads the old target, never a half-made one
            mutations.release.set()
            answer.result(timeout=10)
            assert target_now() == target_after
    finally:
        stop_server(server, grace_seconds=0)


def test_every_size_change_is_logged_with_its_outcome(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="grpc_gateway.servicer")
    gateway.stub.NodeGroupIncreaseSize(externalgrpc.NodeGroupIncreaseSizeRequest(id="lab/gpu", delta=1))
    gateway.mutations.failure = MutationRefused(ErrorKind.RESOURCE_EXHAUSTED, "only 0 of 2 machines eligible")
    rpc_error(gateway, "NodeGroupIncreaseSize", externalgrpc.NodeGroupIncreaseSizeRequest(id="lab/gpu", delta=2))
    rpc_error(gateway, "NodeGroupDecreaseTargetSize", externalgrpc.NodeGroupDecreaseTargetSizeRequest(id="lab/gpu"))

    lines = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    assert len(lines) == 3
    assert lines[0].startswith("IncreaseSize of node group lab/gpu (delta 1) done")
    assert lines[1].startswith("IncreaseSize of node group lab/gpu (delta 2) not done: MutationRefused")
    assert "only 0 of 2 machines eligible" in lines[1]
    assert lines[2].startswith("DecreaseTargetSize of node group lab/gpu (delta 0) refused: delta must be negative")


def test_answers_follow_every_new_snapshot(gateway: Gateway) -> None:
    ask_for_node = externalgrpc.NodeGroupForNodeRequest(node=node("gpu-1", "homelab://lab/gpu-1"))
    gateway.stub.NodeGroupForNode(ask_for_node)  # answered (and kept) for the current snapshot
    instances(gateway, "lab/gpu")
    group = gateway.read_model.group("lab/gpu")
    assert group is not None
    gpu_1, gpu_2, gpu_3 = group.machines
    draining = dataclasses.replace(gpu_1, instance=InstanceView(gpu_1.provider_id, InstanceState.DELETING))
    gateway.read_model.publish(
        dataclasses.replace(group, max_size=5, machines=(draining, gpu_2, gpu_3), version=group.version + 1)
    )

    assert gateway.stub.NodeGroupForNode(ask_for_node).nodeGroup.maxSize == 5
    assert instances(gateway, "lab/gpu")[0] == ("homelab://lab/gpu-1", States.instanceDeleting, "", 0)


def test_a_removed_group_is_forgotten(gateway: Gateway) -> None:
    ask_for_node = externalgrpc.NodeGroupForNodeRequest(node=node("pi-1", "homelab://garage/pi-1"))
    assert gateway.stub.NodeGroupForNode(ask_for_node).nodeGroup.id == "garage/pis"

    gateway.read_model.remove("garage/pis")

    assert gateway.stub.NodeGroupForNode(ask_for_node).nodeGroup.id == ""
    assert [group.id for group in gateway.stub.NodeGroups(externalgrpc.NodeGroupsRequest()).nodeGroups] == [
        "lab/gpu",
        "lab/workers",
    ]
    error = rpc_error(gateway, "NodeGroupNodes", externalgrpc.NodeGroupNodesRequest(id="garage/pis"))
    assert error.code() == Code.NOT_FOUND


# ---- template node ------------------------------------------------------------------------------------


def template(gateway: Gateway, group_id: str) -> externalgrpc.NodeGroupTemplateNodeInfoResponse:
    response: externalgrpc.NodeGroupTemplateNodeInfoResponse = gateway.stub.NodeGroupTemplateNodeInfo(
        externalgrpc.NodeGroupTemplateNodeInfoRequest(id=group_id)
    )
    return response


@pytest.mark.parametrize(
    ("group_id", "want_allocatable", "want_taints"),
    [
        pytest.param(
            "lab/gpu",
            {"cpu": "15", "memory": "60Gi", "nvidia.com/gpu": "1", "pods": "110"},
            ["dedicated"],
            id="observed-snapshot-cordon-dropped",
        ),
        pytest.param("garage/pis", {"cpu": "4", "memory": "8Gi", "pods": "40"}, [], id="declared-template"),
    ],
)
def test_template_is_a_node_in_both_layouts(
    gateway: Gateway, group_id: str, want_allocatable: dict[str, str], want_taints: list[str]
) -> None:
    response = template(gateway, group_id)

    assert response.nodeBytes == response.nodeInfo != b""
    parsed = kubernetes.Node.FromString(response.nodeBytes)
    assert {name: quantity.string for name, quantity in parsed.status.allocatable.items()} == want_allocatable
    assert [taint.key for taint in parsed.spec.taints] == want_taints
    assert "gpu-1" not in parsed.metadata.labels.values()


def test_template_is_serialized_once_per_snapshot(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    from grpc_gateway import convert

    serialized: list[str] = []
    real_node_bytes = convert.node_bytes

    def counting_node_bytes(template_node: Any) -> bytes:
        serialized.append(template_node.name)
        return real_node_bytes(template_node)

    monkeypatch.setattr(convert, "node_bytes", counting_node_bytes)
    first = [template(gateway, "lab/gpu").nodeBytes for _ in range(3)]
    group = gateway.read_model.group("lab/gpu")
    assert group is not None
    bigger = dataclasses.replace(group.template, capacity={"cpu": "32"})  # type: ignore[type-var]
    gateway.read_model.publish(dataclasses.replace(group, template=bigger, version=group.version + 1))
    second = template(gateway, "lab/gpu").nodeBytes

    assert serialized == ["template-lab-gpu", "template-lab-gpu"]
    assert first[0] == first[1] == first[2] != second
    assert kubernetes.Node.FromString(second).status.capacity["cpu"].string == "32"


# ---- autoscaling options ------------------------------------------------------------------------------

CA_DEFAULTS = externalgrpc.NodeGroupAutoscalingOptions(
    scaleDownUtilizationThreshold=0.5,
    scaleDownGpuUtilizationThreshold=0.5,
    scaleDownUnneededTime={"duration": 600_000_000_000},
    scaleDownUnreadyTime={"duration": 1_200_000_000_000},
    MaxNodeProvisionTime={"duration": 900_000_000_000},
    scaleDownUnneededDuration={"seconds": 600},
    scaleDownUnreadyDuration={"seconds": 1200},
    MaxNodeProvisionDuration={"seconds": 900},
)


def options(gateway: Gateway, group_id: str) -> externalgrpc.NodeGroupAutoscalingOptionsResponse:
    response: externalgrpc.NodeGroupAutoscalingOptionsResponse = gateway.stub.NodeGroupGetOptions(
        externalgrpc.NodeGroupAutoscalingOptionsRequest(id=group_id, defaults=CA_DEFAULTS)
    )
    return response


def test_options_unset_when_the_group_overrides_nothing(gateway: Gateway) -> None:
    assert not options(gateway, "lab/workers").HasField("nodeGroupAutoscalingOptions")


def test_overridden_options_fill_every_field_in_both_layouts(gateway: Gateway) -> None:
    answered = options(gateway, "lab/gpu").nodeGroupAutoscalingOptions

    assert answered.scaleDownUnneededDuration.ToSeconds() == 30 * 60
    assert answered.scaleDownUnneededTime.duration == 30 * 60 * 1_000_000_000
    assert answered.MaxNodeProvisionDuration.ToSeconds() == 900
    assert answered.MaxNodeProvisionTime.duration == 900 * 1_000_000_000
    assert answered.scaleDownUtilizationThreshold == 0.5


def test_auto_provision_time_follows_what_the_group_has_learned(gateway: Gateway) -> None:
    group = gateway.read_model.group("lab/gpu")
    assert group is not None
    auto = AutoscalingOptions(max_node_provision_time="auto")
    gateway.read_model.publish(dataclasses.replace(group, autoscaling_options=auto, version=group.version + 1))
    before = options(gateway, "lab/gpu").nodeGroupAutoscalingOptions
    learned = gateway.read_model.group("lab/gpu")
    assert learned is not None
    gateway.read_model.publish(
        dataclasses.replace(learned, learned_provision_seconds=270.0, version=learned.version + 1)
    )
    after = options(gateway, "lab/gpu").nodeGroupAutoscalingOptions

    # CA's own 15 minutes until enough boots were seen, then the group's figure, in both layouts.
    assert before.MaxNodeProvisionDuration.ToSeconds() == 900
    assert (after.MaxNodeProvisionDuration.ToSeconds(), after.MaxNodeProvisionTime.duration) == (270, 270 * 10**9)


def test_overridden_options_start_from_the_defaults_of_each_request(gateway: Gateway) -> None:
    # CA's flags can change between restarts; an answer must never carry another request's defaults.
    stricter = externalgrpc.NodeGroupAutoscalingOptions()
    stricter.CopyFrom(CA_DEFAULTS)
    stricter.scaleDownUtilizationThreshold = 0.3

    first = options(gateway, "lab/gpu").nodeGroupAutoscalingOptions
    second = gateway.stub.NodeGroupGetOptions(
        externalgrpc.NodeGroupAutoscalingOptionsRequest(id="lab/gpu", defaults=stricter)
    ).nodeGroupAutoscalingOptions

    assert (first.scaleDownUtilizationThreshold, second.scaleDownUtilizationThreshold) == (0.5, 0.3)
    assert first.scaleDownUnneededDuration.ToSeconds() == second.scaleDownUnneededDuration.ToSeconds() == 1800


def test_overridden_options_warn_once_about_startup_time(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="grpc_gateway.servicer")
    for _ in range(3):
        options(gateway, "lab/gpu")
        options(gateway, "lab/workers")

    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "lab/gpu" in warnings[0]
    assert "max-node-startup-time to 0" in warnings[0]
    assert "#10245" in warnings[0]


# ---- pricing and GPUs ---------------------------------------------------------------------------------

NOON = datetime(2026, 5, 1, 12, tzinfo=UTC)


def stamp(hour: int, minute: int = 0) -> dict[str, int]:
    return {"seconds": int(NOON.replace(hour=hour, minute=minute).timestamp())}


@pytest.mark.parametrize(
    ("price_per_kwh", "request_fields", "want"),
    [
        pytest.param(
            None,
            {"node": node("gpu-1", "homelab://lab/gpu-1"), "startTimestamp": stamp(12), "endTimestamp": stamp(14)},
            0.24,
            id="hourly-price-over-two-hours",
        ),
        pytest.param(
            None,
            {"node": node("gpu-1", "homelab://lab/gpu-1"), "startTime": stamp(12), "endTime": stamp(12, 30)},
            0.06,
            id="legacy-timestamps",
        ),
        pytest.param(
            "0.30",
            {"node": node("w-1", ODD_PROVIDER_ID), "startTimestamp": stamp(12), "endTimestamp": stamp(22)},
            0.195,
            id="energy-price-when-configured",
        ),
    ],
)
def test_pricing_node_price(
    start_gateway: GatewayFactory, price_per_kwh: str | None, request_fields: dict[str, Any], want: float
) -> None:
    gateway = start_gateway(price_per_kwh=Decimal(price_per_kwh) if price_per_kwh is not None else None)

    response = gateway.stub.PricingNodePrice(externalgrpc.PricingNodePriceRequest(**request_fields))

    assert response.price == pytest.approx(want)


def _template_as_ca_sends_it(gateway: Gateway, group_id: str) -> externalgrpc.ExternalGrpcNode:
    """The group's template node the way CA's price expander passes it back: renamed, our annotation kept."""
    served = kubernetes.Node.FromString(template(gateway, group_id).nodeBytes)
    return externalgrpc.ExternalGrpcNode(
        name=f"template-node-for-{group_id}-4242", labels=dict(served.metadata.labels),
        annotations=dict(served.metadata.annotations),
    )


def _with_machines(gateway: Gateway, group_id: str, *machines: MachineSnapshot) -> None:
    group = gateway.read_model.group(group_id)
    assert group is not None
    gateway.read_model.publish(dataclasses.replace(group, machines=machines, version=group.version + 1))


def test_a_template_node_is_priced_as_the_cheapest_powered_off_machine_of_its_group(gateway: Gateway) -> None:
    _with_machines(
        gateway, "garage/pis",
        machine("garage", "pi-1", NodeState.SHUTDOWN, hourly_price="0.08"),
        machine("garage", "pi-2", NodeState.SHUTDOWN, hourly_price="0.05"),
        machine("garage", "pi-3", NodeState.READY, hourly_price="0.01"),  # already on: not what a scale-up buys
        machine("garage", "pi-4", NodeState.SHUTDOWN),
    )
    window = {"startTimestamp": stamp(12), "endTimestamp": stamp(14)}

    response = gateway.stub.PricingNodePrice(
        externalgrpc.PricingNodePriceRequest(node=_template_as_ca_sends_it(gateway, "garage/pis"), **window)
    )

    assert response.price == pytest.approx(0.10)


def test_a_template_node_whose_group_has_no_priced_spare_is_not_priced(gateway: Gateway) -> None:
    error = rpc_error(gateway, "PricingNodePrice", externalgrpc.PricingNodePriceRequest(
        node=_template_as_ca_sends_it(gateway, "lab/gpu"), startTimestamp=stamp(12), endTimestamp=stamp(13),
    ))

    assert error.code() == Code.UNIMPLEMENTED
    assert "no powered-off machine of node group 'lab/gpu' is priced" in error.details()


def _pod(*containers: dict[str, str], init: tuple[dict[str, str], ...] = (), **overhead: str) -> bytes:
    pod = kubernetes.Pod()
    for number, requests in enumerate(containers):
        container = pod.spec.containers.add(name=f"c{number}")
        for resource, quantity in requests.items():
            container.resources.requests[resource].string = quantity
    for number, requests in enumerate(init):
        container = pod.spec.initContainers.add(name=f"i{number}")
        for resource, quantity in requests.items():
            container.resources.requests[resource].string = quantity
    for resource, quantity in overhead.items():
        pod.spec.overhead[resource].string = quantity
    serialized: bytes = pod.SerializeToString()
    return serialized


@pytest.mark.parametrize(
    ("pod_bytes", "want"),
    [
        # The reference is gpu-1, $0.12/h, of a group whose template offers 16 CPUs and 64Gi: a pod pays its larger
        # share of that machine for the window (one hour here).
        pytest.param(_pod({"cpu": "2", "memory": "1Gi"}), 0.12 * 2 / 16, id="cpu-share"),
        pytest.param(_pod({"cpu": "1", "memory": "32Gi"}), 0.12 * 32 / 64, id="memory-share"),
        pytest.param(_pod({"cpu": "1"}, {"cpu": "500m"}), 0.12 * 1.5 / 16, id="containers-add-up"),
        pytest.param(_pod({}), 0.12 * 0.1 / 16, id="no-requests-count-the-scheduler-default"),
        pytest.param(_pod({"cpu": "1"}, init=({"cpu": "8"},)), 0.12 * 8 / 16, id="larger-init-container"),
        pytest.param(_pod({"cpu": "1"}, cpu="250m"), 0.12 * 1.25 / 16, id="overhead-added"),
    ],
)
def test_pricing_pod_price(gateway: Gateway, pod_bytes: bytes, want: float) -> None:
    response = gateway.stub.PricingPodPrice(
        externalgrpc.PricingPodPriceRequest(pod_bytes=pod_bytes, startTimestamp=stamp(12), endTimestamp=stamp(13))
    )

    assert response.price == pytest.approx(want)


def test_a_pod_is_priced_alike_whichever_group_would_run_it(gateway: Gateway) -> None:
    # CA's price expander compares options by node cost over pod cost: the pod's price must not depend on them.
    request = externalgrpc.PricingPodPriceRequest(
        pod_bytes=_pod({"cpu": "2"}), startTimestamp=stamp(12), endTimestamp=stamp(13)
    )
    before = gateway.stub.PricingPodPrice(request).price
    _with_machines(gateway, "garage/pis", machine("garage", "pi-1", NodeState.SHUTDOWN, hourly_price="0.01"))

    after = gateway.stub.PricingPodPrice(request).price

    assert before == pytest.approx(0.12 * 2 / 16)
    assert after == pytest.approx(0.01 * 2 / 4), "the cheaper machine of a known size became the reference"


def test_a_pod_is_not_priced_without_a_priced_machine_of_known_size(gateway: Gateway) -> None:
    _with_machines(gateway, "lab/gpu", machine("lab", "gpu-1", NodeState.READY))

    error = rpc_error(gateway, "PricingPodPrice", externalgrpc.PricingPodPriceRequest(
        pod_bytes=_pod({"cpu": "1"}), startTimestamp=stamp(12), endTimestamp=stamp(13),
    ))

    assert error.code() == Code.UNIMPLEMENTED
    assert "needs a priced machine" in error.details()


def test_gpu_label_is_the_first_groups_that_sets_one(gateway: Gateway) -> None:
    assert gateway.stub.GPULabel(externalgrpc.GPULabelRequest()).label == "accelerator"


def test_gpu_label_is_empty_when_no_group_sets_one(gateway: Gateway) -> None:
    for group in gateway.read_model.groups():
        gateway.read_model.publish(dataclasses.replace(group, gpu_label=None))

    assert gateway.stub.GPULabel(externalgrpc.GPULabelRequest()).label == ""


def test_available_gpu_types_are_the_union_of_the_groups(gateway: Gateway) -> None:
    response = gateway.stub.GetAvailableGPUTypes(externalgrpc.GetAvailableGPUTypesRequest())

    assert sorted(response.gpuTypes) == ["coral-tpu", "nvidia-rtx-3090"]


@pytest.mark.parametrize(
    ("rpc", "request_message"),
    [
        pytest.param("Refresh", externalgrpc.RefreshRequest(), id="refresh"),
        pytest.param("Cleanup", externalgrpc.CleanupRequest(), id="cleanup"),
    ],
)
def test_refresh_and_cleanup_answer_ok(gateway: Gateway, rpc: str, request_message: Any) -> None:
    response = getattr(gateway.stub, rpc)(request_message, timeout=10)

    assert response.ByteSize() == 0
    assert gateway.mutations.calls == []


# ---- before the first inventory -----------------------------------------------------------------------

BEFORE_INVENTORY = [
    # Every call whose answer comes from the inventory, and Refresh, whose error makes CA skip the loop.
    pytest.param("Refresh", externalgrpc.RefreshRequest(), id="refresh"),
    pytest.param("NodeGroups", externalgrpc.NodeGroupsRequest(), id="node-groups"),
    pytest.param(
        "NodeGroupForNode", externalgrpc.NodeGroupForNodeRequest(node=node("w-1-node", "homelab://lab/w-1")),
        id="group-for-node",
    ),
    pytest.param("NodeGroupTargetSize", externalgrpc.NodeGroupTargetSizeRequest(id="lab/workers"), id="target"),
    pytest.param("NodeGroupNodes", externalgrpc.NodeGroupNodesRequest(id="lab/workers"), id="nodes"),
    pytest.param(
        "NodeGroupGetOptions", externalgrpc.NodeGroupAutoscalingOptionsRequest(id="lab/workers"), id="options"
    ),
    pytest.param(
        "NodeGroupTemplateNodeInfo", externalgrpc.NodeGroupTemplateNodeInfoRequest(id="lab/gpu"), id="template"
    ),
    pytest.param(
        "PricingNodePrice",
        externalgrpc.PricingNodePriceRequest(
            node=node("w-1-node", "homelab://lab/w-1"),
            startTimestamp={"seconds": 0}, endTimestamp={"seconds": 3600},
        ),
        id="node-price",
    ),
    pytest.param("GPULabel", externalgrpc.GPULabelRequest(), id="gpu-label"),
    pytest.param("GetAvailableGPUTypes", externalgrpc.GetAvailableGPUTypesRequest(), id="gpu-types"),
]


@pytest.mark.parametrize(("rpc", "request_message"), BEFORE_INVENTORY)
def test_before_the_first_inventory_is_applied_every_inventory_call_is_unavailable(
    gateway: Gateway, rpc: str, request_message: Any
) -> None:
    # An empty NodeGroups would read to CA as "no node groups"; UNAVAILABLE makes it retry on its next loop.
    gateway.read_model.set_inventory_applied(False)

    error = rpc_error(gateway, rpc, request_message)

    assert error.code() is Code.UNAVAILABLE
    assert "has not applied its inventory" in (error.details() or "")


def test_once_the_inventory_is_applied_the_same_calls_answer(gateway: Gateway) -> None:
    gateway.read_model.set_inventory_applied(False)
    rpc_error(gateway, "NodeGroups", externalgrpc.NodeGroupsRequest())
    gateway.read_model.set_inventory_applied(True)

    response = gateway.stub.NodeGroups(externalgrpc.NodeGroupsRequest(), timeout=10)

    assert [group.id for group in response.nodeGroups] == ["garage/pis", "lab/gpu", "lab/workers"]


# ---- every error path ---------------------------------------------------------------------------------

ERROR_CASES = [
    # (RPC, request, failure of the port or None, expected code, fragment of the message)
    pytest.param(
        "NodeGroupTargetSize", externalgrpc.NodeGroupTargetSizeRequest(id="lab/nope"), None,
        Code.NOT_FOUND, "no node group 'lab/nope' (known groups: garage/pis, lab/gpu, lab/workers)",
        id="target-size-unknown-group",
    ),
    pytest.param(
        "NodeGroupNodes", externalgrpc.NodeGroupNodesRequest(id="gpu"), None,
        Code.NOT_FOUND, "no node group 'gpu'", id="nodes-unknown-group-id-without-namespace",
    ),
    pytest.param(
        "NodeGroupTemplateNodeInfo", externalgrpc.NodeGroupTemplateNodeInfoRequest(id="lab/nope"), None,
        Code.NOT_FOUND, "no node group 'lab/nope'", id="template-unknown-group",
    ),
    pytest.param(
        "NodeGroupTemplateNodeInfo", externalgrpc.NodeGroupTemplateNodeInfoRequest(id="lab/workers"), None,
        Code.UNIMPLEMENTED, "'lab/workers' has no template yet", id="template-without-source-is-unimplemented",
    ),
    pytest.param(
        "NodeGroupGetOptions", externalgrpc.NodeGroupAutoscalingOptionsRequest(id="lab/nope"), None,
        Code.NOT_FOUND, "no node group 'lab/nope'", id="options-unknown-group",
    ),
    pytest.param(
        "NodeGroupIncreaseSize", externalgrpc.NodeGroupIncreaseSizeRequest(id="lab/gpu", delta=0), None,
        Code.INVALID_ARGUMENT, "delta must be positive to increase node group 'lab/gpu', got 0",
        id="increase-by-zero",
    ),
    pytest.param(
        "NodeGroupIncreaseSize", externalgrpc.NodeGroupIncreaseSizeRequest(id="lab/gpu", delta=-2), None,
        Code.INVALID_ARGUMENT, "got -2", id="increase-by-negative",
    ),
    pytest.param(
        "NodeGroupIncreaseSize", externalgrpc.NodeGroupIncreaseSizeRequest(id="lab/nope", delta=1), None,
        Code.NOT_FOUND, "no group 'lab/nope'", id="increase-unknown-group-refused-by-port",
    ),
    pytest.param(
        "NodeGroupIncreaseSize", externalgrpc.NodeGroupIncreaseSizeRequest(id="lab/gpu", delta=3),
        MutationRefused(ErrorKind.RESOURCE_EXHAUSTED, "lab/gpu: only 1 of 3 machines eligible (1 quarantined)"),
        Code.RESOURCE_EXHAUSTED, "only 1 of 3 machines eligible", id="increase-not-enough-machines",
    ),
    pytest.param(
        "NodeGroupIncreaseSize", externalgrpc.NodeGroupIncreaseSizeRequest(id="lab/gpu", delta=1),
        MutationTimedOut("no answer from the group within 4 s"),
        Code.DEADLINE_EXCEEDED, "no answer from the group within 4 s", id="increase-timed-out",
    ),
    pytest.param(
        "NodeGroupIncreaseSize", externalgrpc.NodeGroupIncreaseSizeRequest(id="lab/gpu", delta=1),
        MutationUnavailable("this replica is not the leader (yet)"),
        Code.UNAVAILABLE, "not the leader", id="increase-not-leader",
    ),
    pytest.param(
        "NodeGroupDeleteNodes", externalgrpc.NodeGroupDeleteNodesRequest(id="lab/gpu"), None,
        Code.INVALID_ARGUMENT, "no nodes given to delete from node group 'lab/gpu'", id="delete-nothing",
    ),
    pytest.param(
        "NodeGroupDeleteNodes",
        externalgrpc.NodeGroupDeleteNodesRequest(id="lab/gpu", nodes=[node("w-1", ODD_PROVIDER_ID)]),
        MutationRefused(ErrorKind.INVALID_ARGUMENT, "node w-1 belongs to lab/workers, not lab/gpu"),
        Code.INVALID_ARGUMENT, "belongs to lab/workers", id="delete-node-of-another-group",
    ),
    pytest.param(
        "NodeGroupDeleteNodes",
        externalgrpc.NodeGroupDeleteNodesRequest(id="lab/gpu", nodes=[node("gpu-1", "homelab://lab/gpu-1")]),
        MutationRefused(ErrorKind.FAILED_PRECONDITION, "gpu-1 is kept on by powerPolicy On"),
        Code.FAILED_PRECONDITION, "kept on by powerPolicy On", id="delete-machine-kept-on",
    ),
    pytest.param(
        "NodeGroupDecreaseTargetSize", externalgrpc.NodeGroupDecreaseTargetSizeRequest(id="lab/gpu", delta=0),
        None, Code.INVALID_ARGUMENT, "delta must be negative", id="decrease-by-zero",
    ),
    pytest.param(
        "NodeGroupDecreaseTargetSize", externalgrpc.NodeGroupDecreaseTargetSizeRequest(id="lab/gpu", delta=1),
        None, Code.INVALID_ARGUMENT, "delta must be negative", id="decrease-by-positive",
    ),
    pytest.param(
        "NodeGroupDecreaseTargetSize", externalgrpc.NodeGroupDecreaseTargetSizeRequest(id="lab/gpu", delta=-1),
        MutationRefused(ErrorKind.FAILED_PRECONDITION, "cannot cancel 1 boot: 0 unregistered boots"),
        Code.FAILED_PRECONDITION, "0 unregistered boots", id="decrease-with-nothing-to-cancel",
    ),
    pytest.param(
        "PricingNodePrice",
        externalgrpc.PricingNodePriceRequest(
            node=node("control-plane", "k3s://cp"), startTimestamp=stamp(12), endTimestamp=stamp(13)
        ),
        None, Code.UNIMPLEMENTED, "is no machine of ours", id="price-of-unknown-node",
    ),
    pytest.param(
        "PricingNodePrice",
        externalgrpc.PricingNodePriceRequest(
            node=node("w-1", ODD_PROVIDER_ID), startTimestamp=stamp(12), endTimestamp=stamp(13)
        ),
        None, Code.UNIMPLEMENTED, "no hourly price, and no price per kWh is configured",
        id="price-of-machine-with-only-watts-without-kwh-price",
    ),
    pytest.param(
        "PricingNodePrice",
        externalgrpc.PricingNodePriceRequest(
            node=node("gpu-1", "homelab://lab/gpu-1"), startTimestamp=stamp(13), endTimestamp=stamp(12)
        ),
        None, Code.INVALID_ARGUMENT, "is before start", id="price-end-before-start",
    ),
    pytest.param(
        "PricingNodePrice", externalgrpc.PricingNodePriceRequest(node=node("gpu-1", "homelab://lab/gpu-1")),
        None, Code.INVALID_ARGUMENT, "needs both a start and an end", id="price-without-window",
    ),
    pytest.param(
        "PricingPodPrice", externalgrpc.PricingPodPriceRequest(pod_bytes=b"\n\x00"),
        None, Code.INVALID_ARGUMENT, "needs both a start and an end", id="pod-price-without-window",
    ),
    pytest.param(
        "PricingPodPrice",
        externalgrpc.PricingPodPriceRequest(pod_bytes=b"\x12\xff", startTimestamp=stamp(12), endTimestamp=stamp(13)),
        None, Code.INVALID_ARGUMENT, "is not a serialized v1.Pod", id="pod-price-of-garbage",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("rpc", "request_message", "port_failure", "want_code", "want_fragment"), ERROR_CASES)
def test_error_paths(
    gateway: Gateway,
    rpc: str,
    request_message: Any,
    port_failure: Exception | None,
    want_code: grpc.StatusCode,
    want_fragment: str,
) -> None:
    gateway.mutations.failure = port_failure

    error = rpc_error(gateway, rpc, request_message)

    assert error.code() == want_code
    assert want_fragment in error.details()


def test_a_refused_change_leaves_the_target_alone(gateway: Gateway) -> None:
    gateway.mutations.failure = MutationRefused(ErrorKind.RESOURCE_EXHAUSTED, "not enough machines")

    rpc_error(gateway, "NodeGroupIncreaseSize", externalgrpc.NodeGroupIncreaseSizeRequest(id="lab/gpu", delta=3))

    assert target(gateway, "lab/gpu") == 2


def test_a_bug_answers_internal_naming_the_exception_and_logs_the_traceback(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(group_id: str) -> None:
        raise KeyError("the bug")

    monkeypatch.setattr(gateway.read_model, "group", broken)

    error = rpc_error(gateway, "NodeGroupTargetSize", externalgrpc.NodeGroupTargetSizeRequest(id="lab/gpu"))

    assert error.code() == Code.INTERNAL
    assert "KeyError" in error.details()
    assert "the bug" not in error.details()  # internals stay in the log
    logged = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert "NodeGroupTargetSize failed" in logged[0].getMessage()


# ---- metrics ------------------------------------------------------------------------------------------


def calls_counted(method: str, code: str) -> float:
    value = operator_metrics.REGISTRY.get_sample_value(
        "homelab_autoscaler_grpc_requests_total", {"method": method, "code": code}
    )
    return value or 0.0


def latencies_observed(method: str) -> float:
    value = operator_metrics.REGISTRY.get_sample_value(
        "homelab_autoscaler_grpc_request_seconds_count", {"method": method}
    )
    return value or 0.0


def test_every_call_is_counted_by_method_and_code_and_timed(gateway: Gateway) -> None:
    before = (
        calls_counted("NodeGroupTargetSize", "OK"),
        calls_counted("NodeGroupTargetSize", "NOT_FOUND"),
        latencies_observed("NodeGroupTargetSize"),
    )

    target(gateway, "lab/gpu")
    target(gateway, "lab/gpu")
    rpc_error(gateway, "NodeGroupTargetSize", externalgrpc.NodeGroupTargetSizeRequest(id="lab/nope"))

    after = (
        calls_counted("NodeGroupTargetSize", "OK"),
        calls_counted("NodeGroupTargetSize", "NOT_FOUND"),
        latencies_observed("NodeGroupTargetSize"),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [2, 1, 3]


# ---- the ask path end to end: gRPC → ActorMutations → runtime → a stand-in Supervisor → reply ----------


class StandInSupervisor(ShellActor):
    """Plays Supervisor and group at once: refuses increases beyond the machines it has, else publishes the new
    target and only then replies, as the real group actor must."""

    actor_kind = "test-supervisor"

    def __init__(self) -> None:
        super().__init__()
        self.read_model: ReadModel | None = None

    def receiveMsg_ReadModel(self, message: ReadModel, sender: Any) -> None:
        self.read_model = message

    def receiveMsg_IncreaseSize(self, message: IncreaseSize, sender: Any) -> None:
        self._change(message.request_id, message.group_id, message.delta, sender)

    def receiveMsg_DecreaseTargetSize(self, message: DecreaseTargetSize, sender: Any) -> None:
        self._change(message.request_id, message.group_id, message.delta, sender)

    def receiveMsg_DeleteNodes(self, message: DeleteNodes, sender: Any) -> None:
        self._change(message.request_id, message.group_id, -len(message.nodes), sender)

    def _change(self, request_id: str, group_id: str, delta: int, sender: Any) -> None:
        assert self.read_model is not None
        group = self.read_model.group(group_id)
        if group is None:
            unknown = messages.MutationRefusal(ErrorKind.NOT_FOUND, f"no group {group_id}")
            self.send(sender, MutationReply(request_id, unknown))
            return
        new_target = group.target_size + delta
        if new_target > group.max_size:
            refusal = messages.MutationRefusal(
                ErrorKind.RESOURCE_EXHAUSTED, f"{group_id}: target {new_target} would exceed maxSize {group.max_size}"
            )
            self.send(sender, MutationReply(request_id, refusal))
            return
        self.read_model.publish(dataclasses.replace(group, target_size=new_target, version=group.version + 1))
        self.send(sender, MutationReply(request_id))


@pytest.fixture
def runtime() -> Iterator[ActorRuntime]:
    actor_runtime = ActorRuntime(tick_interval=0.01, name="gateway-test")
    actor_runtime.start()
    try:
        yield actor_runtime
    finally:
        actor_runtime.stop(timeout=10.0)


def test_size_changes_through_a_real_actor_runtime(lab: ReadModel, runtime: ActorRuntime) -> None:
    supervisor = runtime.create_actor(StandInSupervisor).result(timeout=10)
    runtime.tell(supervisor, lab)
    servicer = CloudProviderServicer(lab, ActorMutations(runtime, lambda: supervisor, timeout_seconds=4.0))
    server, port = create_server("127.0.0.1:0", servicer, tls=None)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = externalgrpc_grpc.CloudProviderStub(channel)
            stub.NodeGroupIncreaseSize(externalgrpc.NodeGroupIncreaseSizeRequest(id="lab/gpu", delta=1), timeout=10)
            after_increase = stub.NodeGroupTargetSize(externalgrpc.NodeGroupTargetSizeRequest(id="lab/gpu"))
            with pytest.raises(grpc.RpcError) as refused:
                stub.NodeGroupIncreaseSize(
                    externalgrpc.NodeGroupIncreaseSizeRequest(id="lab/gpu", delta=1), timeout=10
                )
            stub.NodeGroupDeleteNodes(
                externalgrpc.NodeGroupDeleteNodesRequest(id="lab/gpu", nodes=[stand_in("homelab://lab/gpu-2")]),
                timeout=10,
            )
            stub.NodeGroupDecreaseTargetSize(
                externalgrpc.NodeGroupDecreaseTargetSizeRequest(id="lab/gpu", delta=-1), timeout=10
            )
            final = stub.NodeGroupTargetSize(externalgrpc.NodeGroupTargetSizeRequest(id="lab/gpu"))
    finally:
        stop_server(server, grace_seconds=0)

    assert after_increase.targetSize == 3
    assert refused.value.code() == Code.RESOURCE_EXHAUSTED
    assert "would exceed maxSize 3" in refused.value.details()
    assert final.targetSize == 1
