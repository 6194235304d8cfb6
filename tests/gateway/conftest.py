"""Fixtures for the gateway tests: a small homelab in a read model, a fake mutation port, a real server.

The homelab (`lab` fixture) is built by hand so every test can name what CA should see:

    lab/gpu      min 0, max 3, target 2  gpu-1 Ready ($0.12/h), gpu-2 booting, gpu-3 off (a spare)
                 observed template, GPU label and type, one autoscaling option override
    lab/workers  min 1, max 6, target 3  w-1 Ready (65 W, no price), w-2 failed boot, w-3 shutting down,
                 w-4 off, w-5 in maintenance; no template (no member seen Ready, none declared)
    garage/pis   min 0, max 2, target 0  pi-1 off; declared template, a second GPU type

Servers bind 127.0.0.1 port 0 and are stopped (worker threads joined) when the test ends; the root conftest.py
fails any test that leaves a thread running.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import grpc
import pytest

from actors.fsm.group import InstanceError, InstanceState, InstanceView
from actors.messages import ErrorKind, NodeIdentity
from actors.read_model import GroupSnapshot, MachineSnapshot, ReadModel, TemplateSource
from grpc_gateway.mutations import MutationRefused
from grpc_gateway.server import create_server, stop_server
from grpc_gateway.servicer import CloudProviderServicer
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas.common import Taint, TaintEffect
from schemas.group import AutoscalingOptions
from schemas.node import NodeState, PowerPolicy

# Odd on purpose: CA compares instance ids to spec.providerID byte for byte, so nothing may normalise them.
ODD_PROVIDER_ID = "k3s://w-1/Rack%202 "

_INSTANCE_STATES = {
    NodeState.READY: InstanceState.RUNNING,
    NodeState.STARTING_UP: InstanceState.CREATING,
    NodeState.BOOT_FAILED: InstanceState.CREATING,
    NodeState.SHUTTING_DOWN: InstanceState.DELETING,
}


def machine(
    namespace: str,
    name: str,
    state: NodeState,
    *,
    provider_id: str | None = None,
    hourly_price: str | None = None,
    power_watts: int | None = None,
) -> MachineSnapshot:
    """A machine whose Kubernetes Node is named like it, listed to CA the way the group policy would."""
    provider_id = provider_id if provider_id is not None else f"homelab://{namespace}/{name}"
    instance_state = _INSTANCE_STATES.get(state)
    error = InstanceError("BootFailed", "no Ready node after 10m") if state is NodeState.BOOT_FAILED else None
    instance = InstanceView(provider_id, instance_state, error) if instance_state is not None else None
    power_policy = PowerPolicy.MAINTENANCE if state is NodeState.MAINTENANCE else PowerPolicy.AUTO
    return MachineSnapshot(
        name,
        namespace,
        name,
        provider_id,
        state,
        power_policy,
        instance,
        hourly_price=Decimal(hourly_price) if hourly_price is not None else None,
        power_watts=power_watts,
    )


GPU_TEMPLATE = TemplateSource(
    labels={
        "kubernetes.io/hostname": "gpu-1",
        "infra.homecluster.dev/node": "gpu-1",
        "infra.homecluster.dev/group": "gpu",
        "accelerator": "nvidia-rtx-3090",
    },
    taints=(
        Taint(key="dedicated", value="gpu", effect=TaintEffect.NO_SCHEDULE),
        Taint(key="node.kubernetes.io/unschedulable", effect=TaintEffect.NO_SCHEDULE),
    ),
    capacity={"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "1"},
    allocatable={"cpu": "15", "memory": "60Gi", "nvidia.com/gpu": "1"},
    origin="observed",
)
PI_TEMPLATE = TemplateSource(
    labels={"kubernetes.io/arch": "arm64"},
    taints=(),
    capacity={"cpu": "4", "memory": "8Gi", "pods": "40"},
    allocatable={},
    origin="declared",
)


def lab_groups() -> tuple[GroupSnapshot, ...]:
    return (
        GroupSnapshot(
            "lab/gpu", "lab", "gpu", 0, 3, 2,
            (
                machine("lab", "gpu-1", NodeState.READY, hourly_price="0.12"),
                machine("lab", "gpu-2", NodeState.STARTING_UP),
                machine("lab", "gpu-3", NodeState.SHUTDOWN),
            ),
            autoscaling_options=AutoscalingOptions(scale_down_unneeded_time="30m"),
            template=GPU_TEMPLATE,
            gpu_label="accelerator",
            gpu_types=("nvidia-rtx-3090",),
            version=7,
        ),
        GroupSnapshot(
            "lab/workers", "lab", "workers", 1, 6, 3,
            (
                machine("lab", "w-1", NodeState.READY, provider_id=ODD_PROVIDER_ID, power_watts=65),
                machine("lab", "w-2", NodeState.BOOT_FAILED),
                machine("lab", "w-3", NodeState.SHUTTING_DOWN),
                machine("lab", "w-4", NodeState.SHUTDOWN),
                machine("lab", "w-5", NodeState.MAINTENANCE),
            ),
            version=3,
        ),
        GroupSnapshot(
            "garage/pis", "garage", "pis", 0, 2, 0,
            (machine("garage", "pi-1", NodeState.SHUTDOWN),),
            template=PI_TEMPLATE,
            gpu_types=("coral-tpu",),
            version=1,
        ),
    )  # fmt: skip


@pytest.fixture
def lab() -> ReadModel:
    read_model = ReadModel()
    for group in lab_groups():
        read_model.publish(group)
    read_model.set_inventory_applied(True)
    return read_model


class FakeMutations:
    """A `MutationPort` that records each call and, like a group actor, publishes the new target before returning.

    Set `failure` to make every call raise it instead (after recording the call).
    """

    def __init__(self, read_model: ReadModel) -> None:
        self.read_model = read_model
        self.calls: list[tuple[str, str, object]] = []
        self.failure: Exception | None = None

    def increase_size(self, group_id: str, delta: int) -> None:
        self._apply("increase_size", group_id, delta, delta)

    def delete_nodes(self, group_id: str, nodes: tuple[NodeIdentity, ...]) -> None:
        self._apply("delete_nodes", group_id, nodes, -len(nodes))

    def decrease_target_size(self, group_id: str, delta: int) -> None:
        self._apply("decrease_target_size", group_id, delta, delta)

    def _apply(self, method: str, group_id: str, argument: object, target_change: int) -> None:
        self.calls.append((method, group_id, argument))
        if self.failure is not None:
            raise self.failure
        group = self.read_model.group(group_id)
        if group is None:
            raise MutationRefused(ErrorKind.NOT_FOUND, f"no group {group_id!r}")
        self.read_model.publish(
            dataclasses.replace(group, target_size=group.target_size + target_change, version=group.version + 1)
        )


@dataclass
class Gateway:
    """A running server with a client stub, over the `lab` read model and a fake port."""

    stub: externalgrpc_grpc.CloudProviderStub
    read_model: ReadModel
    mutations: FakeMutations
    servicer: CloudProviderServicer
    port: int


GatewayFactory = Callable[..., Gateway]
"""`start_gateway(price_per_kwh=None)`: a new gateway over the same `lab` read model."""


@pytest.fixture
def start_gateway(lab: ReadModel) -> Iterator[GatewayFactory]:
    """Start plaintext gateways over `lab`; every server and channel is closed at teardown."""
    servers: list[grpc.Server] = []
    channels: list[grpc.Channel] = []

    def start(price_per_kwh: Decimal | None = None) -> Gateway:
        mutations = FakeMutations(lab)
        servicer = CloudProviderServicer(lab, mutations, price_per_kwh=price_per_kwh)
        server, port = create_server("127.0.0.1:0", servicer, tls=None)
        servers.append(server)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return Gateway(externalgrpc_grpc.CloudProviderStub(channel), lab, mutations, servicer, port)

    try:
        yield start
    finally:
        for channel in channels:
            channel.close()
        for server in servers:
            stop_server(server, grace_seconds=0)


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> Gateway:
    """The gateway over `lab` with default servicer settings (no price per kWh)."""
    return start_gateway()
