"""What the fake serves: one ``ResourceType`` per (group, version, plural), the built-in table, and a registry.

Separate because routing, discovery, admission and storage all ask the same questions ("is this namespaced?",
"does it have a status subresource?", "which lists merge by key?") and the answers must agree. Custom
resources join and leave the registry when their CRD is created or deleted (see ``crds``).

Objects of every version of one group+plural share storage (``storage_key``); like a CRD with conversion
strategy ``None``, reading through another version only rewrites ``apiVersion``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sim.fakeapi.errors import GroupResource

StatusOnCreate = Literal["keep", "clear", "pod", "namespace", "disruption-budget"]
Propagation = Literal["Background", "Orphan", "Foreground"]
StorageKey = tuple[str, str]

ALL_VERBS: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS: tuple[str, ...] = ("get", "patch", "update")


@dataclass(frozen=True)
class PrinterColumn:
    """A column of ``kubectl get`` output (CRD ``additionalPrinterColumns``)."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""
    absent: str = "<none>"  # what a string cell shows when the path finds nothing (built-ins vary: "N/A")


@dataclass(frozen=True)
class ActionSubresource:
    """A subresource that only takes POST and is answered by a handler rather than stored (``pods/eviction``).

    It has its own group, version and kind (an Eviction is policy/v1 while a Pod is core/v1), which discovery
    reports and ``kubectl drain`` reads to pick the body it sends.
    """

    name: str
    group: str
    version: str
    kind: str


@dataclass(frozen=True)
class ResourceType:
    """Everything the fake needs to know about one served resource in one version."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False
    status_on_create: StatusOnCreate = "keep"
    # Extra field-selector labels beyond metadata.name / metadata.namespace.
    selectable_fields: tuple[str, ...] = ()
    # Strategic-merge list strategies; None means strategic merge is refused (custom resources: 415).
    merge_strategies: Mapping[str, str | None] | None = None
    default_propagation: Propagation = "Background"
    verbs: tuple[str, ...] = ALL_VERBS
    custom: bool = False
    printer_columns: tuple[PrinterColumn, ...] = field(default=())
    actions: tuple[ActionSubresource, ...] = ()
    # A custom resource's openAPIV3Schema for this version (see ``structural``); not part of its identity.
    schema: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)

    def action(self, name: str | None) -> ActionSubresource | None:
        return next((action for action in self.actions if action.name == name), None)

    @property
    def api_version(self) -> str:
        return self.version if not self.group else f"{self.group}/{self.version}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def storage_key(self) -> StorageKey:
        return (self.group, self.plural)

    @property
    def group_resource(self) -> GroupResource:
        return GroupResource(self.group, self.plural)

    def supports_field(self, field_label: str) -> bool:
        return field_label in ("metadata.name", "metadata.namespace") or field_label in self.selectable_fields


_OBJECT_META_LISTS: dict[str, str | None] = {
    "metadata.finalizers": None,
    "metadata.ownerReferences": "uid",
}

_POD_SPEC_LISTS: dict[str, str | None] = {
    "containers": "name",
    "containers.env": "name",
    "containers.ports": "containerPort",
    "containers.volumeDevices": "devicePath",
    "containers.volumeMounts": "mountPath",
    "initContainers": "name",
    "initContainers.env": "name",
    "initContainers.ports": "containerPort",
    "initContainers.volumeDevices": "devicePath",
    "initContainers.volumeMounts": "mountPath",
    "hostAliases": "ip",
    "imagePullSecrets": "name",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "topologySpreadConstraints": "topologyKey",
    "volumes": "name",
}


def _prefixed(prefix: str, table: Mapping[str, str | None]) -> dict[str, str | None]:
    return {f"{prefix}.{path}": key for path, key in table.items()}


# Taken from the x-kubernetes-patch-strategy / patch-merge-key annotations of the v1.32 OpenAPI schema.
# Lists not named here are atomic; Node spec.taints in particular is atomic (a patch replaces every taint).
NODE_MERGE = {**_OBJECT_META_LISTS, "spec.podCIDRs": None, "status.addresses": "type", "status.conditions": "type"}
POD_MERGE = {
    **_OBJECT_META_LISTS,
    **_prefixed("spec", _POD_SPEC_LISTS),
    "status.conditions": "type",
    "status.hostIPs": "ip",
    "status.podIPs": "ip",
    "status.resourceClaimStatuses": "name",
}
JOB_MERGE = {
    **_OBJECT_META_LISTS,
    "spec.template.metadata.finalizers": None,
    "spec.template.metadata.ownerReferences": "uid",
    **_prefixed("spec.template.spec", _POD_SPEC_LISTS),
    "status.conditions": "type",
}
NAMESPACE_MERGE = {**_OBJECT_META_LISTS, "status.conditions": "type"}
BUDGET_MERGE = {**_OBJECT_META_LISTS, "status.conditions": "type"}
EVICTION = ActionSubresource("eviction", "policy", "v1", "Eviction")
SERVICE_ACCOUNT_MERGE = {**_OBJECT_META_LISTS, "secrets": "name"}
PLAIN_MERGE = dict(_OBJECT_META_LISTS)

_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)

BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        False,
        ("ns",),
        has_status=True,
        status_on_create="namespace",
        selectable_fields=("status.phase",),
        merge_strategies=NAMESPACE_MERGE,
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    ResourceType(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        False,
        ("no",),
        has_status=True,
        selectable_fields=("spec.unschedulable",),
        merge_strategies=NODE_MERGE,
    ),
    ResourceType(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        True,
        ("po",),
        ("all",),
        has_status=True,
        status_on_create="pod",
        selectable_fields=(
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ),
        merge_strategies=POD_MERGE,
        actions=(EVICTION,),
    ),
    ResourceType(
        "",
        "v1",
        "events",
        "event",
        "Event",
        True,
        ("ev",),
        selectable_fields=_EVENT_FIELDS,
        merge_strategies=PLAIN_MERGE,
    ),
    ResourceType(
        "", "v1", "secrets", "secret", "Secret", True, selectable_fields=("type",), merge_strategies=PLAIN_MERGE
    ),
    ResourceType("", "v1", "configmaps", "configmap", "ConfigMap", True, ("cm",), merge_strategies=PLAIN_MERGE),
    ResourceType(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        True,
        ("sa",),
        merge_strategies=SERVICE_ACCOUNT_MERGE,
    ),
    ResourceType("events.k8s.io", "v1", "events", "event", "Event", True, ("ev",), merge_strategies=PLAIN_MERGE),
    # The real server keeps batch/v1 Jobs' legacy default: a DELETE without a policy orphans the pods.
    ResourceType(
        "batch",
        "v1",
        "jobs",
        "job",
        "Job",
        True,
        (),
        ("all",),
        has_status=True,
        status_on_create="clear",
        selectable_fields=("status.successful",),
        merge_strategies=JOB_MERGE,
        default_propagation="Orphan",
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease", True, merge_strategies=PLAIN_MERGE),
    ResourceType(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        True,
        ("pdb",),
        has_status=True,
        status_on_create="disruption-budget",
        merge_strategies=BUDGET_MERGE,
    ),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "validatingwebhookconfiguration",
        "ValidatingWebhookConfiguration",
        False,
        categories=("api-extensions",),
        merge_strategies={**_OBJECT_META_LISTS, "webhooks": "name"},
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        ("api-extensions",),
        has_status=True,
        status_on_create="keep",
        merge_strategies=PLAIN_MERGE,
    ),
)


def builtin_resources(*, eviction_api: bool = True) -> tuple[ResourceType, ...]:
    """The built-in table; without ``eviction_api`` pods lose ``pods/eviction``, like a server lacking that API."""
    if eviction_api:
        return BUILTIN_RESOURCES
    return tuple(replace(resource, actions=()) for resource in BUILTIN_RESOURCES)


_VERSION_PATTERN = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key matching Kubernetes' version priority: GA > beta > alpha, higher numbers first, then others."""
    match = _VERSION_PATTERN.match(version)
    if not match:
        return (3, 0, 0, version)
    stability = {None: 0, "beta": 1, "alpha": 2}[match[2]]
    return (stability, -int(match[1]), -int(match[3] or 0), version)


