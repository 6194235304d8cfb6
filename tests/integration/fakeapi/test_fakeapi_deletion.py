"""Deletion semantics: finalizers, propagation policies and owner-reference garbage collection, namespace
cleanup and deletecollection, driven through the official client."""

from __future__ import annotations

from typing import Any

import pytest
from fakeapi_test_support import raw_request
from kubernetes import client

from sim.fakeapi import FakeApiServer
from tests.support.polling import wait_for


def _exists(call: Any) -> bool:
    try:
        call()
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def _owned_config_maps(core: client.CoreV1Api, namespace: str, owner_uid: str, count: int = 2) -> None:
    for index in range(count):
        core.create_namespaced_config_map(namespace, {"metadata": {
            "name": f"child-{index}", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid,
                 "blockOwnerDeletion": True}]}})


def test_finalizers_hold_a_deleted_object_until_they_are_removed(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "held", "finalizers": ["example.dev/x"]}})

    deleted = core.delete_namespaced_config_map("held", namespace)
    still_there = core.read_namespaced_config_map("held", namespace)

    assert deleted["metadata"]["deletionTimestamp"] == still_there.metadata.deletion_timestamp.strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert still_there.metadata.deletion_grace_period_seconds == 0
    with pytest.raises(client.ApiException) as caught:
        core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": ["example.dev/x",
                                                                                         "example.dev/y"]}})
    assert caught.value.status == 422

    core.patch_namespaced_config_map("held", namespace, [{"op": "remove", "path": "/metadata/finalizers"}])
    assert not _exists(lambda: core.read_namespaced_config_map("held", namespace))


def test_delete_returns_the_last_version(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "gone"}, "data": {"a": "1"}})

    deleted = core.delete_namespaced_config_map("gone", namespace)

    assert deleted["data"] == {"a": "1"}
    assert int(deleted["metadata"]["resourceVersion"]) > int(created.metadata.resource_version)


def test_background_propagation_deletes_dependents_after_the_owner(
        fake_api: FakeApiServer, core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    _owned_config_maps(core, namespace, owner.metadata.uid)

    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    assert not _exists(lambda: core.read_namespaced_config_map("owner", namespace))
    wait_for(lambda: not core.list_namespaced_config_map(namespace).items)


def test_orphan_propagation_strips_owner_references(
        fake_api: FakeApiServer, core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    _owned_config_maps(core, namespace, owner.metadata.uid)

    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Orphan")

    wait_for(lambda: not _exists(lambda: core.read_namespaced_config_map("owner", namespace)))
    children = core.list_namespaced_config_map(namespace).items
    assert [(c.metadata.name, c.metadata.owner_references) for c in children] == [("child-0", None),
                                                                                  ("child-1", None)]


def test_foreground_propagation_keeps_the_owner_until_dependents_are_gone(
        fake_api: FakeApiServer, core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    _owned_config_maps(core, namespace, owner.metadata.uid, count=1)
    core.patch_namespaced_config_map("child-0", namespace, {"metadata": {"finalizers": ["example.dev/hold"]}})

    deleted = core.delete_namespaced_config_map("owner", namespace, propagation_policy="Foreground")
    assert deleted["metadata"]["finalizers"] == ["foregroundDeletion"]
    fake_api.settle()
    assert core.read_namespaced_config_map("owner", namespace).metadata.deletion_timestamp is not None
    assert core.read_namespaced_config_map("child-0", namespace).metadata.deletion_timestamp is not None

    core.patch_namespaced_config_map("child-0", namespace, [{"op": "remove", "path": "/metadata/finalizers"}])

    wait_for(lambda: not core.list_namespaced_config_map(namespace).items)


def _job(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "power", "image": "busybox"}]}}}}


def _job_pod(job: Any) -> dict[str, Any]:
    return {"metadata": {"name": f"{job.metadata.name}-pod", "ownerReferences": [
        {"apiVersion": "batch/v1", "kind": "Job", "name": job.metadata.name, "uid": job.metadata.uid,
         "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"containers": [{"name": "power", "image": "busybox"}]}}


def test_jobs_orphan_their_pods_by_default_and_warn(
        fake_api: FakeApiServer, batch: client.BatchV1Api, core: client.CoreV1Api, namespace: str) -> None:
    job = batch.create_namespaced_job(namespace, _job("power-on"))
    core.create_namespaced_pod(namespace, _job_pod(job))

    _, _, headers = batch.delete_namespaced_job_with_http_info("power-on", namespace)

    assert "child pods are preserved" in headers["Warning"]
    wait_for(lambda: not batch.list_namespaced_job(namespace).items)
    pods = core.list_namespaced_pod(namespace).items
    assert [(p.metadata.name, p.metadata.owner_references) for p in pods] == [("power-on-pod", None)]


def test_jobs_deleted_in_background_take_their_pods(
        batch: client.BatchV1Api, core: client.CoreV1Api, namespace: str) -> None:
    job = batch.create_namespaced_job(namespace, _job("power-off"))
    core.create_namespaced_pod(namespace, _job_pod(job))

    batch.delete_namespaced_job("power-off", namespace, propagation_policy="Background")

    wait_for(lambda: not core.list_namespaced_pod(namespace).items)


def test_job_defaults_match_the_real_server(batch: client.BatchV1Api, namespace: str) -> None:
    job = batch.create_namespaced_job(namespace, _job("defaults"))

    assert (job.spec.backoff_limit, job.spec.completions, job.spec.parallelism) == (6, 1, 1)
    assert job.spec.template.metadata.labels["job-name"] == "defaults"
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": job.metadata.uid}


def test_an_object_whose_owner_does_not_exist_is_collected(core: client.CoreV1Api, namespace: str) -> None:
    _owned_config_maps(core, namespace, "00000000-0000-0000-0000-000000000000", count=1)

    wait_for(lambda: not core.list_namespaced_config_map(namespace).items)


def test_delete_collection_honours_the_label_selector(core: client.CoreV1Api, namespace: str) -> None:
    for name, labels in (("keep", {"app": "other"}), ("drop-1", {"app": "x"}), ("drop-2", {"app": "x"})):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": labels}})

    core.delete_collection_namespaced_config_map(namespace, label_selector="app=x")

    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["keep"]


def test_deleting_a_namespace_deletes_its_contents(fake_api: FakeApiServer, core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "inside"}})

    core.delete_namespace("doomed")

    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "late"}})
    assert caught.value.status in (403, 404)
    wait_for(lambda: not _exists(lambda: core.read_namespace("doomed")))
    assert fake_api.store.list("v1", "configmaps", "doomed") == []


def test_precondition_on_uid_is_enforced(fake_api: FakeApiServer, core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}})

    status, _, answer = raw_request(fake_api.url, "DELETE", f"/api/v1/namespaces/{namespace}/configmaps/cm",
                                    '{"preconditions": {"uid": "not-the-uid"}}')

    assert (status, answer["reason"]) == (409, "Conflict")
    assert _exists(lambda: core.read_namespaced_config_map("cm", namespace))
