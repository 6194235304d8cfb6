"""Fault injection (Python API and the HTTP control endpoint), request counters and the on_request hook."""

from __future__ import annotations

import json
import threading
import time

import pytest
from fakeapi_test_support import raw_request
from kubernetes import client

from sim.fakeapi import FakeApiServer


@pytest.mark.parametrize(
    ("code", "reason", "retry_after"),
    [
        pytest.param(500, "InternalError", None, id="internal-error"),
        pytest.param(429, "TooManyRequests", "1", id="too-many-requests"),
        pytest.param(503, "ServiceUnavailable", "1", id="service-unavailable"),
    ],
)
def test_fail_the_next_matching_requests(fake_api: FakeApiServer, core: client.CoreV1Api, namespace: str,
                                         code: int, reason: str, retry_after: str | None) -> None:
    fake_api.faults.fail("create", "configmaps", count=2, code=code)
    failures = []
    for attempt in range(2):
        with pytest.raises(client.ApiException) as caught:
            core.create_namespaced_config_map(namespace, {"metadata": {"name": f"try-{attempt}"}})
        failures.append(caught.value)

    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "third"}})

    assert [(f.status, json.loads(f.body)["reason"]) for f in failures] == [(code, reason)] * 2
    assert [f.headers.get("Retry-After") for f in failures] == [retry_after] * 2
    assert created.metadata.name == "third"
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["third"]


def test_fault_matches_only_the_named_object(fake_api: FakeApiServer, core: client.CoreV1Api, namespace: str) -> None:
    for name in ("target", "bystander"):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})
    fake_api.faults.fail("patch", "configmaps", name="target", count=1)

    core.patch_namespaced_config_map("bystander", namespace, {"data": {"a": "1"}})
    with pytest.raises(client.ApiException):
        core.patch_namespaced_config_map("target", namespace, {"data": {"a": "1"}})
    core.patch_namespaced_config_map("target", namespace, {"data": {"a": "1"}})


def test_status_subresource_is_its_own_fault_target(fake_api: FakeApiServer, core: client.CoreV1Api) -> None:
    core.create_node({"metadata": {"name": "fault-node"}})
    fake_api.faults.fail("patch", "nodes/status", count=1, code=503)

    core.patch_node("fault-node", {"metadata": {"labels": {"a": "b"}}})
    with pytest.raises(client.ApiException) as caught:
        core.patch_node_status("fault-node", {"status": {"phase": "Running"}})

    assert caught.value.status == 503
    core.delete_node("fault-node")


def test_delay_holds_matching_responses(fake_api: FakeApiServer, core: client.CoreV1Api, namespace: str) -> None:
    fake_api.faults.delay("list", "configmaps", seconds=0.3, count=1)
    answered: list[str] = []

    worker = threading.Thread(target=lambda: answered.append(
        core.list_namespaced_config_map(namespace).kind or "ConfigMapList"))
    worker.start()
    worker.join(0.1)
    held_while_delayed = worker.is_alive()
    worker.join(5)

    assert held_while_delayed
    assert answered == ["ConfigMapList"]
    assert fake_api.faults.describe()["delays"] == []


def test_counters_count_requests_per_verb_and_resource(fake_api: FakeApiServer, core: client.CoreV1Api,
                                                       namespace: str) -> None:
    fake_api.faults.reset_counts()
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "counted"}})
    core.read_namespaced_config_map("counted", namespace)
    core.read_namespaced_config_map("counted", namespace)

    assert fake_api.faults.count("create", "configmaps") == 1
    assert fake_api.faults.count("get", "configmaps") == 2
    assert fake_api.faults.count("delete", "configmaps") == 0


def test_on_request_hook_sees_method_path_and_body(fake_api: FakeApiServer, batch: client.BatchV1Api,
                                                   namespace: str) -> None:
    seen: list[tuple[str, str, float]] = []

    def hook(method: str, path: str, body: bytes) -> None:
        if method == "POST" and "/jobs" in path:
            seen.append((method, path, time.monotonic()))
            assert json.loads(body)["metadata"]["name"] == "hooked"

    fake_api.on_request.append(hook)
    try:
        batch.create_namespaced_job(namespace, {"metadata": {"name": "hooked"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}})
    finally:
        fake_api.on_request.remove(hook)

    assert [(method, path) for method, path, _ in seen] == [("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs")]


def test_http_control_endpoint(fake_api: FakeApiServer, core: client.CoreV1Api, namespace: str) -> None:
    status, _, rules = raw_request(fake_api.url, "POST", "/_fake/faults", json.dumps(
        {"action": "fail", "verb": "get", "resource": "configmaps", "count": 1, "code": 500}))
    assert status == 200
    assert rules["failures"][0]["remaining"] == 1

    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_config_map("whatever", namespace)
    assert caught.value.status == 500  # the injected fault, not the 404 the object would give
    _, _, counters = raw_request(fake_api.url, "GET", "/_fake/counters")
    compacted = raw_request(fake_api.url, "POST", "/_fake/faults", '{"action": "compactHistory"}')[2]
    bad = raw_request(fake_api.url, "POST", "/_fake/faults", '{"action": "explode"}')[0]

    assert any(c["verb"] == "get" and c["resource"] == "configmaps" and c["count"] >= 1
               for c in counters["counters"])
    assert int(compacted["compactedThrough"]) == fake_api.store.resource_version
    assert bad == 400


def test_faults_are_bounded_and_clear_removes_them(fake_api: FakeApiServer) -> None:
    fake_api.faults.fail("get", "nodes", count=3)
    fake_api.faults.delay("*", "*", seconds=5, for_seconds=60)

    fake_api.faults.clear()

    assert fake_api.faults.describe() == {"failures": [], "delays": []}
    with pytest.raises(ValueError, match="code"):
        fake_api.faults.fail(code=404)
    with pytest.raises(ValueError, match="count"):
        fake_api.faults.fail(count=0)
