"""Every Kubernetes API call the operator makes, as data: the one table the docs and the RBAC manifest answer to.

The calls themselves are spelled out in the adapters (`writer`, `watch`, `leader`, `webhook_certs`,
`admission_lookup`, `secret_reader`) and, for the leader label on its own pod, in the composition root. Three
things must agree with them and used to be kept in step by hand: the table in docs/architecture/kubernetes.md, the
ClusterRole and Role in manifests/21-rbac.yaml, and the list of what the operator never does. This module is that
list written once, so that:

- the documentation table is generated from it (`render_api_calls_table`, written by `homelab-autoscaler docs`);
- the RBAC rules it requires are derived from it (`required_grants`), and
  tests/integration/manifests/test_manifests.py compares them with the rendered manifests; a call only some
  installations need (reading the Secrets of `spec.power`) is marked with the component of manifests/components/
  that grants it, and is left out of the base RBAC;
- tests/integration/security/ drives every adapter against the fake API server, records each request and
  fails when a request is missing from here, when an entry here was never exercised, or when RBAC grants more
  or less than the recorded requests need.

Pure data and pure functions: importing it pulls in neither the Kubernetes client nor any adapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from schemas import API_GROUP
from schemas import labels as label_names

BEGIN_MARKER: Final = "<!-- BEGIN GENERATED API CALLS -->"
END_MARKER: Final = "<!-- END GENERATED API CALLS -->"

UNNAMEABLE_VERBS: Final = frozenset({"create", "list", "watch", "deletecollection"})
"""Verbs RBAC cannot limit to `resourceNames`: the object's name is not in the request's path."""


class Scope(StrEnum):
    """Where the objects of a call live, which decides whether a Role suffices or a ClusterRole is needed."""

    CLUSTER = "cluster"
    """A cluster-scoped resource (Kubernetes Nodes, webhook configurations): only a ClusterRole can grant it."""
    ALL_NAMESPACES = "all namespaces"
    """A namespaced resource in whichever namespace it happens to be (the pods on a machine being drained)."""
    WATCHED_NAMESPACES = "watched namespaces"
    """The namespace of the Group and Node resources (`--watch-namespace`; every namespace when it is empty)."""
    OPERATOR_NAMESPACE = "operator namespace"
    """The operator's own namespace (`--namespace`): its Lease, its webhook Secret, its own pod."""

    def covers(self, namespace: str | None, *, operator_namespace: str, watch_namespace: str) -> bool:
        """Whether a request in `namespace` (None: cluster-scoped, or across all namespaces) is of this scope. Pure."""
        if self is Scope.CLUSTER:
            return namespace is None
        if self is Scope.ALL_NAMESPACES:
            return True
        if self is Scope.WATCHED_NAMESPACES:
            return not watch_namespace or namespace == watch_namespace
        return namespace == operator_namespace


class RoleKind(StrEnum):
    CLUSTER_ROLE = "ClusterRole"
    ROLE = "Role"
    """A Role in the operator's own namespace."""
    WATCHED_NAMESPACE_ROLE = "Role in the watched namespace"
    """A Role bound in the namespace of the Group and Node resources (a component's, e.g. `native-power`)."""


class Component(StrEnum):
    """A component of manifests/components/ that grants calls the base RBAC (manifests/21-rbac.yaml) does not."""

    NATIVE_POWER = "native-power"
    """`get` on the Secrets (and Redfish CA bundle ConfigMaps) that the Nodes' `spec.power` names, listed by name."""


class NamedBy(StrEnum):
    """The setting that names the one object a call is about, when it always is the same configured object."""

    LEASE = "--leader-election-lease"
    WEBHOOK_SECRET = "--webhook-secret"
    WEBHOOK_CONFIGURATION = "--webhook-config"


