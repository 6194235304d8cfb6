"""The effect writer against the fake API over real HTTP: every effect's result as a user sees it in the API,
per-machine ordering under load, retries of transient failures and reports of permanent ones."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import defaultdict
from dataclasses import replace
from typing import Any

import pytest
from kubeapi_test_support import (
    GROUP,
    REPLY_TO,
    Reports,
    batch_for,
    create_group,
    create_kube_node,
    create_machine,
    group_spec,
    kube_node_name,
)

from actors import metrics
from actors.effects_port import EffectPort, GroupEventBatch, GroupStatusBatch, StoredNotice
from actors.fsm import effects
from actors.messages import EffectFailed, IntentStored
from kubeapi.job_manifest import job_labels
from kubeapi.reachability import ApiReachability
from kubeapi.writer import KubeWriter, merge_taints, needs_eviction
from schemas import GROUP_VERSION
from schemas import labels as label_names
from schemas.common import Taint, TaintEffect
from schemas.group import GroupStatus
from schemas.node import NodeSnapshot, NodeState, NodeStatus, OperationKind
from sim.fakeapi import FakeApiServer
from tests.support.polling import wait_for

STARTUP = effects.CreateJob(OperationKind.STARTUP, 1, "m1-startup-1")


def _job(fake_api: FakeApiServer, namespace: str, name: str) -> dict[str, Any] | None:
    items = fake_api.store.list("batch/v1", "jobs", namespace)
    return next((job for job in items if job["metadata"]["name"] == name), None)


def _kube_node(fake_api: FakeApiServer, name: str) -> dict[str, Any] | None:
    return next((n for n in fake_api.store.list("v1", "nodes") if n["metadata"]["name"] == name), None)


def _writes(verb: str, resource: str, outcome: str) -> float:
    labels = {"verb": verb, "resource": resource, "outcome": outcome}
    return metrics.REGISTRY.get_sample_value("homelab_autoscaler_kube_writes_total", labels) or 0.0


def _apply(writer: KubeWriter, *batches: Any) -> None:
    for batch in batches:
        writer.submit(batch)
    assert writer.wait_idle(10.0), "the writer did not finish its batches"


# -- Jobs ----------------------------------------------------------------------------------------------------


def test_create_job_posts_the_rendered_job_owned_by_the_machine(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    created_before = _writes("create", "jobs", "ok")

    _apply(writer, batch_for(node, STARTUP, spec=group_spec(bootTimeout="7m")))

    job = _job(fake_api, namespace, "m1-startup-1")
    assert job is not None
    assert job["metadata"]["labels"].items() >= job_labels("m1", GROUP, OperationKind.STARTUP, 1).items()
    assert job["metadata"]["ownerReferences"][0]["uid"] == node.metadata.uid
    assert job["spec"]["activeDeadlineSeconds"] == 7 * 60, "the deadline defaults to the group's boot timeout"
    assert reports.messages == []
    assert _writes("create", "jobs", "ok") == created_before + 1


def test_create_job_adopts_an_existing_job_of_the_same_machine(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    _apply(writer, batch_for(node, STARTUP))
    first_uid = _job(fake_api, namespace, "m1-startup-1")["metadata"]["uid"]  # type: ignore[index]

    _apply(writer, batch_for(node, STARTUP))  # a recreated actor resubmits the same effect

    jobs = fake_api.store.list("batch/v1", "jobs", namespace)
    assert [job["metadata"]["uid"] for job in jobs] == [first_uid]
    assert reports.messages == []


def test_create_job_refuses_a_job_of_that_name_owned_by_another_machine(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports
) -> None:
    other = create_machine(fake_api, namespace, "other")
    node = create_machine(fake_api, namespace, "m1")
    _apply(writer, batch_for(other, STARTUP))

    _apply(writer, batch_for(node, STARTUP))

    [failure] = reports.of_type(EffectFailed)
    assert failure.effect == STARTUP
    assert failure.permanent
    assert "other" in failure.message
    assert reports.addresses == [REPLY_TO]


def test_delete_job_removes_its_pods_too(fake_api: FakeApiServer, namespace: str, writer: KubeWriter) -> None:
    node = create_machine(fake_api, namespace, "m1")
    _apply(writer, batch_for(node, STARTUP))
    job = _job(fake_api, namespace, "m1-startup-1")
    assert job is not None
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "m1-startup-1", "uid": job["metadata"]["uid"],
             "controller": True}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "m1-startup-1-abcde", "ownerReferences": [owner]},
           "spec": {"containers": [{"name": "startup", "image": "busybox"}]}}
    fake_api.store.create("v1", "pods", pod, namespace)

    _apply(writer, batch_for(node, effects.DeleteJob("m1-startup-1")))
    fake_api.settle()

    assert _job(fake_api, namespace, "m1-startup-1") is None
    assert fake_api.store.list("v1", "pods", namespace) == [], "the Job's pod was orphaned"


def test_deleting_a_missing_job_is_not_a_failure(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    _apply(writer, batch_for(node, effects.DeleteJob("never-created")))
    assert reports.messages == []


# -- status --------------------------------------------------------------------------------------------------


def test_patch_status_replaces_the_status_and_leaves_the_spec_alone(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter
) -> None:
    node = create_machine(fake_api, namespace, "m1", priority=7)
    spec_before = fake_api.store.get(GROUP_VERSION, "nodes", "m1", namespace)["spec"]
    old = NodeStatus(state=NodeState.READY, last_ready=NodeSnapshot(labels={"gone": "soon", "kept": "yes"}))
    new = NodeStatus(state=NodeState.SHUTTING_DOWN, attempts=2, last_ready=NodeSnapshot(labels={"kept": "yes"}))

    _apply(writer, batch_for(node, effects.PatchStatus(old)), batch_for(node, effects.PatchStatus(new)))

    stored = fake_api.store.get(GROUP_VERSION, "nodes", "m1", namespace)
    assert stored["status"] == new.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert stored["status"]["lastReady"]["labels"] == {"kept": "yes"}, "a label the machine lost must go"
    assert stored["spec"] == spec_before
    assert stored["metadata"]["generation"] == 1


def test_group_status_batch_writes_the_group_status(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter
) -> None:
    group = create_group(fake_api, namespace)
    first = GroupStatus(target_size=2, ready_count=1, machines={"Ready": 1, "StartingUp": 1})
    second = GroupStatus(target_size=1, ready_count=1, machines={"Ready": 1})

    _apply(writer, GroupStatusBatch(namespace, GROUP, first), GroupStatusBatch(namespace, GROUP, second))

    stored = fake_api.store.get(GROUP_VERSION, "groups", GROUP, namespace)
    assert stored["status"]["targetSize"] == 1
    assert stored["status"]["machines"] == {"Ready": 1}
    assert stored["spec"] == group["spec"]


# -- the Kubernetes Node -------------------------------------------------------------------------------------


def test_cordon_then_uncordon(fake_api: FakeApiServer, namespace: str, writer: KubeWriter) -> None:
    node = create_machine(fake_api, namespace, "m1")
    name = kube_node_name(namespace, "m1")
    create_kube_node(fake_api, name)

    _apply(writer, batch_for(node, effects.Cordon()))
    assert _kube_node(fake_api, name)["spec"]["unschedulable"] is True  # type: ignore[index]

    _apply(writer, batch_for(node, effects.Uncordon()))
    assert not _kube_node(fake_api, name)["spec"].get("unschedulable")  # type: ignore[index]


@pytest.mark.parametrize(
    "effect",
    [
        pytest.param(effects.Cordon(), id="cordon"),
        pytest.param(effects.Uncordon(), id="uncordon"),
        pytest.param(effects.RemoveAutoscalerTaints(), id="remove-taints"),
        pytest.param(effects.SetProviderID("homelab://x/m1"), id="set-provider-id"),
        pytest.param(effects.ApplyManagedLabelsAndTaints(), id="apply-labels"),
        pytest.param(effects.TaintForExercise(), id="taint-for-exercise"),
        pytest.param(effects.DeleteKubeNode(), id="delete-node"),
    ],
)
def test_node_effects_without_a_kubernetes_node_succeed_quietly(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports, effect: effects.Effect
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    _apply(writer, batch_for(node, effect))
    assert reports.messages == []
    assert _kube_node(fake_api, kube_node_name(namespace, "m1")) is None


def test_remove_autoscaler_taints_keeps_every_other_taint(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    name = kube_node_name(namespace, "m1")
    create_kube_node(fake_api, name, taints=[
        {"key": label_names.CA_TO_BE_DELETED_TAINT, "value": "1700000000", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
        {"key": label_names.CA_DELETION_CANDIDATE_TAINT, "value": "1700000000", "effect": "PreferNoSchedule"},
    ])

    _apply(writer, batch_for(node, effects.RemoveAutoscalerTaints()))

    assert _kube_node(fake_api, name)["spec"]["taints"] == [  # type: ignore[index]
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    ]


def test_an_exercised_node_is_tainted_until_the_autoscaler_taints_are_removed(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    name = kube_node_name(namespace, "m1")
    create_kube_node(fake_api, name, taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])

    _apply(writer, batch_for(node, effects.TaintForExercise()))
    assert _kube_node(fake_api, name)["spec"]["taints"] == [  # type: ignore[index]
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
        {"key": label_names.EXERCISE_TAINT, "effect": "NoSchedule"},
    ]

    _apply(writer, batch_for(node, effects.RemoveAutoscalerTaints()))
    assert _kube_node(fake_api, name)["spec"]["taints"] == [  # type: ignore[index]
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    ]


def test_remove_autoscaler_taints_rereads_when_someone_else_changed_the_node(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    name = kube_node_name(namespace, "m1")
    create_kube_node(fake_api, name, taints=[{"key": label_names.CA_TO_BE_DELETED_TAINT, "effect": "NoSchedule"}])
    raced = threading.Event()

    def someone_adds_a_taint_first(method: str, target: str, body: bytes) -> None:
        if method == "PATCH" and target.startswith(f"/api/v1/nodes/{name}") and not raced.is_set():
            raced.set()
            current = fake_api.store.get("v1", "nodes", name)
            added = {"key": "maintenance", "effect": "NoExecute"}
            current["spec"]["taints"] = [*current["spec"]["taints"], added]
            fake_api.store.update("v1", "nodes", current)

    fake_api.on_request.append(someone_adds_a_taint_first)
    conflicts_before = _writes("patch", "nodes", "conflict")

    _apply(writer, batch_for(node, effects.RemoveAutoscalerTaints()))

    assert raced.is_set()
    assert _kube_node(fake_api, name)["spec"]["taints"] == [  # type: ignore[index]
        {"key": "maintenance", "effect": "NoExecute"}
    ], "the concurrently added taint must survive, the autoscaler's must go"
    assert _writes("patch", "nodes", "conflict") == conflicts_before + 1
    assert reports.messages == []


def test_provider_id_is_set_once_and_never_changed(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    name = kube_node_name(namespace, "m1")
    create_kube_node(fake_api, name)

    _apply(writer, batch_for(node, effects.SetProviderID("homelab://a/m1")))
    _apply(writer, batch_for(node, effects.SetProviderID("homelab://b/m1")))

    assert _kube_node(fake_api, name)["spec"]["providerID"] == "homelab://a/m1"  # type: ignore[index]
    assert reports.messages == []


def test_managed_labels_and_taints_are_applied_and_merged(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    name = kube_node_name(namespace, "m1")
    create_kube_node(fake_api, name, taints=[
        {"key": "dedicated", "value": "old", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "keep", "effect": "NoExecute"},
        {"key": "unrelated", "effect": "NoSchedule"},
    ])
    fake_api.store.patch("v1", "nodes", name, {"metadata": {"labels": {"kubernetes.io/hostname": name}}})
    spec = group_spec(
        nodeLabels={"homelab.example/rack": "a"},
        nodeTaints=[{"key": "dedicated", "value": "homelab", "effect": "NoSchedule"},
                    {"key": "power", "value": "scaled", "effect": "PreferNoSchedule"}],
    )

    _apply(writer, batch_for(node, effects.ApplyManagedLabelsAndTaints(), spec=spec))

    stored = _kube_node(fake_api, name)
    assert stored is not None
    assert stored["metadata"]["labels"] == {
        "kubernetes.io/hostname": name,
        "homelab.example/rack": "a",
        label_names.GROUP_LABEL: GROUP,
        label_names.MACHINE_LABEL: "m1",
    }
    assert stored["spec"]["taints"] == [
        {"key": "dedicated", "value": "homelab", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "keep", "effect": "NoExecute"},
        {"key": "unrelated", "effect": "NoSchedule"},
        {"key": "power", "value": "scaled", "effect": "PreferNoSchedule"},
    ]


MAKE_USABLE = (
    effects.Uncordon(),
    effects.RemoveAutoscalerTaints(),
    effects.ApplyManagedLabelsAndTaints(),
    effects.SetProviderID("homelab://x/m1"),
)
"""What a member's Node gets on the way to Ready, in the order the state machine emits it."""


