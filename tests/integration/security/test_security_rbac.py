"""Least privilege, proved from the requests the operator really makes, not from what we believe it makes.

One module-wide run drives every adapter against the fake API server, one module at a time, while an `on_request`
hook records each request as the API server's authorizer would see it: every watch's list and watch, every
writer effect (drain and Events included), leader election's acquire, renew and release, the webhook
certificate keeper creating and rotating its Secret and filling the caBundle, the admission caches and their
live read, the leader label on the operator's pod, the native power drivers' Secret reader fetching each Secret
and ConfigMap the `native-power` component lists; then the whole `Operator` with leader election and the webhook,
scaling a group up. The tests then hold the recorded requests to two things:

- `kubeapi/api_calls.py` (nothing unlisted is sent; nothing listed is dead);
- the RBAC rendered by `kubectl kustomize` of manifests/ with the `native-power` component, for the operator's
  ServiceAccount (every request is allowed; every grant is needed, in the narrowest role and by name where RBAC
  can limit it; the Secrets of the machines only by the component's Role).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc
import pytest
from security_support import (
    GROUP,
    OPERATOR_NAMESPACE,
    WATCH_NAMESPACE,
    Cluster,
    RecordedRequest,
    new_cluster,
    operator_settings,
    running_operator,
)

from actors.effects_port import EffectBatch, GroupStatusBatch, MachineRef
from actors.fsm import effects
from actors.messages import DrainCompleted, EffectFailed
from homelab_autoscaler.certificates import WebhookCertificateIssuer
from homelab_autoscaler.operator import PodLabel, check_api_server
from kubeapi import api_calls, watch
from kubeapi.admission_lookup import CachedAdmissionLookup
from kubeapi.api_calls import API_CALLS, ApiCall, Component, Grant, NamedBy, RoleKind, Scope
from kubeapi.kube_client import KubeApi
from kubeapi.leader import LeaderElector
from kubeapi.secret_reader import KubeSecretReader
from kubeapi.webhook_certs import WebhookCertificates, WebhookCertificateStore
from kubeapi.writer import KubeWriter
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas import labels as label_names
from schemas.group import GroupSpec, GroupStatus
from schemas.node import Node, NodeStatus, OperationKind
from tests.support.polling import wait_for
from tests.support.rbac import (
    KUBECTL,
    ApiRequest,
    Document,
    Installation,
    allows,
    installation,
    kustomize_with_components,
    matches,
    operator_grants,
)

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (for `kubectl kustomize`) is not installed")

MACHINE: Final = "m1"
OTHER_APPS: Final = "apps"
OPERATOR_POD: Final = "homelab-autoscaler-0"
POWER_SECRETS_ROLE: Final = "homelab-autoscaler-power-secrets"
"""The native-power component's Role: `get` on the Secrets and ConfigMaps it lists by name."""
WEBHOOK_SERVICE: Final = "homelab-autoscaler-webhook"


@dataclass(frozen=True)
class Exercise:
    """Everything the run recorded, and the installation it ran as."""

    records: tuple[RecordedRequest, ...]
    unclassified: tuple[str, ...]
    setup: Installation
    grants: frozenset[Grant]
    component_objects: tuple[tuple[str, str], ...]
    """(resource, name) of what the native-power component lets the operator read, in the watched namespace."""


# --- driving each module ---------------------------------------------------------------------------------------


def _collect(_output: object) -> None:
    """A watch sink that drops what it gets: only the requests matter here."""


def drive_watches(cluster: Cluster) -> None:
    watches = [
        watch.group_watch(cluster.api_client, _collect, WATCH_NAMESPACE),
        watch.machine_watch(cluster.api_client, _collect, WATCH_NAMESPACE),
        watch.kube_node_watch(cluster.api_client, _collect),
        watch.power_job_watch(cluster.api_client, _collect, WATCH_NAMESPACE),
    ]
    for resource_watch in watches:
        resource_watch.start()
    try:
        wait_for(lambda: all(w.watches for w in watches), what="every watch to open its stream")
        wait_for(lambda: len([r for r in cluster.recorder.requests(api_calls.WATCH) if r.verb == "watch"]) >= 4,
                 what="four watch requests")
    finally:
        for resource_watch in watches:
            resource_watch.stop()