@dataclass(frozen=True)
class ApiCall:
    """One kind of request: its verbs on one resource, where, by which module and part of it, and why."""

    verbs: tuple[str, ...]
    group: str
    """The API group; "" is the core group."""
    resource: str
    """The plural resource name, with `/subresource` when the call is on a subresource."""
    scope: Scope
    module: str
    """The module that makes the request (dotted name)."""
    by: str
    """Which part of the module (an effect, a method, a watch)."""
    why: str
    named_by: NamedBy | None = None
    """Set when the call is only ever about the object this setting names (RBAC then limits it by name)."""
    detail: str = ""
    """What narrows the request further (a selector), shown in the documentation."""
    granted_by: Component | None = None
    """The component that grants it, for a call only installations using that feature make; None: the base RBAC."""

    @property
    def role(self) -> RoleKind:
        """The role that must grant it: a component's Role in the watched namespace for a component's call, a Role in
        the operator's namespace when it suffices, else the ClusterRole."""
        if self.granted_by is not None:
            return RoleKind.WATCHED_NAMESPACE_ROLE
        return RoleKind.ROLE if self.scope is Scope.OPERATOR_NAMESPACE else RoleKind.CLUSTER_ROLE


WATCH: Final = "kubeapi.watch"
WRITER: Final = "kubeapi.writer"
LEADER: Final = "kubeapi.leader"
WEBHOOK_CERTS: Final = "kubeapi.webhook_certs"
ADMISSION_LOOKUP: Final = "kubeapi.admission_lookup"
OPERATOR: Final = "homelab_autoscaler.operator"
SECRET_READER: Final = "kubeapi.secret_reader"

CORE: Final = ""
BATCH: Final = "batch"
COORDINATION: Final = "coordination.k8s.io"
ADMISSION_REGISTRATION: Final = "admissionregistration.k8s.io"

