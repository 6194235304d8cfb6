"""Selectors on list, and the three PATCH dialects, driven through the official client."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fakeapi_test_support import node_body, status_of
from kubernetes import client

LABELLED = {
    "a": {"tier": "web", "env": "prod"},
    "b": {"tier": "db", "env": "prod"},
    "c": {"tier": "web"},
    "d": {},
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param("tier=web", ["a", "c"], id="equals"),
        pytest.param("tier==web", ["a", "c"], id="double-equals"),
        pytest.param("tier!=web", ["b", "d"], id="not-equals-includes-unlabelled"),
        pytest.param("tier in (web,db)", ["a", "b", "c"], id="in"),
        pytest.param("tier notin (web)", ["b", "d"], id="notin-includes-unlabelled"),
        pytest.param("env", ["a", "b"], id="exists"),
        pytest.param("!env", ["c", "d"], id="does-not-exist"),
        pytest.param("tier=web,env=prod", ["a"], id="and"),
        pytest.param("", ["a", "b", "c", "d"], id="empty-matches-all"),
    ],
)
def test_label_selectors(core: client.CoreV1Api, namespace: str, selector: str, expected: list[str]) -> None:
    for name, labels in LABELLED.items():
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": labels}})

    listed = core.list_namespaced_config_map(namespace, label_selector=selector)

    assert [item.metadata.name for item in listed.items] == expected


def _pod(name: str, node: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param("metadata.name=p1", ["p1"], id="name"),
        pytest.param("spec.nodeName=n2", ["p2"], id="node-name"),
        pytest.param("spec.nodeName!=n2", ["p1", "p3"], id="node-name-not"),
        pytest.param("status.phase=Pending", ["p1", "p2", "p3"], id="phase"),
        pytest.param("status.phase=Running", [], id="phase-none"),
    ],
)
def test_pod_field_selectors(core: client.CoreV1Api, namespace: str, selector: str, expected: list[str]) -> None:
    for name, node in (("p1", "n1"), ("p2", "n2"), ("p3", "n3")):
        core.create_namespaced_pod(namespace, _pod(name, node))

    listed = core.list_namespaced_pod(namespace, field_selector=selector)

    assert [item.metadata.name for item in listed.items] == expected


def test_field_selectors_on_namespace_and_event_subject(core: client.CoreV1Api, namespace: str) -> None:
    for name, subject in (("e1", "node-a"), ("e2", "node-b")):
        core.create_namespaced_event(namespace, {"metadata": {"name": name}, "reason": "Test",
                                                 "involvedObject": {"kind": "Node", "name": subject}})

    by_subject = core.list_event_for_all_namespaces(field_selector="involvedObject.name=node-b")
    by_namespace = core.list_event_for_all_namespaces(field_selector=f"metadata.namespace={namespace}")

    assert [item.metadata.name for item in by_subject.items] == ["e2"]
    assert [item.metadata.name for item in by_namespace.items] == ["e1", "e2"]


def _node_with_everything(name: str) -> dict[str, Any]:
    body = node_body(name, taints=[{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoSchedule"}])
    body["status"] = {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure",
                                                                            "status": "False"}]}
    return body


def test_strategic_merge_merges_conditions_by_type(core: client.CoreV1Api) -> None:
    name = f"smp-{uuid.uuid4().hex[:6]}"
    core.create_node(_node_with_everything(name))

    patched = core.patch_node_status(name, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})

    assert [(c.type, c.status) for c in patched.status.conditions] == [("Ready", "True"), ("DiskPressure", "False")]
    core.delete_node(name)


def test_strategic_merge_replaces_taints_because_they_are_atomic(core: client.CoreV1Api) -> None:
    name = f"smp-{uuid.uuid4().hex[:6]}"
    core.create_node(_node_with_everything(name))

    patched = core.patch_node(name, {"spec": {"taints": [{"key": "c", "effect": "NoExecute"}]}})

    assert [t.key for t in patched.spec.taints] == ["c"]
    core.delete_node(name)


def test_strategic_merge_keys_owner_references_by_uid_and_containers_by_name(
        batch: client.BatchV1Api, core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    other = core.create_namespaced_config_map(namespace, {"metadata": {"name": "other"}})
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    batch.create_namespaced_job(namespace, {
        "metadata": {"name": "j", "ownerReferences": [reference]},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "old", "args": ["x"]}, {"name": "side", "image": "side"}]}}}})

    patched = batch.patch_namespaced_job("j", namespace, {
        "metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "other",
                                          "uid": other.metadata.uid}]},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "new"}]}}}})

    assert [ref.name for ref in patched.metadata.owner_references] == ["owner", "other"]
    containers = patched.spec.template.spec.containers
    assert [(c.name, c.image, c.args) for c in containers] == [("main", "new", ["x"]), ("side", "side", None)]


def test_strategic_merge_delete_directive_removes_a_list_item(core: client.CoreV1Api) -> None:
    name = f"smp-{uuid.uuid4().hex[:6]}"
    core.create_node(_node_with_everything(name))

    patched = core.patch_node_status(name, {"status": {"conditions": [{"type": "Ready", "$patch": "delete"}]}})

    assert [c.type for c in patched.status.conditions] == ["DiskPressure"]
    core.delete_node(name)


def test_merge_patch_null_deletes_and_lists_replace(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "m", "labels": {"a": "1", "b": "2"}},
                                                  "data": {"x": "1"}})

    patched = core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"a": None}}},
                                               _content_type="application/merge-patch+json")

    assert patched.metadata.labels == {"b": "2"}


def test_json_patch_with_a_passing_test_applies(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "j"}, "data": {"x": "1"}})

    patched = core.patch_namespaced_config_map("j", namespace, [
        {"op": "test", "path": "/data/x", "value": "1"},
        {"op": "add", "path": "/data/y", "value": "2"},
        {"op": "move", "from": "/data/x", "path": "/data/z"},
    ])

    assert patched.data == {"y": "2", "z": "1"}


def test_json_patch_with_a_failing_test_changes_nothing(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "j"}, "data": {"x": "1"}})

    with pytest.raises(client.ApiException) as caught:
        core.patch_namespaced_config_map("j", namespace, [
            {"op": "replace", "path": "/data/x", "value": "2"},
            {"op": "test", "path": "/data/x", "value": "1"},
        ])

    assert (caught.value.status, status_of(caught.value)["reason"]) == (422, "Invalid")
    assert core.read_namespaced_config_map("j", namespace).data == {"x": "1"}