def drive_writer(cluster: Cluster) -> None:
    """Every effect once (CreateJob twice, to adopt; RecordEvent twice, to count), and a group status."""
    fake = cluster.fake
    stored = cluster.add_machine(MACHINE)
    cluster.add_group()
    taint = {"key": label_names.CA_TO_BE_DELETED_TAINT, "value": "1", "effect": "NoSchedule"}
    cluster.add_kube_node(MACHINE, taints=[taint])
    fake.store.create("v1", "namespaces", {"metadata": {"name": OTHER_APPS}})
    cluster.add_pod("web-1", WATCH_NAMESPACE, MACHINE)
    cluster.add_pod("db-1", OTHER_APPS, MACHINE)
    node = Node.model_validate(stored)
    machine = MachineRef(WATCH_NAMESPACE, MACHINE, MACHINE, GROUP)
    spec = GroupSpec.model_validate({"maxSize": 3, "shutdownTimeout": "5s", "nodeLabels": {"pool": "a"}})
    job = f"{MACHINE}-startup-1"
    event = effects.RecordEvent(effects.EventType.NORMAL, "PowerOn", "powering on")
    everything = (
        effects.CreateJob(OperationKind.STARTUP, 1, job),
        effects.CreateJob(OperationKind.STARTUP, 1, job),
        effects.DeleteJob(job),
        effects.PatchStatus(NodeStatus()),
        effects.Cordon(),
        effects.RemoveAutoscalerTaints(),
        effects.SetProviderID(f"homelab://{MACHINE}"),
        effects.ApplyManagedLabelsAndTaints(),
        effects.Uncordon(),
        event,
        event,
        effects.Drain(),
        effects.DeleteKubeNode(),
    )
    reports: list[object] = []
    writer = KubeWriter(
        cluster.api_client, lambda _address, message: reports.append(message),
        base_backoff=0.01, max_backoff=0.05, drain_poll_seconds=0.02,
    )
    try:
        writer.submit(EffectBatch(machine, node, spec, everything, "node-actor"))
        writer.submit(GroupStatusBatch(WATCH_NAMESPACE, GROUP, GroupStatus(target_size=1)))
        assert writer.wait_idle(20.0), "the writer did not finish"
    finally:
        writer.stop()
    assert [r for r in reports if isinstance(r, EffectFailed)] == []
    assert [r.succeeded for r in reports if isinstance(r, DrainCompleted)] == [True]


def drive_leader_election(cluster: Cluster, setup: Installation) -> None:
    elector = LeaderElector(
        cluster.api_client, setup.operator_namespace, setup.object_names[NamedBy.LEASE], "security-test",
        lease_seconds=2.0, renew_seconds=0.2, retry_seconds=0.1,
    )
    elector.start()
    try:
        wait_for(lambda: elector.is_leader, what="the elector to lead")
        # Created once, then renewed: at least one update follows the create.
        wait_for(lambda: cluster.recorder.seen("update", "leases", api_calls.LEADER), what="a renewal")
    finally:
        elector.stop(release=True)


def drive_webhook_certificates(cluster: Cluster, setup: Installation, directory: Path) -> None:
    secret = setup.object_names[NamedBy.WEBHOOK_SECRET]
    store = WebhookCertificateStore(
        cluster.api_client, setup.operator_namespace, secret, setup.object_names[NamedBy.WEBHOOK_CONFIGURATION]
    )
    issuer = WebhookCertificateIssuer(WEBHOOK_SERVICE, setup.operator_namespace)
    keeper = WebhookCertificates("self", directory, store=store, issuer=issuer, may_write=True)
    keeper.refresh()  # no Secret yet: create it, then fill the caBundle
    # A Secret without the CA key was not made by us: the next round replaces it (an update, not a create).
    cluster.fake.store.patch("v1", "secrets", secret, {"data": {"ca.key": None}}, setup.operator_namespace)
    keeper.refresh()
    assert keeper.problem is None


