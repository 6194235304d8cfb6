"""One Cluster Autoscaler loop replayed against 1000 machines in 4 groups: no call fails, and the answers agree.

The call pattern is CA's (1.29 … 1.36) for one loop: Refresh, NodeGroups, then NodeGroupForNode and GetOptions for
every node it knows (registered nodes, control plane and unmanaged hosts, machines in maintenance, and the
stand-ins it makes up for instances that have not registered), then TargetSize and Nodes per group, then the
template per group. Every answer is checked against the others the way CA relies on them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import grpc
import pytest

from actors.fsm.group import TARGET_STATES, InstanceError, InstanceState, InstanceView
from actors.read_model import GroupSnapshot, MachineSnapshot, ReadModel, TemplateSource
from grpc_gateway.server import create_server, stop_server
from grpc_gateway.servicer import CloudProviderServicer
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from protos import k8s_node_pb2 as kubernetes
from schemas.group import AutoscalingOptions
from schemas.node import NodeState, PowerPolicy
from tests.gateway.conftest import FakeMutations

GROUPS = ("lab/a", "lab/b", "garage/c", "garage/d")
MACHINES_PER_GROUP = 250
UNMANAGED_NODES = ("control-plane-1", "control-plane-2", "control-plane-3", *(f"nas-{i}" for i in range(10)))
FAKE_NODE_REASON = "k8s.io/cluster-autoscaler/fake-node-reason"
RUNNING = externalgrpc.InstanceStatus.instanceRunning
CREATING = externalgrpc.InstanceStatus.instanceCreating

# One state per machine, cycling: half running, the rest spread over every other state CA can meet.
STATE_CYCLE = (
    [NodeState.READY] * 10
    + [NodeState.STARTING_UP] * 2
    + [NodeState.SHUTDOWN] * 5
    + [NodeState.SHUTTING_DOWN, NodeState.BOOT_FAILED, NodeState.MAINTENANCE]
)
INSTANCE_STATES = {
    NodeState.READY: InstanceState.RUNNING,
    NodeState.STARTING_UP: InstanceState.CREATING,
    NodeState.BOOT_FAILED: InstanceState.CREATING,
    NodeState.SHUTTING_DOWN: InstanceState.DELETING,
}
REGISTERED_STATES = {NodeState.READY, NodeState.SHUTTING_DOWN, NodeState.MAINTENANCE}
UNREGISTERED_LISTED_STATES = {NodeState.STARTING_UP, NodeState.BOOT_FAILED}

CA_DEFAULTS = externalgrpc.NodeGroupAutoscalingOptions(
    scaleDownUtilizationThreshold=0.5,
    scaleDownGpuUtilizationThreshold=0.5,
    scaleDownUnneededDuration={"seconds": 600},
    scaleDownUnreadyDuration={"seconds": 1200},
    MaxNodeProvisionDuration={"seconds": 900},
)


def fleet_machine(namespace: str, group_name: str, index: int) -> MachineSnapshot:
    state = STATE_CYCLE[index % len(STATE_CYCLE)]
    name = f"{group_name}-{index:03d}"
    provider_id = f"homelab://{namespace}/{name}"
    instance_state = INSTANCE_STATES.get(state)
    error = InstanceError("BootFailed", "no Ready node in time") if state is NodeState.BOOT_FAILED else None
    return MachineSnapshot(
        name,
        namespace,
        name,
        provider_id,
        state,
        PowerPolicy.MAINTENANCE if state is NodeState.MAINTENANCE else PowerPolicy.AUTO,
        InstanceView(provider_id, instance_state, error) if instance_state is not None else None,
        hourly_price=Decimal("0.05"),
    )


def fleet() -> tuple[GroupSnapshot, ...]:
    groups = []
    for position, group_id in enumerate(GROUPS):
        namespace, name = group_id.split("/")
        machines = tuple(fleet_machine(namespace, name, index) for index in range(MACHINES_PER_GROUP))
        groups.append(
            GroupSnapshot(
                group_id,
                namespace,
                name,
                position,
                MACHINES_PER_GROUP,
                sum(1 for machine in machines if machine.state in TARGET_STATES),
                machines,
                autoscaling_options=AutoscalingOptions(scale_down_unneeded_time="20m") if position % 2 else None,
                template=TemplateSource(
                    labels={"kubernetes.io/hostname": f"{name}-000", "infra.homecluster.dev/group": name},
                    taints=(),
                    capacity={"cpu": "8", "memory": "32Gi"},
                    allocatable={"cpu": "7500m", "memory": "30Gi"},
                    origin="observed",
                ),
                version=1,
            )
        )
    return tuple(groups)


@pytest.fixture
def ca_client() -> Iterator[tuple[externalgrpc_grpc.CloudProviderStub, tuple[GroupSnapshot, ...]]]:
    groups = fleet()
    read_model = ReadModel()
    for group in groups:
        read_model.publish(group)
    read_model.set_inventory_applied(True)
    server, port = create_server(
        "127.0.0.1:0", CloudProviderServicer(read_model, FakeMutations(read_model)), tls=None
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield externalgrpc_grpc.CloudProviderStub(channel), groups
    finally:
        stop_server(server, grace_seconds=0)


def nodes_ca_knows(groups: tuple[GroupSnapshot, ...]) -> list[tuple[externalgrpc.ExternalGrpcNode, str]]:
    """Every node CA asks NodeGroupForNode about, with the group it must be answered with ("" for none)."""
    known = [(externalgrpc.ExternalGrpcNode(name=name, providerID=f"k3s://{name}"), "") for name in UNMANAGED_NODES]
    for group in groups:
        for machine in group.machines:
            want = "" if machine.state is NodeState.MAINTENANCE else group.id
            if machine.state in REGISTERED_STATES:
                registered = externalgrpc.ExternalGrpcNode(
                    name=machine.kubernetes_node_name, providerID=machine.provider_id
                )
                known.append((registered, want))
            elif machine.state in UNREGISTERED_LISTED_STATES:
                stand_in = externalgrpc.ExternalGrpcNode(
                    name=machine.provider_id,
                    providerID=machine.provider_id,
                    annotations={FAKE_NODE_REASON: "unregistered"},
                )
                known.append((stand_in, want))
    return known


def test_one_ca_loop_over_1000_machines(
    ca_client: tuple[externalgrpc_grpc.CloudProviderStub, tuple[GroupSnapshot, ...]],
) -> None:
    stub, groups = ca_client
    machines = {machine.provider_id: (group, machine) for group in groups for machine in group.machines}
    assert len(machines) == 1000

    # 1. start of the loop
    stub.Refresh(externalgrpc.RefreshRequest())
    listed = {group.id: group for group in stub.NodeGroups(externalgrpc.NodeGroupsRequest()).nodeGroups}
    assert sorted(listed) == sorted(GROUPS)

    # 2. every node CA knows: its group, and that group's options
    options_set: Counter[str] = Counter()
    answered_groups: Counter[str] = Counter()
    for asked, want_group in nodes_ca_knows(groups):
        answer = stub.NodeGroupForNode(externalgrpc.NodeGroupForNodeRequest(node=asked)).nodeGroup
        assert answer.id == want_group, asked.name
        answered_groups[answer.id] += 1
        if answer.id:
            assert (answer.minSize, answer.maxSize) == (listed[answer.id].minSize, listed[answer.id].maxSize)
            options = stub.NodeGroupGetOptions(
                externalgrpc.NodeGroupAutoscalingOptionsRequest(id=answer.id, defaults=CA_DEFAULTS)
            )
            if options.HasField("nodeGroupAutoscalingOptions"):
                options_set[answer.id] += 1
                assert options.nodeGroupAutoscalingOptions.MaxNodeProvisionDuration.ToSeconds() == 900
    assert answered_groups[""] == len(UNMANAGED_NODES) + 4 * (MACHINES_PER_GROUP // len(STATE_CYCLE))
    assert set(options_set) == {"lab/b", "garage/d"}

    # 3. sizes and instances per group
    for group in groups:
        target = stub.NodeGroupTargetSize(externalgrpc.NodeGroupTargetSizeRequest(id=group.id)).targetSize
        instances = stub.NodeGroupNodes(externalgrpc.NodeGroupNodesRequest(id=group.id)).instances
        states = Counter(instance.status.instanceState for instance in instances)
        # Every unit of target size is an instance CA can see (booting ones as creating).
        assert target == states[RUNNING] + states[CREATING]
        for instance in instances:
            owner, machine = machines[instance.id]
            assert owner.id == group.id
            assert machine.state is not NodeState.SHUTDOWN  # powered-off spares are never listed
            assert bool(instance.status.errorInfo.errorCode) == (machine.state is NodeState.BOOT_FAILED)

    # 4. a template per group (scale from zero)
    for group in groups:
        response = stub.NodeGroupTemplateNodeInfo(externalgrpc.NodeGroupTemplateNodeInfoRequest(id=group.id))
        assert response.nodeBytes == response.nodeInfo
        template = kubernetes.Node.FromString(response.nodeBytes)
        assert template.status.allocatable["pods"].string == "110"
        assert template.metadata.labels["infra.homecluster.dev/group"] == group.name