class ResourceRegistry:
    """The set of resources currently served; thread-safe because CRDs change it while requests run."""

    def __init__(self, resources: Iterable[ResourceType] = BUILTIN_RESOURCES) -> None:
        self._lock = threading.Lock()
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        for resource in resources:
            self._by_path[(resource.group, resource.version, resource.plural)] = resource

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._by_path.get((group, version, plural))

    def lookup_api_version(self, api_version: str, plural: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        return self.lookup(group, version, plural)

    def lookup_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        with self._lock:
            for resource in self._by_path.values():
                if resource.group == group and resource.version == version and resource.kind == kind:
                    return resource
        return None

    def versions_of(self, storage_key: StorageKey) -> list[ResourceType]:
        with self._lock:
            return [r for r in self._by_path.values() if r.storage_key == storage_key]

    def replace_custom(self, storage_key: StorageKey, resources: Iterable[ResourceType]) -> None:
        """Serve exactly ``resources`` for this group+plural (empty: stop serving it)."""
        with self._lock:
            for path in [p for p, r in self._by_path.items() if r.custom and r.storage_key == storage_key]:
                del self._by_path[path]
            for resource in resources:
                self._by_path[(resource.group, resource.version, resource.plural)] = resource

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._by_path.values())

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> served versions, preferred first (the core group is the empty string)."""
        groups: dict[str, set[str]] = {}
        for resource in self.all():
            groups.setdefault(resource.group, set()).add(resource.version)
        return {group: sorted(versions, key=version_priority) for group, versions in groups.items()}