def drive_admission_lookup(cluster: Cluster, setup: Installation) -> None:
    lookup = CachedAdmissionLookup(
        cluster.api_client, lambda *facts: facts, setup.watch_namespace,
        watch_options={"initial_backoff": 0.01, "max_backoff": 0.05},
    )
    lookup.start()
    try:
        assert lookup.wait_synced(10.0)
        wait_for(lambda: len([r for r in cluster.recorder.requests(api_calls.ADMISSION_LOOKUP)
                              if r.verb == "watch"]) >= 3, what="three watch requests")
        assert not lookup.group_exists(setup.watch_namespace, "not-created-yet")  # a miss is confirmed live
    finally:
        lookup.stop()


def component_objects(documents: list[Document], setup: Installation) -> list[tuple[str, str]]:
    """(resource, name) of every object the native-power component's Role lets the operator read."""
    (role,) = [d for d in documents if d["kind"] == "Role" and d["metadata"]["name"] == POWER_SECRETS_ROLE]
    assert role["metadata"]["namespace"] == setup.watch_namespace
    return [(resource, name) for rule in role["rules"] for resource in rule["resources"]
            for name in rule["resourceNames"]]


def drive_secret_reader(cluster: Cluster, setup: Installation, objects: list[tuple[str, str]]) -> None:
    """Read one key of each Secret and ConfigMap the component lists, as the drivers do before an operation."""
    reader = KubeSecretReader(KubeApi(cluster.api_client))
    for resource, name in objects:
        body: dict[str, object] = {"metadata": {"name": name}}
        if resource == "secrets":
            body["data"] = {"password": "c2VjcmV0"}
            cluster.fake.store.create("v1", "secrets", body, setup.watch_namespace)
            assert reader.read(setup.watch_namespace, name, "password") == b"secret"
        else:
            body["data"] = {"ca.crt": "-----BEGIN CERTIFICATE-----"}
            cluster.fake.store.create("v1", "configmaps", body, setup.watch_namespace)
            assert reader.read_config_map(setup.watch_namespace, name, "ca.crt").startswith(b"-----BEGIN")


def drive_composition_root(cluster: Cluster, setup: Installation) -> None:
    check_api_server(cluster.api_client, setup.watch_namespace)
    label = PodLabel(cluster.api_client, setup.operator_namespace, OPERATOR_POD)
    label.set(True)
    label.set(False)


def drive_operator(cluster: Cluster, setup: Installation, directory: Path) -> None:
    """The whole operator as the Deployment runs it (election, webhook), scaling its group up by one."""
    cluster.add_machine("m2")
    settings = operator_settings(
        directory,
        namespace=setup.operator_namespace,
        watch_namespace=setup.watch_namespace,
        webhook_secret=setup.object_names[NamedBy.WEBHOOK_SECRET],
        webhook_config=setup.object_names[NamedBy.WEBHOOK_CONFIGURATION],
        leader_election_lease=setup.object_names[NamedBy.LEASE],
        pod_name=OPERATOR_POD,
        pod_namespace=setup.operator_namespace,
    )
    with running_operator(cluster, settings) as operator, grpc.insecure_channel(
        f"127.0.0.1:{operator.grpc_port}"
    ) as channel:
        request = externalgrpc.NodeGroupIncreaseSizeRequest(id=f"{WATCH_NAMESPACE}/{GROUP}", delta=1)
        externalgrpc_grpc.CloudProviderStub(channel).NodeGroupIncreaseSize(request, timeout=10)
        wait_for(lambda: cluster.fake.store.list("batch/v1", "jobs", WATCH_NAMESPACE), what="a power Job")


