"""Conformance of object semantics, driven through the official client: system metadata, the global
resourceVersion, generation, optimistic concurrency, Status errors, namespaces and status subresources."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fakeapi_test_support import node_body, raw_request, status_of
from kubernetes import client

from sim.fakeapi import FakeApiServer


def test_create_answers_201_with_system_metadata(core: client.CoreV1Api, namespace: str) -> None:
    created, code, _ = core.create_namespaced_config_map_with_http_info(
        namespace, {"metadata": {"name": "settings"}, "data": {"a": "1"}})

    assert code == 201
    metadata = created.metadata
    uuid.UUID(metadata.uid)
    assert metadata.creation_timestamp is not None
    assert metadata.generation == 1
    assert metadata.resource_version.isdigit()
    assert metadata.namespace == namespace


def test_resource_version_is_one_global_counter_bumped_by_every_write(
        core: client.CoreV1Api, namespace: str) -> None:
    first = core.create_namespaced_config_map(namespace, {"metadata": {"name": "one"}})
    node = core.create_node(node_body(f"rv-{namespace}"))
    second = core.patch_namespaced_config_map("one", namespace, {"data": {"k": "v"}})

    versions = [int(first.metadata.resource_version), int(node.metadata.resource_version),
                int(second.metadata.resource_version)]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3
    listed = core.list_namespaced_config_map(namespace)
    assert int(listed.metadata.resource_version) >= versions[-1]
    core.delete_node(f"rv-{namespace}")


def test_a_no_op_update_keeps_the_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "same"}, "data": {"a": "1"}})
    patched = core.patch_namespaced_config_map("same", namespace, {"data": {"a": "1"}})

    assert patched.metadata.resource_version == created.metadata.resource_version


@pytest.mark.parametrize(
    ("patch", "bumps"),
    [
        pytest.param({"data": {"a": "2"}}, True, id="data-change-bumps"),
        pytest.param({"metadata": {"labels": {"x": "y"}}}, False, id="label-change-does-not"),
        pytest.param({"metadata": {"annotations": {"x": "y"}}}, False, id="annotation-change-does-not"),
    ],
)
def test_generation_of_a_resource_without_status_subresource(
        core: client.CoreV1Api, namespace: str, patch: dict[str, Any], bumps: bool) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "gen"}, "data": {"a": "1"}})
    patched = core.patch_namespaced_config_map("gen", namespace, patch)

    assert patched.metadata.generation == (2 if bumps else 1)


@pytest.mark.parametrize(
    ("through_status", "patch", "bumps"),
    [
        pytest.param(False, {"spec": {"unschedulable": True}}, True, id="spec-change-bumps"),
        pytest.param(False, {"metadata": {"labels": {"x": "y"}}}, False, id="label-change-does-not"),
        pytest.param(True, {"status": {"phase": "Running"}}, False, id="status-change-does-not"),
    ],
)
def test_generation_of_a_node(core: client.CoreV1Api, through_status: bool, patch: dict[str, Any],
                              bumps: bool) -> None:
    name = f"gen-node-{uuid.uuid4().hex[:6]}"
    core.create_node(node_body(name))
    patched = (core.patch_node_status if through_status else core.patch_node)(name, patch)

    assert patched.metadata.generation == (2 if bumps else 1)
    core.delete_node(name)


def test_update_with_a_stale_resource_version_conflicts(core: client.CoreV1Api, namespace: str) -> None:
    stale = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cas"}, "data": {"a": "1"}})
    core.patch_namespaced_config_map("cas", namespace, {"data": {"a": "2"}})
    stale.data = {"a": "3"}

    with pytest.raises(client.ApiException) as caught:
        core.replace_namespaced_config_map("cas", namespace, stale)

    assert caught.value.status == 409
    status = status_of(caught.value)
    assert status["reason"] == "Conflict"
    assert "the object has been modified" in status["message"]
    assert core.read_namespaced_config_map("cas", namespace).data == {"a": "2"}


def test_update_with_the_current_resource_version_succeeds(core: client.CoreV1Api, namespace: str) -> None:
    current = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cas"}, "data": {"a": "1"}})
    current.data = {"a": "3"}

    replaced = core.replace_namespaced_config_map("cas", namespace, current)

    assert replaced.data == {"a": "3"}
    assert int(replaced.metadata.resource_version) > int(current.metadata.resource_version)


def test_patch_carrying_a_stale_resource_version_conflicts(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cas"}})
    core.patch_namespaced_config_map("cas", namespace, {"data": {"a": "2"}})

    with pytest.raises(client.ApiException) as caught:
        core.patch_namespaced_config_map("cas", namespace, {
            "metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"a": "3"}})

    assert caught.value.status == 409


def test_creating_an_existing_name_is_already_exists(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "twice"}})

    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "twice"}})

    status = status_of(caught.value)
    assert (caught.value.status, status["reason"]) == (409, "AlreadyExists")
    assert status["message"] == 'configmaps "twice" already exists'


@pytest.mark.parametrize(
    ("call", "message", "details"),
    [
        pytest.param(lambda api, ns: api.core.read_namespaced_config_map("missing", ns),
                     'configmaps "missing" not found', {"name": "missing", "kind": "configmaps"}, id="core"),
        pytest.param(lambda api, ns: api.batch.read_namespaced_job("missing", ns),
                     'jobs.batch "missing" not found', {"name": "missing", "group": "batch", "kind": "jobs"},
                     id="grouped"),
    ],
)
def test_missing_objects_are_not_found_with_a_real_status(
        core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str, call: Any, message: str,
        details: dict[str, str]) -> None:
    apis = type("Apis", (), {"core": core, "batch": batch})

    with pytest.raises(client.ApiException) as caught:
        call(apis, namespace)

    assert caught.value.status == 404
    assert status_of(caught.value) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                       "message": message, "reason": "NotFound", "details": details, "code": 404}


def test_namespaced_objects_need_their_namespace(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_config_map("nowhere", {"metadata": {"name": "x"}})

    assert caught.value.status == 404
    assert status_of(caught.value)["message"] == 'namespaces "nowhere" not found'


def test_generate_name_gives_unique_names(core: client.CoreV1Api, namespace: str) -> None:
    names = {core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "job-"}}).metadata.name
             for _ in range(5)}

    assert len(names) == 5
    assert all(name.startswith("job-") and len(name) == len("job-") + 5 for name in names)


def test_list_is_a_list_kind_with_a_resource_version(fake_api: FakeApiServer, namespace: str) -> None:
    status, _, body = raw_request(fake_api.url, "GET", f"/api/v1/namespaces/{namespace}/configmaps")

    assert status == 200
    assert body["kind"] == "ConfigMapList"
    assert body["apiVersion"] == "v1"
    assert body["metadata"]["resourceVersion"].isdigit()


def test_pagination_walks_every_object_once(core: client.CoreV1Api, namespace: str) -> None:
    for index in range(7):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"page-{index}"}})

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(namespace, limit=3, _continue=token)
        pages += 1
        seen.extend(item.metadata.name for item in page.items)
        token = page.metadata._continue
        if not token:
            break

    assert pages == 3
    assert seen == [f"page-{index}" for index in range(7)]


def test_status_subresource_changes_only_status(core: client.CoreV1Api) -> None:
    name = f"status-{uuid.uuid4().hex[:6]}"
    core.create_node(node_body(name, unschedulable=False))

    through_status = core.patch_node_status(name, {"spec": {"unschedulable": True},
                                                   "status": {"phase": "Running"}})
    through_main = core.patch_node(name, {"status": {"phase": "Terminated"}})

    assert through_status.spec.unschedulable is False
    assert through_status.status.phase == "Running"
    assert through_main.status.phase == "Running"
    core.delete_node(name)


def test_node_keeps_status_given_on_create_but_job_and_pod_do_not(
        core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str) -> None:
    node = core.create_node({**node_body(f"keep-{namespace}"), "status": {"phase": "Running"}})
    job = batch.create_namespaced_job(namespace, {
        "metadata": {"name": "job"}, "status": {"active": 3},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "c", "image": "busybox"}]}}}})
    pod = core.create_namespaced_pod(namespace, {
        "metadata": {"name": "pod"}, "status": {"phase": "Running"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})

    assert node.status.phase == "Running"
    assert job.status is None or job.status.active is None
    assert pod.status.phase == "Pending"
    core.delete_node(f"keep-{namespace}")


def test_node_provider_id_can_be_set_once_then_never_changes(core: client.CoreV1Api) -> None:
    name = f"provider-{uuid.uuid4().hex[:6]}"
    core.create_node(node_body(name))

    assert core.patch_node(name, {"spec": {"providerID": "homelab://a"}}).spec.provider_id == "homelab://a"
    with pytest.raises(client.ApiException) as caught:
        core.patch_node(name, {"spec": {"providerID": "homelab://b"}})

    status = status_of(caught.value)
    assert (caught.value.status, status["reason"]) == (422, "Invalid")
    assert "spec.providerID" in status["message"]
    assert status["details"]["causes"][0]["field"] == "spec.providerID"
    core.delete_node(name)


def test_job_without_restart_policy_is_invalid(batch: client.BatchV1Api, namespace: str) -> None:
    with pytest.raises(client.ApiException) as caught:
        batch.create_namespaced_job(namespace, {"metadata": {"name": "j"}, "spec": {
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})

    assert caught.value.status == 422
    assert "spec.template.spec.restartPolicy" in status_of(caught.value)["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "code", "reason"),
    [
        pytest.param("POST", "/api/v1/namespaces/{ns}/configmaps", "{not json", {}, 400, "BadRequest",
                     id="malformed-json"),
        pytest.param("GET", "/api/v1/namespaces/{ns}/gizmos", None, {}, 404, "NotFound", id="unknown-resource"),
        pytest.param("GET", "/apis/nothing.dev/v1/things", None, {}, 404, "NotFound", id="unknown-group"),
        pytest.param("POST", "/api/v1/namespaces/{ns}/configmaps", '{"apiVersion": "v1", "kind": "Secret", '
                     '"metadata": {"name": "x"}}', {}, 400, "BadRequest", id="wrong-kind"),
        pytest.param("POST", "/api/v1/namespaces/{ns}/configmaps", '{"apiVersion": "v2", "kind": "ConfigMap", '
                     '"metadata": {"name": "x"}}', {}, 400, "BadRequest", id="wrong-api-version"),
        pytest.param("PUT", "/api/v1/namespaces/{ns}/configmaps/base", '{"metadata": {"name": "other"}}', {},
                     400, "BadRequest", id="name-mismatch-on-put"),
        pytest.param("PATCH", "/api/v1/namespaces/{ns}/configmaps/base", "{oops",
                     {"Content-Type": "application/merge-patch+json"}, 400, "BadRequest", id="malformed-patch"),
        pytest.param("PATCH", "/api/v1/namespaces/{ns}/configmaps/base", '{"op": "add"}',
                     {"Content-Type": "application/json-patch+json"}, 400, "BadRequest",
                     id="json-patch-not-a-list"),
        pytest.param("PATCH", "/api/v1/namespaces/{ns}/configmaps/base",
                     '[{"op": "remove", "path": "/data/absent"}]',
                     {"Content-Type": "application/json-patch+json"}, 422, "Invalid", id="json-patch-not-applicable"),
        pytest.param("PATCH", "/api/v1/namespaces/{ns}/configmaps/base", "{}",
                     {"Content-Type": "application/apply-patch+yaml"}, 415, "UnsupportedMediaType",
                     id="server-side-apply"),
        pytest.param("POST", "/api/v1/namespaces/{ns}/configmaps/base", "{}", {}, 405, "MethodNotAllowed",
                     id="post-to-an-object"),
        pytest.param("PUT", "/api/v1/namespaces/{ns}/configmaps", "{}", {}, 405, "MethodNotAllowed",
                     id="put-to-a-collection"),
        pytest.param("POST", "/api/v1/configmaps", "{}", {}, 405, "MethodNotAllowed",
                     id="create-across-namespaces"),
        pytest.param("GET", "/api/v1/namespaces/{ns}/configmaps?labelSelector=a%20in%20(", None, {}, 400,
                     "BadRequest", id="bad-label-selector"),
        pytest.param("GET", "/api/v1/namespaces/{ns}/configmaps?fieldSelector=data.a%3Db", None, {}, 400,
                     "BadRequest", id="unsupported-field-selector"),
    ],
)
def test_bad_requests_answer_the_real_status(
        fake_api: FakeApiServer, core: client.CoreV1Api, namespace: str, method: str, path: str,
        body: str | None, headers: dict[str, str], code: int, reason: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "base"}, "data": {"a": "1"}})

    status, _, answer = raw_request(fake_api.url, method, path.format(ns=namespace), body, headers)

    assert status == code
    assert (answer["kind"], answer["status"], answer["reason"], answer["code"]) == (
        "Status", "Failure", reason, code)


def test_custom_resources_refuse_strategic_merge_patch(
        fake_api: FakeApiServer, custom: client.CustomObjectsApi, widgets: str, namespace: str) -> None:
    custom.create_namespaced_custom_object("example.dev", "v1", namespace, widgets, {
        "apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"color": "red"}})

    status, _, answer = raw_request(
        fake_api.url, "PATCH", f"/apis/example.dev/v1/namespaces/{namespace}/widgets/w", '{"spec": {}}',
        {"Content-Type": "application/strategic-merge-patch+json"})

    assert (status, answer["reason"]) == (415, "UnsupportedMediaType")


# A body in a media type the server does not decode, or protobuf it cannot read in full, is refused whole.
PROTOBUF_NAMESPACE_WITH_AN_UNKNOWN_FIELD = (
    b"k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x0b\n\x05\n\x03pbx\xfa\x01\x01z")
UNDECODED_BODIES = [
    pytest.param("application/x-www-form-urlencoded", b"name=x", 415, "UnsupportedMediaType", id="form"),
    pytest.param("application/cbor", b"\xa0", 415, "UnsupportedMediaType", id="cbor"),
    pytest.param("application/vnd.kubernetes.protobuf", PROTOBUF_NAMESPACE_WITH_AN_UNKNOWN_FIELD, 415,
                 "UnsupportedMediaType", id="protobuf-field-not-understood"),
    pytest.param("application/vnd.kubernetes.protobuf", b'{"metadata": {"name": "pbx"}}', 400, "BadRequest",
                 id="protobuf-without-envelope"),
]


@pytest.mark.parametrize(("content_type", "body", "code", "reason"), UNDECODED_BODIES)
def test_a_body_the_server_cannot_decode_is_refused_and_nothing_is_created(
        fake_api: FakeApiServer, content_type: str, body: bytes, code: int, reason: str) -> None:
    status, _, answer = raw_request(fake_api.url, "POST", "/api/v1/namespaces", body,
                                    {"Content-Type": content_type})

    assert (status, answer["kind"], answer["reason"]) == (code, "Status", reason)
    assert fake_api.store.list("v1", "namespaces", field_selector="metadata.name=pbx") == []


def test_a_body_that_is_not_json_is_refused_in_the_real_servers_words(fake_api: FakeApiServer,
                                                                      namespace: str) -> None:
    body = '{"metadata": {"name": "x"}, '

    status, _, answer = raw_request(fake_api.url, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body,
                                    {"Content-Type": "application/json"})

    assert (status, answer["reason"]) == (400, "BadRequest")
    assert answer["message"].startswith("the object provided is unrecognized (must be of type ConfigMap): couldn't "
                                        "get version/kind; json parse error: ")
    assert answer["message"].endswith(' ({"metadata": {"name": "x"}, )')
    assert fake_api.store.list("v1", "configmaps", namespace) == []
