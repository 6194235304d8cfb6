"""Fills an API server with a homelab: our CRDs, a namespace, Groups and Node CRs, plus matching machines.

The simulator plays machines but the operator only knows machines that have Node CRs, so the two must be
created from one plan: `plan_homelab` (pure) decides every object and the `SimulatedMachine` that goes
with each Node CR; `seed_homelab` writes the plan. Against our fake API the bulk writes go straight into
its store (5000 machines in about a second); against any other server they go over HTTP in parallel.
CRDs always go over HTTP, because serving a new resource is the API server's reaction to that request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from kubernetes import client as kube_client

from kubeapi.kube_client import KubeApi, KubeError, KubeNotFound
from schemas import API_GROUP, API_VERSION, GROUP_VERSION
from schemas import labels as label_names
from schemas.common import TaintEffect, Toleration, TolerationOperator
from schemas.crds import render_crds
from schemas.group import GroupSpec, NodeTemplate
from schemas.node import EnvVar, JobTemplate, NodeSpec, Pricing, default_provider_id
from sim.fakeapi import ApiError, FakeApiServer, Store
from sim.machines.model import ProviderIdMode, SimulatedMachine

logger = logging.getLogger(__name__)

CONTROL_PLANE_ROLE: Final = "node-role.kubernetes.io/control-plane"

PLACEHOLDER_IMAGE: Final = "busybox:1.36"
RACK_LABEL: Final = "homelab.example/rack"
ALREADY_EXISTS: Final = 409
NOT_FOUND: Final = 404
HTTP_WRITERS: Final = 8
"""Parallel HTTP writers: enough to keep a real API server busy without tripping its rate limits."""

STARTUP_SCRIPT: Final = (
    "# A real startup Job wakes the machine, e.g. `wakeonlan $MAC_ADDRESS`,\n"
    "# `ipmitool -H $BMC_HOST chassis power on` or a Redfish/smart-plug call.\n"
    'echo "would power on $MACHINE (Wake-on-LAN to $MAC_ADDRESS)"'
)
SHUTDOWN_SCRIPT: Final = (
    "# A real shutdown Job powers the machine off cleanly, e.g.\n"
    "# `ssh root@$HOST systemctl poweroff` or `ipmitool -H $BMC_HOST chassis power soft`.\n"
    'echo "would power off $MACHINE at $HOST"'
)


@dataclass(frozen=True)
class HomelabPlan:
    """Every object `seed_homelab` writes, and the machines that match them."""

    namespace: dict[str, Any]
    groups: list[dict[str, Any]]
    nodes: list[dict[str, Any]]
    machines: list[SimulatedMachine]


def group_capacity(group_number: int) -> dict[str, str]:
    """Resources of one machine in group `group_number` (1-based): 4, 8 or 12 cores in turn. Pure."""
    size = 1 + (group_number - 1) % 3
    return {"cpu": str(4 * size), "memory": f"{16 * size}Gi", "pods": "110", "ephemeral-storage": "100Gi"}


def machine_name(number: int, total: int) -> str:
    """`machine-0001` style names, wide enough for `total` machines. Pure."""
    return f"machine-{number:0{max(4, len(str(total)))}d}"


def plan_homelab(
    namespace: str = "homelab",
    groups: int = 2,
    machines: int = 6,
    *,
    boot_seconds: float = 30.0,
    shutdown_seconds: float = 10.0,
    provider_id_mode: ProviderIdMode = ProviderIdMode.EMPTY,
) -> HomelabPlan:
    """The Groups, Node CRs and machines of a homelab of `machines` spread over `groups`. Pure.

    Machines fill groups in contiguous blocks (`group-1` gets the first ones), sizes differing by at most
    one. Each Group is sized to its machines (minSize 0, maxSize = members) and carries a scale-from-zero
    template equal to its machines' capacity. Priority and price vary so the operator's choice is visible.
    """
    if groups < 1 or machines < 0:
        raise ValueError("a homelab needs at least one group and a non-negative number of machines")
    namespace_manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    group_manifests: list[dict[str, Any]] = []
    node_manifests: list[dict[str, Any]] = []
    planned: list[SimulatedMachine] = []
    number = 0
    for group_number in range(1, groups + 1):
        group = f"group-{group_number}"
        members = machines // groups + (1 if group_number <= machines % groups else 0)
        capacity = group_capacity(group_number)
        kubelet_labels = {RACK_LABEL: f"rack-{group_number}"}
        spec = GroupSpec(
            min_size=0,
            max_size=members,
            max_concurrent_boots=2 if group_number % 2 == 0 else None,
            template=NodeTemplate(
                capacity=capacity,
                labels={"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", **kubelet_labels},
            ),
        )
        group_manifests.append(
            _resource(
                "Group",
                group,
                namespace,
                {},
                spec.model_dump(by_alias=True, exclude_defaults=True, mode="json"),
            )
        )
        for _member in range(members):
            number += 1
            name = machine_name(number, machines)
            machine = SimulatedMachine(
                name=name,
                namespace=namespace,
                group=group,
                boot_seconds=boot_seconds,
                shutdown_seconds=shutdown_seconds,
                provider_id_mode=provider_id_mode,
                capacity=capacity,
                labels=kubelet_labels,
            )
            planned.append(machine)
            node_manifests.append(
                _resource(
                    "Node",
                    name,
                    namespace,
                    {label_names.GROUP_LABEL: group},
                    _node_spec(machine, number).model_dump(by_alias=True, exclude_defaults=True, mode="json"),
                )
            )
    return HomelabPlan(namespace_manifest, group_manifests, node_manifests, planned)


ON_THE_CONTROL_PLANE: Final[dict[str, Any]] = {
    "node_selector": {CONTROL_PLANE_ROLE: ""},
    "tolerations": (
        Toleration(key=CONTROL_PLANE_ROLE, operator=TolerationOperator.EXISTS, effect=TaintEffect.NO_SCHEDULE),
    ),
}
"""Power Jobs run on a machine that stays on, as the examples pin them, never on one the operator powers off."""


def placeholder_power_jobs(machine: str, host: str, mac_address: str) -> tuple[JobTemplate, JobTemplate]:
    """The startup and shutdown Jobs of a simulated machine: placeholder scripts saying what a real one would do."""
    startup = JobTemplate(
        image=PLACEHOLDER_IMAGE,
        command=("sh", "-c", STARTUP_SCRIPT),
        env=(EnvVar(name="MACHINE", value=machine), EnvVar(name="MAC_ADDRESS", value=mac_address)),
        host_network=True,  # Wake-on-LAN broadcasts need the host network
        **ON_THE_CONTROL_PLANE,
    )
    shutdown = JobTemplate(
        image=PLACEHOLDER_IMAGE,
        command=("sh", "-c", SHUTDOWN_SCRIPT),
        env=(EnvVar(name="MACHINE", value=machine), EnvVar(name="HOST", value=host)),
        **ON_THE_CONTROL_PLANE,
    )
    return startup, shutdown


def _node_spec(machine: SimulatedMachine, number: int) -> NodeSpec:
    mac_address = f"02:00:00:{(number >> 16) & 0xFF:02x}:{(number >> 8) & 0xFF:02x}:{number & 0xFF:02x}"
    startup, shutdown = placeholder_power_jobs(machine.name, machine.kubernetes_node_name, mac_address)
    spec = NodeSpec(
        priority=(number % 3) * 10,
        pricing=Pricing(hourly_price=f"{0.05 + 0.01 * (number % 5):.2f}", power_watts=60 + 20 * (number % 4)),
        startup_job=startup,
        shutdown_job=shutdown,
    )
    if machine.provider_id_mode is ProviderIdMode.K3S:
        # A k3s kubelet's id is known in advance, so the CR states it; otherwise the operator's default
        # (homelab://<namespace>/<name>) is what a preset kubelet uses and an empty one gets stamped with.
        spec = spec.model_copy(update={"provider_id": machine.provider_id})
    return spec


def _resource(kind: str, name: str, namespace: str, labels: Mapping[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": GROUP_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def install_crds(api_client: kube_client.ApiClient, timeout: float = 10.0) -> None:
    """Creates (or updates) our CRDs and waits until the API server serves both resources."""
    rest = KubeApi(api_client)
    collection = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    crds = render_crds()
    for crd in crds:
        try:
            rest.post(collection, crd)
        except KubeError as error:
            if error.status != ALREADY_EXISTS:
                raise
            existing = rest.get(f"{collection}/{crd['metadata']['name']}")
            updated = {
                **crd,
                "metadata": {**crd["metadata"], "resourceVersion": existing["metadata"]["resourceVersion"]},
            }
            rest.put(f"{collection}/{crd['metadata']['name']}", updated)
    wanted = {crd["spec"]["names"]["plural"] for crd in crds}
    deadline = time.monotonic() + timeout
    while True:
        try:
            served = {
                resource.get("name") for resource in rest.get(f"/apis/{API_GROUP}/{API_VERSION}").get("resources", ())
            }
        except KubeError as error:
            served = set()
            last_error: str = str(error)
        else:
            last_error = f"serving {sorted(served)}"
        if wanted <= served:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRDs not served within {timeout:.1f} s ({last_error})")
        time.sleep(0.05)


def seed_homelab(
    target: kube_client.ApiClient | FakeApiServer,
    namespace: str = "homelab",
    groups: int = 2,
    machines: int = 6,
    *,
    boot_seconds: float = 30.0,
    shutdown_seconds: float = 10.0,
    provider_id_mode: ProviderIdMode = ProviderIdMode.EMPTY,
    crds: bool = True,
    crd_timeout: float = 10.0,
) -> list[SimulatedMachine]:
    """Writes a planned homelab to `target` and returns its machines, ready for a MachineSimulator.

    `target` is a `kubernetes.client.ApiClient` (any server, written over HTTP) or our `FakeApiServer`
    (CRDs over HTTP, everything else straight into its store). Objects that already exist are left as
    they are, so seeding twice is harmless. `crds=False` skips installing the CRDs.
    """
    plan = plan_homelab(
        namespace,
        groups,
        machines,
        boot_seconds=boot_seconds,
        shutdown_seconds=shutdown_seconds,
        provider_id_mode=provider_id_mode,
    )
    api_client, store = _connect(target)
    try:
        if crds:
            install_crds(api_client, crd_timeout)
        started = time.monotonic()
        if store is not None:
            _write_to_store(store, plan)
        else:
            _write_over_http(KubeApi(api_client), plan)
        logger.info(
            "seeded %d groups and %d machines in %s in %.2f s",
            len(plan.groups),
            len(plan.nodes),
            namespace,
            time.monotonic() - started,
        )
    finally:
        if api_client is not target:
            api_client.close()  # type: ignore[no-untyped-call]  # the client's close() is unannotated
    return plan.machines


def _connect(target: kube_client.ApiClient | FakeApiServer) -> tuple[kube_client.ApiClient, Store | None]:
    """An ApiClient for `target`, and the fake's store when `target` is our FakeApiServer."""
    if isinstance(target, FakeApiServer):
        configuration = kube_client.Configuration()
        configuration.host = target.url
        return kube_client.ApiClient(configuration), target.store
    return target, None