@pytest.fixture(scope="module")
def exercise(tmp_path_factory: pytest.TempPathFactory) -> Exercise:
    """Drive each module in turn, then the whole operator; every thread and the fake are stopped on return."""
    documents = kustomize_with_components(tmp_path_factory.mktemp("overlay"), Component.NATIVE_POWER.value)
    setup = installation(documents)
    assert (setup.operator_namespace, setup.watch_namespace) == (OPERATOR_NAMESPACE, WATCH_NAMESPACE)
    directory = tmp_path_factory.mktemp("rbac")
    with new_cluster() as cluster:
        cluster.fake.store.create("v1", "pods", {
            "metadata": {"name": OPERATOR_POD},
            "spec": {"containers": [{"name": "operator", "image": "homelab-autoscaler"}]},
        }, setup.operator_namespace)  # fmt: skip
        recorder = cluster.recorder
        with recorder.driving(api_calls.WATCH):
            drive_watches(cluster)
        with recorder.driving(api_calls.WRITER):
            drive_writer(cluster)
        with recorder.driving(api_calls.LEADER):
            drive_leader_election(cluster, setup)
        with recorder.driving(api_calls.WEBHOOK_CERTS):
            drive_webhook_certificates(cluster, setup, directory / "keeper")
        with recorder.driving(api_calls.ADMISSION_LOOKUP):
            drive_admission_lookup(cluster, setup)
        with recorder.driving(api_calls.OPERATOR):
            drive_composition_root(cluster, setup)
        power_objects = component_objects(documents, setup)
        with recorder.driving(api_calls.SECRET_READER):
            drive_secret_reader(cluster, setup, power_objects)
        with recorder.driving(None):
            drive_operator(cluster, setup, directory / "operator")
        records, unclassified = tuple(recorder.records), tuple(recorder.unclassified)
    return Exercise(records, unclassified, setup, frozenset(operator_grants(documents, setup)), tuple(power_objects))


def _entry_matches(call: ApiCall, record: RecordedRequest, setup: Installation) -> bool:
    return (record.module is None or record.module == call.module) and matches(
        call, record.request, operator_namespace=setup.operator_namespace, watch_namespace=setup.watch_namespace
    )


def _table_rows() -> list[object]:
    return [
        pytest.param(call, verb, id=f"{call.module.rpartition('.')[2]}-{verb}-{call.group or 'core'}-{call.resource}")
        for call in API_CALLS
        for verb in call.verbs
    ]


# --- the table and the requests ------------------------------------------------------------------------------


def test_every_request_is_in_the_api_call_table(exercise: Exercise) -> None:
    unlisted = sorted({
        f"{record.module or 'operator run'}: {record.request.describe()}"
        for record in exercise.records
        if not any(_entry_matches(call, record, exercise.setup) for call in API_CALLS)
    })  # fmt: skip
    assert unlisted == [], "requests missing from kubeapi/api_calls.py:\n" + "\n".join(unlisted)
    assert exercise.unclassified == (), "requests outside the resource API (no RBAC rule of ours covers them)"


@pytest.mark.parametrize(("call", "verb"), _table_rows())
def test_every_row_of_the_api_call_table_is_exercised(exercise: Exercise, call: ApiCall, verb: str) -> None:
    driven = [
        record for record in exercise.records
        if record.module == call.module and record.request.verb == verb and _entry_matches(call, record, exercise.setup)
    ]  # fmt: skip
    assert driven, f"{call.module} never sent `{verb} {call.resource}`: the row is dead or the drive misses it"


def test_the_run_reached_every_part_of_the_operator(exercise: Exercise) -> None:
    # The whole-operator run must have done real work, or it proves nothing about unlisted requests.
    seen = {(record.request.verb, record.request.resource) for record in exercise.records if record.module is None}
    assert {("watch", "jobs"), ("create", "jobs"), ("update", "leases"), ("patch", "pods")} <= seen


