"""The demo's two readers: Cluster Autoscaler's side over real gRPC, and what `kubectl` would show over HTTP.

The I/O half of the scenario, kept apart from its pure steps. `CloudProviderClient` makes the calls CA makes to an
externalgrpc cloud provider (its loop is Refresh, NodeGroups, then NodeGroupTargetSize and NodeGroupNodes per group;
NodeGroupForNode per registered Node; IncreaseSize and DeleteNodes when it decides). `ClusterReader` lists Groups,
Node resources, Kubernetes Nodes and power Jobs. `observe` turns one round of both into an `Observation`. The
driver depends only on the two protocols, so tests can hand it stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, Protocol

import grpc
from kubernetes import client as kube_client

from homelab_autoscaler.commands.status import list_all
from homelab_autoscaler.demo.observation import (
    GroupSeen,
    InstanceSeen,
    JobSeen,
    KubeNodeSeen,
    Observation,
    job_seen,
    kube_node_seen,
)
from homelab_autoscaler.status_view import build_view, parse_group, parse_node
from kubeapi.kube_client import KubeApi
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas import GROUP_VERSION
from schemas import labels as label_names

RPC_TIMEOUT_SECONDS: Final = 5.0
"""CA's default deadline for a cloud-provider call."""
INSTANCE_STATE_PREFIX: Final = "instance"


class RefusedCall(Exception):
    """The operator refused a mutating call (the message names the call, the status code and the details)."""


# --- CA's side of the protocol -----------------------------------------------------------------------------------


class Autoscaler(Protocol):
    """What the driver needs of CA's side (a `CloudProviderClient`, or a stand-in in tests)."""

    def loop(self) -> tuple[GroupSeen, ...]: ...

    def group_for_node(self, name: str, provider_id: str) -> str: ...

    def increase_size(self, group_id: str, delta: int) -> None: ...

    def delete_nodes(self, group_id: str, nodes: Sequence[tuple[str, str]]) -> None: ...


class Cluster(Protocol):
    """What the driver needs of the API side (a `ClusterReader`, or a stand-in in tests)."""

    def read(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """(Group resources, Node resources, Kubernetes Nodes, power Jobs)."""
        ...


class CloudProviderClient:
    """The calls Cluster Autoscaler makes to an externalgrpc cloud provider, over a real gRPC channel."""

    def __init__(self, target: str, timeout: float = RPC_TIMEOUT_SECONDS) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = externalgrpc_grpc.CloudProviderStub(self._channel)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def loop(self) -> tuple[GroupSeen, ...]:
        """One CA loop's reads: Refresh, NodeGroups, then each group's target size and instances."""
        self._stub.Refresh(externalgrpc.RefreshRequest(), timeout=self._timeout)
        answer = self._stub.NodeGroups(externalgrpc.NodeGroupsRequest(), timeout=self._timeout)
        groups = []
        for group in sorted(answer.nodeGroups, key=lambda group: group.id):
            target = self._stub.NodeGroupTargetSize(
                externalgrpc.NodeGroupTargetSizeRequest(id=group.id), timeout=self._timeout
            ).targetSize
            nodes = self._stub.NodeGroupNodes(externalgrpc.NodeGroupNodesRequest(id=group.id), timeout=self._timeout)
            groups.append(
                GroupSeen(group.id, group.minSize, group.maxSize, target, tuple(_instance(i) for i in nodes.instances))
            )
        return tuple(groups)

    def group_for_node(self, name: str, provider_id: str) -> str:
        """The group id CA is told a registered Node belongs to ("" for none)."""
        node = externalgrpc.ExternalGrpcNode(name=name, providerID=provider_id)
        request = externalgrpc.NodeGroupForNodeRequest(node=node)
        return str(self._stub.NodeGroupForNode(request, timeout=self._timeout).nodeGroup.id)

    def increase_size(self, group_id: str, delta: int) -> None:
        self._mutate(
            "NodeGroupIncreaseSize",
            self._stub.NodeGroupIncreaseSize,
            externalgrpc.NodeGroupIncreaseSizeRequest(id=group_id, delta=delta),
        )

    def delete_nodes(self, group_id: str, nodes: Sequence[tuple[str, str]]) -> None:
        """DeleteNodes of `(name, providerID)` pairs; CA names a stand-in for an unregistered instance by its id."""
        request = externalgrpc.NodeGroupDeleteNodesRequest(
            id=group_id,
            nodes=[externalgrpc.ExternalGrpcNode(name=name, providerID=provider_id) for name, provider_id in nodes],
        )
        self._mutate("NodeGroupDeleteNodes", self._stub.NodeGroupDeleteNodes, request)

    def _mutate(self, name: str, call: Callable[..., Any], request: Any) -> None:
        try:
            call(request, timeout=self._timeout)
        except grpc.RpcError as error:
            raise RefusedCall(f"{name} was refused: {error.code().name}: {error.details()}") from error


def _instance(instance: Any) -> InstanceSeen:
    state = externalgrpc.InstanceStatus.InstanceState.Name(instance.status.instanceState)
    return InstanceSeen(
        id=instance.id,
        state=state.removeprefix(INSTANCE_STATE_PREFIX).lower(),
        error_code=instance.status.errorInfo.errorCode,
        error_message=instance.status.errorInfo.errorMessage,
    )


# --- what kubectl would show -------------------------------------------------------------------------------------


class ClusterReader:
    """Lists the demo namespace's Groups, Node resources and power Jobs, and every Kubernetes Node, over HTTP."""

    def __init__(self, api_client: kube_client.ApiClient, namespace: str) -> None:
        self._api = KubeApi(api_client)
        self._namespace = namespace

    def read(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """(Group resources, Node resources, Kubernetes Nodes, power Jobs)."""
        base = f"/apis/{GROUP_VERSION}/namespaces/{self._namespace}"
        groups = list_all(self._api, f"{base}/groups", {}, "Group")
        machines = list_all(self._api, f"{base}/nodes", {}, "Node")
        kube_nodes = list_all(self._api, "/api/v1/nodes", {}, "Kubernetes Node")
        selector = f"{label_names.MANAGED_BY_LABEL}={label_names.MANAGED_BY_VALUE}"
        jobs = list_all(
            self._api, f"/apis/batch/v1/namespaces/{self._namespace}/jobs", {"labelSelector": selector}, "Job"
        )
        return groups, machines, kube_nodes, jobs


def observe(ca: Autoscaler, reader: Cluster, elapsed: float, now: datetime) -> Observation:
    """One look at both sides: CA's loop over gRPC, then the API objects, then NodeGroupForNode per Node."""
    groups = ca.loop()
    raw_groups, raw_machines, raw_kube_nodes, raw_jobs = reader.read()
    kube_nodes: dict[str, KubeNodeSeen] = {}
    for raw in raw_kube_nodes:
        node = kube_node_seen(raw)
        kube_nodes[node.name] = kube_node_seen(raw, ca.group_for_node(node.name, node.provider_id))
    jobs = tuple(job for job in (job_seen(raw) for raw in raw_jobs) if job is not None)
    view = build_view([parse_group(raw) for raw in raw_groups], [parse_node(raw) for raw in raw_machines], now)
    return Observation(elapsed, now, groups, view, kube_nodes, tuple(sorted(jobs, key=_job_order)))


def _job_order(job: JobSeen) -> tuple[str, str]:
    return job.machine, job.name