def _write_over_http(rest: KubeApi, plan: HomelabPlan) -> None:
    _create(rest, "/api/v1/namespaces", plan.namespace)
    base = f"/apis/{GROUP_VERSION}/namespaces/{plan.namespace['metadata']['name']}"
    jobs = [(f"{base}/groups", group) for group in plan.groups] + [(f"{base}/nodes", node) for node in plan.nodes]
    with ThreadPoolExecutor(HTTP_WRITERS, thread_name_prefix="seed") as pool:
        for _done in pool.map(lambda item: _create(rest, *item), jobs):
            pass


def _create(rest: KubeApi, collection: str, body: Mapping[str, Any]) -> None:
    try:
        rest.post(collection, body)
    except KubeError as error:
        if error.status != ALREADY_EXISTS:
            raise


def _write_to_store(store: Store, plan: HomelabPlan) -> None:
    """Writes through the fake's store API (`store.create(api_version, plural, body, namespace)`)."""
    namespace = plan.namespace["metadata"]["name"]
    _store_create(store, "v1", "namespaces", plan.namespace, None)
    for group in plan.groups:
        _store_create(store, GROUP_VERSION, "groups", group, namespace)
    for node in plan.nodes:
        _store_create(store, GROUP_VERSION, "nodes", node, namespace)