API_CALLS: Final[tuple[ApiCall, ...]] = (
    # --- the leader's watches (one list-then-watch thread each) ---------------------------------------------
    ApiCall(("list", "watch"), API_GROUP, "groups", Scope.WATCHED_NAMESPACES, WATCH, "`group_watch`",
            "know every Group (sizes, timeouts, labels, taints)"),
    ApiCall(("list", "watch"), API_GROUP, "nodes", Scope.WATCHED_NAMESPACES, WATCH, "`machine_watch`",
            "know every machine: its spec, and its durable status after a restart"),
    ApiCall(("list", "watch"), CORE, "nodes", Scope.CLUSTER, WATCH, "`kube_node_watch`",
            "see machines register, turn Ready and go away"),
    ApiCall(("list", "watch"), BATCH, "jobs", Scope.WATCHED_NAMESPACES, WATCH, "`power_job_watch`",
            "follow our power Jobs; adopt the ones in flight after a restart",
            detail=f"`labelSelector={label_names.MANAGED_BY_LABEL}={label_names.MANAGED_BY_VALUE}`"),
    # --- the writer: effects of the actors ---------------------------------------------------------------------
    ApiCall(("patch",), API_GROUP, "nodes/status", Scope.WATCHED_NAMESPACES, WRITER, "`PatchStatus`",
            "record the machine's state (its durable record), as one JSON patch of the whole status"),
    ApiCall(("patch",), API_GROUP, "groups/status", Scope.WATCHED_NAMESPACES, WRITER, "group status",
            "record target size, ready count and machines per state"),
    ApiCall(("create",), BATCH, "jobs", Scope.WATCHED_NAMESPACES, WRITER, "`CreateJob`",
            "run a power operation"),
    ApiCall(("get",), BATCH, "jobs", Scope.WATCHED_NAMESPACES, WRITER, "`CreateJob`",
            "on AlreadyExists: adopt the Job when it is this machine's, refuse it otherwise"),
    ApiCall(("delete",), BATCH, "jobs", Scope.WATCHED_NAMESPACES, WRITER, "`DeleteJob`",
            "cancel a power operation, its pods included (propagation Background)"),
    ApiCall(("get",), CORE, "nodes", Scope.CLUSTER, WRITER,
            "`RemoveAutoscalerTaints`, `SetProviderID`, `ApplyManagedLabelsAndTaints`, `TaintForExercise`",
            "a fresh read, whose resourceVersion guards the write that follows"),
    ApiCall(("patch",), CORE, "nodes", Scope.CLUSTER, WRITER,
            "`Cordon`, `Uncordon`, `RemoveAutoscalerTaints`, `SetProviderID`, `ApplyManagedLabelsAndTaints`, "
            "`TaintForExercise`",
            "cordon before a shutdown and uncordon after a boot; drop CA's leftover taints; taint an exercised "
            "machine's Node; set an empty "
            "providerID; keep the Group's labels and taints and our own labels on the machine's Node"),
    ApiCall(("delete",), CORE, "nodes", Scope.CLUSTER, WRITER, "`DeleteKubeNode`",
            "a powered-off machine must not count as an unready Node for CA"),
    ApiCall(("list",), CORE, "pods", Scope.ALL_NAMESPACES, WRITER, "`Drain`",
            "find the pods to evict, then wait until they are gone", detail="`fieldSelector=spec.nodeName=<node>`"),
    ApiCall(("create",), CORE, "pods/eviction", Scope.ALL_NAMESPACES, WRITER, "`Drain`",
            "evict through the Eviction API, so PodDisruptionBudgets are honoured"),
    ApiCall(("create",), CORE, "events", Scope.WATCHED_NAMESPACES, WRITER, "`RecordEvent`",
            "tell people what happened to a machine (`kubectl describe`)"),
    ApiCall(("patch",), CORE, "events", Scope.WATCHED_NAMESPACES, WRITER, "`RecordEvent`",
            "count a repeated identical Event instead of creating another one"),
    # --- leader election -------------------------------------------------------------------------------------
    ApiCall(("get", "update"), COORDINATION, "leases", Scope.OPERATOR_NAMESPACE, LEADER, "`LeaderElector`",
            "read the holder; renew, take over an expired Lease, release it on stop", named_by=NamedBy.LEASE),
    ApiCall(("create",), COORDINATION, "leases", Scope.OPERATOR_NAMESPACE, LEADER, "`LeaderElector`",
            "make the Lease on the very first start"),
    # --- the webhook's certificate ----------------------------------------------------------------------------
    ApiCall(("get", "update"), CORE, "secrets", Scope.OPERATOR_NAMESPACE, WEBHOOK_CERTS, "`WebhookCertificateStore`",
            "load the webhook's certificate; store a rotated one (the only Secret the base RBAC lets it read)",
            named_by=NamedBy.WEBHOOK_SECRET),
    ApiCall(("create",), CORE, "secrets", Scope.OPERATOR_NAMESPACE, WEBHOOK_CERTS, "`WebhookCertificateStore`",
            "store the first certificate"),
    ApiCall(("get", "patch"), ADMISSION_REGISTRATION, "validatingwebhookconfigurations", Scope.CLUSTER,
            WEBHOOK_CERTS, "`WebhookCertificateStore`", "keep the `caBundle` equal to our CA",
            named_by=NamedBy.WEBHOOK_CONFIGURATION),
    # --- the native power drivers' credentials (only with the native-power component) --------------------------
    ApiCall(("get",), CORE, "secrets", Scope.WATCHED_NAMESPACES, SECRET_READER, "`KubeSecretReader.read`",
            "a BMC's credentials or an SSH private key, when a power operation needs them; never cached",
            detail="the names `spec.power` gives, listed in the component's Role",
            granted_by=Component.NATIVE_POWER),
    ApiCall(("get",), CORE, "configmaps", Scope.WATCHED_NAMESPACES, SECRET_READER,
            "`KubeSecretReader.read_config_map`", "a Redfish BMC's CA bundle (`caBundle.configMapKeyRef`)",
            detail="the names `spec.power` gives, listed in the component's Role",
            granted_by=Component.NATIVE_POWER),
    # --- the webhook's caches (every replica) -----------------------------------------------------------------
    ApiCall(("list", "watch"), API_GROUP, "groups", Scope.WATCHED_NAMESPACES, ADMISSION_LOOKUP,
            "`CachedAdmissionLookup`", "a Node's Group must exist"),
    ApiCall(("get",), API_GROUP, "groups", Scope.WATCHED_NAMESPACES, ADMISSION_LOOKUP, "`CachedAdmissionLookup`",
            "confirm a Group the cache has not seen yet before denying"),
    ApiCall(("list", "watch"), API_GROUP, "nodes", Scope.WATCHED_NAMESPACES, ADMISSION_LOOKUP,
            "`CachedAdmissionLookup`", "`kubernetesNodeName` and `providerID` are unique; room for always-on machines"),
    ApiCall(("list", "watch"), CORE, "nodes", Scope.CLUSTER, ADMISSION_LOOKUP, "`CachedAdmissionLookup`",
            "warn about a machine whose Kubernetes Node does not exist"),
    # --- the composition root --------------------------------------------------------------------------------
    ApiCall(("list",), API_GROUP, "groups", Scope.WATCHED_NAMESPACES, OPERATOR, "`check_api_server`",
            "before binding anything, fail the start in one line when the API server does not answer at all",
            detail="`limit=1`"),
    ApiCall(("patch",), CORE, "pods", Scope.OPERATOR_NAMESPACE, OPERATOR, "`PodLabel`",
            "set and clear the leader label the gRPC and webhook Services select on, on the operator's own pod"),
)  # fmt: skip
"""Every request the operator makes, grouped by the module that makes it."""