# --- RBAC and the requests -----------------------------------------------------------------------------------


def test_rbac_allows_every_request(exercise: Exercise) -> None:
    denied = sorted({
        record.request.describe()
        for record in exercise.records
        if not any(_allows(exercise, grant, record.request) for grant in exercise.grants)
    })  # fmt: skip
    assert denied == [], "requests the rendered RBAC would refuse with 403:\n" + "\n".join(denied)


def _requests_allowed_by(exercise: Exercise, grant: Grant) -> list[ApiRequest]:
    return [
        record.request for record in exercise.records
        if _allows(exercise, grant, record.request)
    ]  # fmt: skip


def _allows(exercise: Exercise, grant: Grant, request: ApiRequest) -> bool:
    return allows(grant, request, exercise.setup.operator_namespace, exercise.setup.watch_namespace)


def test_rbac_grants_nothing_that_no_request_needs(exercise: Exercise) -> None:
    unused = sorted(grant.describe() for grant in exercise.grants if not _requests_allowed_by(exercise, grant))
    assert unused == [], "grants no request needs; remove them from manifests/21-rbac.yaml:\n" + "\n".join(unused)


def test_no_grant_is_broader_than_the_requests_it_serves(exercise: Exercise) -> None:
    setup = exercise.setup
    too_broad = []
    for grant in sorted(exercise.grants):
        served = _requests_allowed_by(exercise, grant)
        if not served:
            continue  # unused: the test above reports it
        if grant.role is RoleKind.CLUSTER_ROLE and all(r.namespace == setup.operator_namespace for r in served):
            too_broad.append(f"{grant.describe()}: only used in {setup.operator_namespace}, belongs in the Role")
        names = {r.name for r in served}
        configured = set(setup.object_names.values())
        if (
            not grant.resource_names
            and grant.verb not in api_calls.UNNAMEABLE_VERBS
            and len(names) == 1
            and names <= configured
        ):
            too_broad.append(f"{grant.describe()}: only used on {names.pop()}, limit it with resourceNames")
    assert too_broad == [], "\n".join(too_broad)


@pytest.mark.parametrize(
    "scope", [pytest.param(scope, id=scope.value) for scope in Scope]
)
def test_each_scope_is_granted_by_the_role_the_table_says(exercise: Exercise, scope: Scope) -> None:
    # A request is allowed by a grant of the role its table row names, not by some wider one by accident.
    wrong = sorted({
        f"{record.request.describe()} allowed only by {', '.join(sorted({g.role for g in allowing}))}"
        for record in exercise.records
        for call in API_CALLS
        if call.scope is scope and _entry_matches(call, record, exercise.setup)
        and (allowing := [g for g in exercise.grants if _allows(exercise, g, record.request)])
        and all(grant.role is not call.role for grant in allowing)
    })  # fmt: skip
    assert wrong == [], "\n".join(wrong)


def test_secrets_read_are_only_the_webhook_certificate_and_those_the_native_power_component_lists(
    exercise: Exercise,
) -> None:
    secret = exercise.setup.object_names[NamedBy.WEBHOOK_SECRET]
    reads = {
        (record.request.namespace, record.request.name)
        for record in exercise.records
        if record.request.resource == "secrets" and record.request.verb in ("get", "list", "watch")
    }
    listed = {(exercise.setup.watch_namespace, name) for resource, name in exercise.component_objects
              if resource == "secrets"}
    assert listed, "the component lists example Secrets"
    assert reads == {(exercise.setup.operator_namespace, secret), *listed}
    machine_secret_grants = [grant for grant in exercise.grants if grant.resource in ("secrets", "configmaps")
                             and grant.role is RoleKind.WATCHED_NAMESPACE_ROLE]
    assert machine_secret_grants, "the component's Role grants them"
    assert all(grant.verb == "get" and grant.resource_names for grant in machine_secret_grants)
