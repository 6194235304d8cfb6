"""Benchmark of the gRPC gateway's hot calls against an empty-RPC floor; prints figures, asserts nothing.

For 1000 and 5000 machines (4 groups, the read model filled directly, no actors): p50/p99 of NodeGroupForNode
and NodeGroupGetOptions, and the wall time of one Cluster Autoscaler loop (Refresh, NodeGroups, ForNode and
GetOptions per node, TargetSize and Nodes per group, TemplateNodeInfo per group), each beside a floor measured on
the same server in the same run, and their ratio. Floors: `Refresh` (an empty call through the same servicer,
metrics included) and the standard health `Check` (an empty call outside our servicer). The loop's floor is the
same number of sequential Refresh calls. The budget (docs/architecture/overview.md, "Performance budget"): hot
calls within 1.2x of the floor at 5000 machines.

The server runs in this process and the client in a child process (as CA is a separate process), so client-side
protobuf and gRPC work does not share this process's GIL with the server. Calls are sequential over one channel,
like CA's loop; measured blocks and floor blocks alternate so that drift hits both alike.

Run from the repository root: `.venv/bin/python -m bench.gateway` (or `.venv/bin/python bench/gateway.py`).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as a file, this folder would come first on sys.path; the packages live one level up.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import json
import logging
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from actors.fsm.group import TARGET_STATES, InstanceState, InstanceView
from actors.read_model import GroupSnapshot, MachineSnapshot, ReadModel, TemplateSource
from bench.figures import percentile
from grpc_gateway.server import create_server, stop_server
from grpc_gateway.servicer import CloudProviderServicer
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas.group import AutoscalingOptions
from schemas.node import NodeState, PowerPolicy

SIZES = (1000, 5000)
GROUPS = 4
ROUNDS = 5
CALLS_PER_BLOCK = 800
WARM_UP_CALLS = 300
UNMANAGED_NODES = 13  # control plane and hosts that are in no group

STATES = [NodeState.READY] * 6 + [NodeState.SHUTDOWN] * 3 + [NodeState.STARTING_UP]
INSTANCE_STATES = {NodeState.READY: InstanceState.RUNNING, NodeState.STARTING_UP: InstanceState.CREATING}
CA_DEFAULTS = externalgrpc.NodeGroupAutoscalingOptions(
    scaleDownUtilizationThreshold=0.5,
    scaleDownGpuUtilizationThreshold=0.5,
    scaleDownUnneededDuration={"seconds": 600},
    scaleDownUnreadyDuration={"seconds": 1200},
    MaxNodeProvisionDuration={"seconds": 900},
)


class _NoMutations:
    """The benchmark only reads; a size change would be a bug in the benchmark."""

    def increase_size(self, group_id: str, delta: int) -> None:
        raise AssertionError("the benchmark makes no size changes")

    def delete_nodes(self, group_id: str, nodes: Any) -> None:
        raise AssertionError("the benchmark makes no size changes")

    def decrease_target_size(self, group_id: str, delta: int) -> None:
        raise AssertionError("the benchmark makes no size changes")


def fleet(machine_count: int) -> tuple[GroupSnapshot, ...]:
    per_group = machine_count // GROUPS
    groups = []
    for position in range(GROUPS):
        name = f"group-{position}"
        machines = []
        for index in range(per_group):
            state = STATES[index % len(STATES)]
            provider_id = f"homelab://lab/{name}-{index:05d}"
            instance_state = INSTANCE_STATES.get(state)
            instance = InstanceView(provider_id, instance_state) if instance_state is not None else None
            node_name = f"{name}-{index:05d}"
            machines.append(
                MachineSnapshot(node_name, "lab", node_name, provider_id, state, PowerPolicy.AUTO, instance,
                                hourly_price=Decimal("0.05"))
            )  # fmt: skip
        groups.append(
            GroupSnapshot(
                f"lab/{name}", "lab", name, 0, per_group,
                sum(1 for machine in machines if machine.state in TARGET_STATES),
                tuple(machines),
                # Half the groups override an option, so GetOptions is timed on both of its paths.
                autoscaling_options=AutoscalingOptions(scale_down_unneeded_time="20m") if position % 2 else None,
                template=TemplateSource(
                    labels={"infra.homecluster.dev/group": name}, taints=(),
                    capacity={"cpu": "8", "memory": "32Gi"}, allocatable={}, origin="declared",
                ),
                version=1,
            )
        )  # fmt: skip
    return tuple(groups)


def nodes_of(groups: tuple[GroupSnapshot, ...]) -> list[tuple[str, str]]:
    """(name, providerID) of every Kubernetes Node CA would know: powered-on machines and unmanaged hosts."""
    known = [(f"control-{index}", f"k3s://control-{index}") for index in range(UNMANAGED_NODES)]
    for group in groups:
        known.extend(
            (machine.kubernetes_node_name, machine.provider_id)
            for machine in group.machines
            if machine.state is not NodeState.SHUTDOWN
        )
    return known


# --- the client side (child process) -------------------------------------------------------------------


def _timed(call: Callable[[], object], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples




def _summary(samples: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(samples), "p99": percentile(samples, 0.99), "calls": len(samples)}


def run_client(port: int, machine_count: int) -> dict[str, Any]:
    groups = fleet(machine_count)
    nodes = nodes_of(groups)
    group_of = {provider_id: group.id for group in groups for machine in group.machines
                for provider_id in (machine.provider_id,)}  # fmt: skip
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = externalgrpc_grpc.CloudProviderStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        for_node_requests = [
            externalgrpc.NodeGroupForNodeRequest(node=externalgrpc.ExternalGrpcNode(name=name, providerID=provider_id))
            for name, provider_id in nodes
        ]
        options_requests = [
            externalgrpc.NodeGroupAutoscalingOptionsRequest(id=group.id, defaults=CA_DEFAULTS) for group in groups
        ]
        refresh = externalgrpc.RefreshRequest()
        check = health_pb2.HealthCheckRequest()
        cursor = {"for_node": 0, "options": 0}

        def next_for_node() -> object:
            cursor["for_node"] += 1
            return stub.NodeGroupForNode(for_node_requests[cursor["for_node"] % len(for_node_requests)])

        def next_options() -> object:
            cursor["options"] += 1
            return stub.NodeGroupGetOptions(options_requests[cursor["options"] % len(options_requests)])

        calls: dict[str, Callable[[], object]] = {
            "floor_refresh": lambda: stub.Refresh(refresh),
            "floor_health_check": lambda: health.Check(check),
            "NodeGroupForNode": next_for_node,
            "NodeGroupGetOptions": next_options,
        }
        for call in calls.values():
            _timed(call, WARM_UP_CALLS)
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(ROUNDS):
            for name, call in calls.items():
                samples[name].extend(_timed(call, CALLS_PER_BLOCK))

        def one_loop() -> int:
            calls_made = 2
            stub.Refresh(refresh)
            stub.NodeGroups(externalgrpc.NodeGroupsRequest())
            for request in for_node_requests:
                answer = stub.NodeGroupForNode(request).nodeGroup
                calls_made += 1
                if answer.id:
                    assert answer.id == group_of[request.node.providerID]
                    stub.NodeGroupGetOptions(
                        externalgrpc.NodeGroupAutoscalingOptionsRequest(id=answer.id, defaults=CA_DEFAULTS)
                    )
                    calls_made += 1
            for group in groups:
                stub.NodeGroupTargetSize(externalgrpc.NodeGroupTargetSizeRequest(id=group.id))
                stub.NodeGroupNodes(externalgrpc.NodeGroupNodesRequest(id=group.id))
                calls_made += 2
            for group in groups:
                stub.NodeGroupTemplateNodeInfo(externalgrpc.NodeGroupTemplateNodeInfoRequest(id=group.id))
                calls_made += 1
            return calls_made

        one_loop()  # warm-up: first templates are serialized here
        loop_walls, floor_walls = [], []
        for _ in range(3):
            started = time.perf_counter()
            calls_made = one_loop()
            loop_walls.append(time.perf_counter() - started)
            started = time.perf_counter()
            for _ in range(calls_made):
                stub.Refresh(refresh)
            floor_walls.append(time.perf_counter() - started)
    return {
        "machines": machine_count,
        "nodes": len(nodes),
        "calls": {name: _summary(values) for name, values in samples.items()},
        "loop": {"calls": calls_made, "wall": min(loop_walls), "floor_wall": min(floor_walls)},
    }


# --- the server side (this process) and the report -----------------------------------------------------


def measure(machine_count: int) -> dict[str, Any]:
    read_model = ReadModel()
    for group in fleet(machine_count):
        read_model.publish(group)
    read_model.set_inventory_applied(True)
    server, port = create_server("127.0.0.1:0", CloudProviderServicer(read_model, _NoMutations()), tls=None)
    try:
        root = Path(__file__).resolve().parent.parent
        child = subprocess.run(
            [sys.executable, "-m", "bench.gateway", "--client", str(port), str(machine_count)],
            cwd=root,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        stop_server(server, grace_seconds=0)
    if child.returncode != 0:
        raise RuntimeError(f"the benchmark client failed:\n{child.stderr}")
    result: dict[str, Any] = json.loads(child.stdout)
    return result


def report(result: dict[str, Any]) -> None:
    calls = result["calls"]
    floor = calls["floor_refresh"]
    health = calls["floor_health_check"]
    print(f"\n== {result['machines']} machines in {GROUPS} groups ({result['nodes']} Kubernetes Nodes known to CA)")
    print(f"{'call':<22}{'p50 ms':>9}{'p99 ms':>9}{'p50/floor':>11}{'p99/floor':>11}{'p50/health':>12}")
    for name in ("floor_refresh", "floor_health_check", "NodeGroupForNode", "NodeGroupGetOptions"):
        measured = calls[name]
        print(
            f"{name:<22}{measured['p50'] * 1000:>9.3f}{measured['p99'] * 1000:>9.3f}"
            f"{measured['p50'] / floor['p50']:>11.2f}{measured['p99'] / floor['p99']:>11.2f}"
            f"{measured['p50'] / health['p50']:>12.2f}"
        )
    loop = result["loop"]
    print(
        f"one CA loop: {loop['calls']} calls in {loop['wall'] * 1000:.0f} ms; the same number of Refresh calls: "
        f"{loop['floor_wall'] * 1000:.0f} ms; ratio {loop['wall'] / loop['floor_wall']:.2f}"
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--client":
        print(json.dumps(run_client(int(sys.argv[2]), int(sys.argv[3]))))
        return
    # The servicer warns once per group that overrides options; that line is for operators, not for this report.
    logging.getLogger("grpc_gateway").setLevel(logging.ERROR)
    print(
        f"gateway benchmark: python {platform.python_version()}, grpcio {grpc.__version__}, {os.cpu_count()} CPUs; "
        "server in this process, client in a child process, sequential calls over one channel"
    )
    for machine_count in SIZES:
        report(measure(machine_count))


if __name__ == "__main__":
    main()