@dataclass(frozen=True, order=True)
class Grant:
    """One (verb, resource) permission in one role, limited to `resource_names` when not empty."""

    role: RoleKind
    group: str
    resource: str
    verb: str
    resource_names: tuple[str, ...] = ()

    def describe(self) -> str:
        group = self.group or "core"
        names = f" named {', '.join(self.resource_names)}" if self.resource_names else ""
        return f"{self.role} {self.verb} {self.resource} ({group}){names}"


def required_grants(
    object_names: Mapping[NamedBy, str], calls: Iterable[ApiCall] = API_CALLS
) -> frozenset[Grant]:
    """The least base RBAC that allows `calls`, with configured objects limited by name where RBAC can. Pure.

    `object_names` gives the name each setting has in the installation (e.g. the Lease's name). Calls a component
    grants are left out: their objects are the ones a user lists in that component.
    """
    grants = set()
    for call in calls:
        if call.granted_by is not None:
            continue
        for verb in call.verbs:
            names: tuple[str, ...] = ()
            if call.named_by is not None and verb not in UNNAMEABLE_VERBS:
                names = (object_names[call.named_by],)
            grants.add(Grant(call.role, call.group, call.resource, verb, names))
    return frozenset(grants)


def _group_cell(group: str) -> str:
    return f"`{group}`" if group else "core"


def _where(call: ApiCall) -> str:
    where = call.scope.value
    if call.named_by is not None:
        where += f", only the one named by `{call.named_by.value}`"
    if call.granted_by is not None:
        where += f", granted by the `{call.granted_by.value}` component"
    return where


def render_api_calls_table(calls: Iterable[ApiCall] = API_CALLS) -> str:
    """The generated section of docs/architecture/kubernetes.md: one row per entry of `calls`. Pure."""
    lines = [
        "| verbs | API group | resource | where | module | by | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for call in calls:
        resource = f"`{call.resource}`" + (f" with {call.detail}" if call.detail else "")
        module = call.module.rpartition(".")[2]
        lines.append(
            f"| {', '.join(call.verbs)} | {_group_cell(call.group)} | {resource} | {_where(call)} | `{module}` "
            f"| {call.by} | {call.why} |"
        )
    return "\n".join(lines) + "\n"