def _store_create(store: Store, api_version: str, plural: str, body: dict[str, Any], namespace: str | None) -> None:
    try:
        store.create(api_version, plural, body, namespace)
    except ApiError as error:
        if error.code != ALREADY_EXISTS:
            raise


def machines_from_cluster(
    api_client: kube_client.ApiClient,
    namespace: str,
    *,
    boot_seconds: float = 30.0,
    shutdown_seconds: float = 10.0,
    provider_id_mode: ProviderIdMode = ProviderIdMode.EMPTY,
) -> list[SimulatedMachine]:
    """One machine per Node CR already in `namespace`, for attaching the simulator without seeding.

    A Node CR that states a `k3s://` providerID gets a k3s kubelet and one that states our default
    `homelab://` id a preset one; the others use `provider_id_mode`.
    """
    rest = KubeApi(api_client)
    try:
        items = rest.get(f"/apis/{GROUP_VERSION}/namespaces/{namespace}/nodes").get("items") or []
    except KubeError as error:
        if error.status != NOT_FOUND:
            raise
        raise KubeNotFound(
            f"cannot list Node resources in {namespace}: are the CRDs installed? ({error})", NOT_FOUND
        ) from error
    machines = []
    for item in items:
        metadata = item.get("metadata") or {}
        spec = item.get("spec") or {}
        name = str(metadata.get("name", ""))
        stated_id = str(spec.get("providerID") or "")
        mode = provider_id_mode
        if stated_id.startswith("k3s://"):
            mode = ProviderIdMode.K3S
        elif stated_id == default_provider_id(namespace, name):
            mode = ProviderIdMode.PRESET
        machines.append(
            SimulatedMachine(
                name=name,
                namespace=namespace,
                group=str((metadata.get("labels") or {}).get(label_names.GROUP_LABEL, "")),
                kubernetes_node_name=str(spec.get("kubernetesNodeName") or name),
                boot_seconds=boot_seconds,
                shutdown_seconds=shutdown_seconds,
                provider_id_mode=mode,
            )
        )
    return machines