def test_a_node_becomes_usable_in_one_write(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    name = kube_node_name(namespace, "m1")
    create_kube_node(fake_api, name, taints=[{"key": label_names.CA_TO_BE_DELETED_TAINT, "effect": "NoSchedule"}])
    fake_api.store.patch("v1", "nodes", name, {"spec": {"unschedulable": True}})
    spec = group_spec(nodeLabels={"homelab.example/pool": "gpu"}, nodeTaints=[{"key": "gpu", "effect": "NoSchedule"}])
    requests: list[str] = []
    fake_api.on_request.append(
        lambda method, target, body: requests.append(method) if target.startswith(f"/api/v1/nodes/{name}") else None
    )

    _apply(writer, batch_for(node, *MAKE_USABLE, spec=spec))

    # The scheduler and CA see the member complete at once: labels, taints, schedulable and providerID together.
    assert requests == ["GET", "PATCH"]
    stored = _kube_node(fake_api, name)
    assert stored is not None
    assert stored["spec"]["providerID"] == "homelab://x/m1"
    assert not stored["spec"].get("unschedulable")
    assert stored["spec"]["taints"] == [{"key": "gpu", "effect": "NoSchedule"}]
    assert stored["metadata"]["labels"]["homelab.example/pool"] == "gpu"
    assert reports.messages == []


def test_a_node_write_that_keeps_failing_is_reported_for_every_effect_it_carried(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    create_kube_node(fake_api, kube_node_name(namespace, "m1"))
    fake_api.faults.fail("patch", "nodes", count=50, code=500)

    _apply(writer, batch_for(node, *MAKE_USABLE))

    failures = reports.of_type(EffectFailed)
    assert [failure.effect for failure in failures] == list(MAKE_USABLE)
    assert not any(failure.permanent for failure in failures)


def test_the_scale_from_zero_template_is_made_true_of_a_member_without_overwriting_the_kubelet(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, caplog: pytest.LogCaptureFixture
) -> None:
    # CA plans a new member from the template: a label the Node lacked would leave the pods CA scaled up for
    # pending on the machine booted for them (seen with the real CA).
    node = create_machine(fake_api, namespace, "m1")
    name = kube_node_name(namespace, "m1")
    create_kube_node(fake_api, name)
    fake_api.store.patch("v1", "nodes", name, {"metadata": {"labels": {"kubernetes.io/arch": "amd64"}}})
    spec = group_spec(template={
        "capacity": {"cpu": "4", "pods": "110"},
        "labels": {"homelab.example/disk": "ssd", "kubernetes.io/arch": "arm64"},
        "taints": [{"key": "homelab.example/loud", "effect": "PreferNoSchedule"}],
    })

    with caplog.at_level(logging.WARNING, logger="kubeapi.writer"):
        _apply(writer, batch_for(node, effects.ApplyManagedLabelsAndTaints(), spec=spec))

    stored = _kube_node(fake_api, name)
    assert stored is not None
    assert stored["metadata"]["labels"]["homelab.example/disk"] == "ssd", "a missing template label is added"
    assert stored["metadata"]["labels"]["kubernetes.io/arch"] == "amd64", "what the kubelet set is kept"
    assert {"key": "homelab.example/loud", "effect": "PreferNoSchedule"} in stored["spec"]["taints"]
    (warning,) = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert "kubernetes.io/arch=amd64" in warning
    assert "kubernetes.io/arch=arm64" in warning


def test_delete_kube_node(fake_api: FakeApiServer, namespace: str, writer: KubeWriter) -> None:
    node = create_machine(fake_api, namespace, "m1")
    name = kube_node_name(namespace, "m1")
    create_kube_node(fake_api, name)

    _apply(writer, batch_for(node, effects.DeleteKubeNode()))

    assert _kube_node(fake_api, name) is None


# -- events --------------------------------------------------------------------------------------------------


def test_events_are_recorded_on_the_machine_and_repeats_are_counted(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    boot_failed = effects.RecordEvent(effects.EventType.WARNING, "BootFailed", "not Ready within 10m")
    started = effects.RecordEvent(effects.EventType.NORMAL, "PowerOn", "startup Job m1-startup-1 created")

    _apply(writer, batch_for(node, boot_failed, started, boot_failed), batch_for(node, boot_failed))

    events = {event["reason"]: event for event in fake_api.store.list("v1", "events", namespace)}
    assert set(events) == {"BootFailed", "PowerOn"}
    failed = events["BootFailed"]
    assert failed["count"] == 3
    assert failed["type"] == "Warning"
    assert failed["message"] == "not Ready within 10m"
    assert failed["reportingComponent"] == "homelab-autoscaler"
    assert failed["involvedObject"] == {
        "apiVersion": GROUP_VERSION, "kind": "Node", "namespace": namespace, "name": "m1", "uid": node.metadata.uid,
    }
    assert failed["firstTimestamp"] <= failed["lastTimestamp"]
    assert events["PowerOn"]["count"] == 1


def test_group_events_are_recorded_on_the_group_and_repeats_are_counted(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter
) -> None:
    group = create_group(fake_api, namespace)
    uid = group["metadata"]["uid"]
    scale_up = effects.RecordEvent(effects.EventType.NORMAL, "ScaleUp", "Cluster Autoscaler asked for 1 more")
    refused = effects.RecordEvent(effects.EventType.WARNING, "IncreaseSizeRefused", "would exceed maxSize 3")

    _apply(
        writer,
        GroupEventBatch(namespace, GROUP, uid, scale_up),
        GroupEventBatch(namespace, GROUP, uid, refused),
        GroupEventBatch(namespace, GROUP, uid, refused),
    )

    events = {event["reason"]: event for event in fake_api.store.list("v1", "events", namespace)}
    assert {reason: event["count"] for reason, event in events.items()} == {"ScaleUp": 1, "IncreaseSizeRefused": 2}
    assert events["IncreaseSizeRefused"]["type"] == "Warning"
    assert events["ScaleUp"]["involvedObject"] == {
        "apiVersion": GROUP_VERSION, "kind": "Group", "namespace": namespace, "name": GROUP, "uid": uid,
    }


def test_an_expired_event_is_recorded_anew(fake_api: FakeApiServer, namespace: str, writer: KubeWriter) -> None:
    node = create_machine(fake_api, namespace, "m1")
    event = effects.RecordEvent(effects.EventType.NORMAL, "PowerOn", "startup Job created")
    _apply(writer, batch_for(node, event))
    [first] = fake_api.store.list("v1", "events", namespace)
    fake_api.store.delete("v1", "events", first["metadata"]["name"], namespace)  # events have a TTL

    _apply(writer, batch_for(node, event))

    [second] = fake_api.store.list("v1", "events", namespace)
    assert second["count"] == 1
    assert second["metadata"]["name"] != first["metadata"]["name"]


# -- ordering ------------------------------------------------------------------------------------------------


def test_each_machine_sees_its_batches_in_order_under_load(
    fake_api: FakeApiServer, namespace: str, api_client: Any, reports: Reports
) -> None:
    machines = [create_machine(fake_api, namespace, f"m{number}") for number in range(100)]
    seen: dict[str, list[int]] = defaultdict(list)
    seen_lock = threading.Lock()
    prefix = f"/apis/{GROUP_VERSION}/namespaces/{namespace}/nodes/"

    def record_status_writes(method: str, target: str, body: bytes) -> None:
        if method == "PATCH" and target.startswith(prefix):
            machine = target[len(prefix):].split("/")[0]
            attempts = json.loads(body)[0]["value"].get("attempts", 0)
            with seen_lock:
                seen[machine].append(attempts)

    fake_api.on_request.append(record_status_writes)
    writer = KubeWriter(api_client, reports, workers=4)
    port: EffectPort = writer  # what the actors hold
    try:
        for attempt in range(10):
            for node in machines:
                port.submit(batch_for(node, effects.PatchStatus(NodeStatus(attempts=attempt))))
        assert writer.wait_idle(60.0)
    finally:
        writer.stop()

    assert reports.messages == []
    assert dict(seen) == {node.metadata.name: list(range(10)) for node in machines}
    for node in machines:
        assert fake_api.store.get(GROUP_VERSION, "nodes", node.metadata.name, namespace)["status"]["attempts"] == 9


def test_effects_of_one_batch_are_applied_in_their_order(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    create_kube_node(fake_api, kube_node_name(namespace, "m1"))
    requests: list[tuple[str, str]] = []
    fake_api.on_request.append(lambda method, target, body: requests.append((method, target.split("?")[0])))

    _apply(writer, batch_for(node, effects.Cordon(), effects.CreateJob(OperationKind.SHUTDOWN, 2, "m1-shutdown-2"),
                             effects.PatchStatus(NodeStatus(state=NodeState.SHUTTING_DOWN))))

    writes = [(method, target) for method, target in requests if method != "GET"]
    assert writes == [
        ("PATCH", f"/api/v1/nodes/{kube_node_name(namespace, 'm1')}"),
        ("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs"),
        ("PATCH", f"/apis/{GROUP_VERSION}/namespaces/{namespace}/nodes/m1/status"),
    ]


# -- failures ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [pytest.param(500, id="500"), pytest.param(429, id="429"),
                                  pytest.param(503, id="503")])
def test_transient_failures_are_retried_until_done(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports, code: int
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    fake_api.faults.fail("create", "jobs", count=2, code=code, retry_after_seconds=0)
    fake_api.faults.fail("patch", "nodes/status", count=2, code=code, retry_after_seconds=0)

    _apply(writer, batch_for(node, STARTUP, effects.PatchStatus(NodeStatus(state=NodeState.STARTING_UP))))

    assert _job(fake_api, namespace, "m1-startup-1") is not None
    assert fake_api.store.get(GROUP_VERSION, "nodes", "m1", namespace)["status"]["state"] == "StartingUp"
    assert reports.messages == []


def test_writes_wait_out_an_unavailable_api_server_and_land_in_order(
    fake_api: FakeApiServer, namespace: str, api_client: Any, reports: Reports
) -> None:
    # A starting kube-apiserver answers 503 for seconds: far more failures than max_retries. The Job and the status
    # written behind it must land afterwards, in their order, without an EffectFailed (a Job that could not be
    # created during a control plane reboot is not a failed boot), and the machine's Events say so once, not per
    # failed attempt.
    node = create_machine(fake_api, namespace, "m1")
    fake_api.faults.fail("create", "jobs", count=12, code=503, retry_after_seconds=0)
    reachability = ApiReachability("https://api", settle_seconds=5.0)
    writer = KubeWriter(
        api_client, reports, max_retries=2, base_backoff=0.01, max_backoff=0.02, reachability=reachability
    )
    try:
        _apply(writer, batch_for(node, STARTUP, effects.PatchStatus(NodeStatus(state=NodeState.STARTING_UP))))
        wait_for(lambda: fake_api.store.list("v1", "events", namespace), what="the WritesDelayed Event")
        assert writer.wait_idle(5.0)
    finally:
        writer.stop()
        reachability.close()

    assert reports.of_type(EffectFailed) == []
    assert _job(fake_api, namespace, "m1-startup-1") is not None
    assert fake_api.store.get(GROUP_VERSION, "nodes", "m1", namespace)["status"]["state"] == "StartingUp"
    assert reachability.reachable
    [event] = fake_api.store.list("v1", "events", namespace)
    assert (event["reason"], event["type"], event["count"]) == ("WritesDelayed", "Normal", 1), "said once"
    assert event["involvedObject"]["name"] == "m1"
    assert re.fullmatch(
        r"1 write waited for the API server, unreachable from \S+ to \S+ UTC \(\d+\.\d s\), and was applied in order",
        event["message"],
    ), event["message"]


def test_retries_run_out_and_the_failure_is_reported_as_transient(
    fake_api: FakeApiServer, namespace: str, api_client: Any, reports: Reports
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    fake_api.faults.fail("create", "jobs", count=50, code=500)
    posts_before = fake_api.faults.count("create", "jobs")
    writer = KubeWriter(api_client, reports, max_retries=2, base_backoff=0.01, max_backoff=0.02)
    try:
        _apply(writer, batch_for(node, STARTUP, effects.PatchStatus(NodeStatus(state=NodeState.STARTING_UP))))
    finally:
        writer.stop()

    [failure] = reports.of_type(EffectFailed)
    assert failure.effect == STARTUP
    assert not failure.permanent
    assert fake_api.faults.count("create", "jobs") - posts_before == 3, "one try and two retries"
    assert fake_api.store.get(GROUP_VERSION, "nodes", "m1", namespace)["status"]["state"] == "StartingUp", (
        "a failed effect must not hold back the machine's later effects"
    )


def test_a_permanent_refusal_is_reported_at_once(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    invalid = effects.CreateJob(OperationKind.STARTUP, 1, "Not_A_Valid_Name")

    _apply(writer, batch_for(node, invalid))

    [failure] = reports.of_type(EffectFailed)
    assert failure == EffectFailed(invalid, failure.message, permanent=True)
    assert "422" in failure.message
    assert reports.addresses == [REPLY_TO]


def test_a_status_write_for_a_missing_machine_is_reported(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    fake_api.store.delete(GROUP_VERSION, "nodes", "m1", namespace)

    _apply(writer, batch_for(node, effects.PatchStatus(NodeStatus())))

    [failure] = reports.of_type(EffectFailed)
    assert failure.permanent
    assert "404" in failure.message


@pytest.mark.parametrize(
    ("break_the_write", "stored"),
    [
        pytest.param(lambda api, namespace: None, True, id="stored"),
        pytest.param(
            lambda api, namespace: api.faults.fail("patch", "nodes/status", count=2, code=503, retry_after_seconds=0),
            True, id="stored-after-retries",
        ),
        pytest.param(
            lambda api, namespace: api.store.delete(GROUP_VERSION, "nodes", "m1", namespace), False,
            id="refused-never-told",
        ),
    ],
)
def test_the_stored_notice_is_told_once_the_status_is_in_the_api(
    fake_api: FakeApiServer, namespace: str, api_client: Any, break_the_write: Any, stored: bool
) -> None:
    group_actor, notice = object(), IntentStored("m1", 3)
    told: list[tuple[object, str | None]] = []  # (message, the machine's stored state at that moment)

    def report(address: Any, message: object) -> None:
        if address is group_actor:
            listed = fake_api.store.list(GROUP_VERSION, "nodes", namespace)
            machines = {item["metadata"]["name"]: item for item in listed}
            told.append((message, machines.get("m1", {}).get("status", {}).get("state")))

    node = create_machine(fake_api, namespace, "m1")
    break_the_write(fake_api, namespace)
    writer = KubeWriter(api_client, report, base_backoff=0.01, max_backoff=0.02)
    batch = replace(
        batch_for(node, STARTUP, effects.PatchStatus(NodeStatus(state=NodeState.STARTING_UP))),
        stored_notice=StoredNotice(group_actor, notice),
    )
    try:
        _apply(writer, batch)
    finally:
        writer.stop()

    assert told == ([(notice, "StartingUp")] if stored else [])


def test_stop_logs_batches_it_never_started(
    fake_api: FakeApiServer, namespace: str, api_client: Any, reports: Reports, caplog: pytest.LogCaptureFixture
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    fake_api.faults.delay("patch", "nodes/status", seconds=0.3, count=1)
    writes_before = fake_api.faults.count("patch", "nodes/status")
    writer = KubeWriter(api_client, reports, workers=1)
    writer.submit(batch_for(node, effects.PatchStatus(NodeStatus(attempts=1))))
    writer.submit(batch_for(node, effects.PatchStatus(NodeStatus(attempts=2))))
    wait_for(lambda: fake_api.faults.count("patch", "nodes/status") > writes_before, what="the first status write")

    writer.stop(timeout=5.0)
    writer.submit(batch_for(node, effects.PatchStatus(NodeStatus(attempts=3))))

    assert fake_api.store.get(GROUP_VERSION, "nodes", "m1", namespace)["status"]["attempts"] == 1, (
        "the batch in progress finishes"
    )
    logged = caplog.text
    assert "stopped before applying [PatchStatus] for machine" in logged
    assert "is stopping: not applying [PatchStatus]" in logged


# -- pure helpers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "wanted", "merged"),
    [
        pytest.param(
            [], (Taint(key="a", effect=TaintEffect.NO_SCHEDULE),), [{"key": "a", "effect": "NoSchedule"}], id="add"
        ),
        pytest.param(
            [{"key": "a", "value": "1", "effect": "NoSchedule"}],
            (Taint(key="a", value="2", effect=TaintEffect.NO_SCHEDULE),),
            [{"key": "a", "value": "2", "effect": "NoSchedule"}],
            id="same-key-and-effect-replaced",
        ),
        pytest.param(
            [{"key": "a", "value": "1", "effect": "NoExecute"}],
            (Taint(key="a", value="2", effect=TaintEffect.NO_SCHEDULE),),
            [{"key": "a", "value": "1", "effect": "NoExecute"}, {"key": "a", "value": "2", "effect": "NoSchedule"}],
            id="other-effect-kept",
        ),
        pytest.param(
            [{"key": "a", "value": "1", "effect": "NoSchedule", "timeAdded": "2026-01-01T00:00:00Z"}],
            (Taint(key="a", value="1", effect=TaintEffect.NO_SCHEDULE),),
            [{"key": "a", "value": "1", "effect": "NoSchedule", "timeAdded": "2026-01-01T00:00:00Z"}],
            id="unchanged-left-alone",
        ),
    ],
)
def test_merge_taints(current: list[dict[str, Any]], wanted: tuple[Taint, ...], merged: list[dict[str, Any]]) -> None:
    assert merge_taints(current, wanted) == merged


def _pod(**metadata: Any) -> dict[str, Any]:
    phase = metadata.pop("phase", "Running")
    return {"metadata": {"name": "p", "namespace": "n", **metadata}, "status": {"phase": phase}}


@pytest.mark.parametrize(
    ("pod", "evict"),
    [
        pytest.param(_pod(), True, id="plain"),
        pytest.param(_pod(ownerReferences=[{"kind": "ReplicaSet", "controller": True}]), True, id="replicaset"),
        pytest.param(_pod(ownerReferences=[{"kind": "DaemonSet", "controller": True}]), False, id="daemonset"),
        pytest.param(_pod(annotations={"kubernetes.io/config.mirror": "x"}), False, id="mirror"),
        pytest.param(_pod(phase="Succeeded"), False, id="finished"),
        pytest.param(_pod(deletionTimestamp="2026-01-01T00:00:00Z"), False, id="already-leaving"),
    ],
)
def test_which_pods_a_drain_evicts(pod: dict[str, Any], evict: bool) -> None:
    assert needs_eviction(pod) is evict
