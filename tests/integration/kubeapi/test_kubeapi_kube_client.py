"""The client door: a client built from a kubeconfig works, and every failure arrives as our error type."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import urllib3
from kubernetes import client as kube

from actors.errors import OperatorError
from kubeapi.kube_client import (
    KubeAlreadyExists,
    KubeApi,
    KubeConflict,
    KubeError,
    KubeNotFound,
    KubePermanent,
    KubeTransient,
    new_api_client,
    translate,
)
from sim.fakeapi import FakeApiServer


def test_a_client_from_a_kubeconfig_reaches_the_server(fake_api: FakeApiServer, tmp_path: Path) -> None:
    kubeconfig = fake_api.write_kubeconfig(tmp_path / "config")
    with new_api_client(kubeconfig) as api_client:
        version = KubeApi(api_client).get("/version")
    assert version["major"]


def _config_map(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}}


@pytest.mark.parametrize(
    ("fault_code", "expected"),
    [
        pytest.param(500, KubeTransient, id="500-transient"),
        pytest.param(429, KubeTransient, id="429-transient"),
        pytest.param(503, KubeTransient, id="503-transient"),
    ],
)
def test_server_failures_are_transient(
    fake_api: FakeApiServer, namespace: str, api_client: kube.ApiClient, fault_code: int, expected: type[KubeError]
) -> None:
    fake_api.faults.fail("create", "configmaps", code=fault_code, retry_after_seconds=0)
    with pytest.raises(expected) as raised:
        KubeApi(api_client).post(f"/api/v1/namespaces/{namespace}/configmaps", _config_map("c"))
    assert raised.value.status == fault_code
    assert isinstance(raised.value, OperatorError)


@pytest.mark.parametrize(
    ("fault_code", "requests", "answered"),
    [
        # A starting kube-apiserver answers 503 with Retry-After: 5. Sleeping through it inside urllib3 held a
        # relist (and could hold a Lease renewal) for five seconds after the server was back; our callers wait
        # for the server's return instead.
        pytest.param(503, 1, False, id="503-left-to-us"),
        # Throttling (API Priority and Fairness) is still waited out where urllib3 may retry (GET, PUT, DELETE).
        pytest.param(429, 2, True, id="429-retried-by-urllib3"),
    ],
)
def test_the_client_leaves_a_503_to_the_caller_but_waits_out_throttling(
    fake_api: FakeApiServer, tmp_path: Path, fault_code: int, requests: int, answered: bool
) -> None:
    fake_api.faults.fail("get", "namespaces", name="default", code=fault_code, retry_after_seconds=1)
    before = fake_api.faults.count("get", "namespaces")
    with new_api_client(fake_api.write_kubeconfig(tmp_path / "config")) as api_client:
        try:
            KubeApi(api_client).get("/api/v1/namespaces/default")
            outcome = "answered"
        except KubeTransient as error:
            outcome = f"HTTP {error.status}"
    expected = "answered" if answered else f"HTTP {fault_code}"
    assert (fake_api.faults.count("get", "namespaces") - before, outcome) == (requests, expected)


def test_refusals_map_to_their_error_types(
    fake_api: FakeApiServer, namespace: str, api_client: kube.ApiClient
) -> None:
    api = KubeApi(api_client)
    collection = f"/api/v1/namespaces/{namespace}/configmaps"
    created = api.post(collection, _config_map("c"))

    with pytest.raises(KubeNotFound) as missing:
        api.get(f"{collection}/absent")
    assert missing.value.details_name == "absent"

    with pytest.raises(KubeAlreadyExists):
        api.post(collection, _config_map("c"))

    api.put(f"{collection}/c", {**created, "data": {"a": "2"}})
    with pytest.raises(KubeConflict) as stale:
        api.put(f"{collection}/c", {**created, "data": {"a": "3"}})  # the resourceVersion we hold is old now
    assert not isinstance(stale.value, KubeAlreadyExists)

    with pytest.raises(KubePermanent) as invalid:
        api.post(collection, _config_map("Not_Valid"))
    assert invalid.value.status == 422
    assert invalid.value.reason == "Invalid"

    with pytest.raises(KubeNotFound) as unserved:
        api.get("/apis/example.dev/v1/nothing-here")
    assert unserved.value.details_name == "", "a missing resource names no object"


def test_an_unreachable_server_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configuration = kube.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.retries = False
    with kube.ApiClient(configuration) as api_client, pytest.raises(KubeTransient) as raised:
        KubeApi(api_client).get("/version")
    assert raised.value.status == 0
    assert isinstance(raised.value.__cause__, urllib3.exceptions.HTTPError)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(kube.ApiException(status=404, reason="Not Found"), KubeNotFound, id="404"),
        pytest.param(kube.ApiException(status=409, reason="Conflict"), KubeConflict, id="409"),
        pytest.param(
            kube.ApiException(status=409, reason="Conflict", body='{"reason": "AlreadyExists"}'),
            KubeAlreadyExists,
            id="409-already-exists",
        ),
        pytest.param(kube.ApiException(status=410, reason="Gone"), KubePermanent, id="410"),
        pytest.param(kube.ApiException(status=403, reason="Forbidden"), KubePermanent, id="403"),
        pytest.param(kube.ApiException(status=422, reason="Invalid"), KubePermanent, id="422"),
        pytest.param(kube.ApiException(status=429, reason="Too Many Requests"), KubeTransient, id="429"),
        pytest.param(kube.ApiException(status=502, reason="Bad Gateway"), KubeTransient, id="502"),
        pytest.param(kube.ApiException(status=0, reason="SSL failure"), KubeTransient, id="no-status"),
        pytest.param(urllib3.exceptions.ProtocolError("connection broken"), KubeTransient, id="broken-connection"),
        pytest.param(TimeoutError("timed out"), KubeTransient, id="timeout"),
        pytest.param(ConnectionResetError("reset by peer"), KubeTransient, id="reset"),
        pytest.param(ValueError("unexpected"), KubePermanent, id="anything-else"),
    ],
)
def test_translate(error: BaseException, expected: type[KubeError]) -> None:
    translated = translate(error, "get thing")
    assert type(translated) is expected
    assert translated.message.startswith("get thing")


def _pool() -> urllib3.HTTPSConnectionPool:
    return urllib3.HTTPSConnectionPool("192.168.1.10", 6443)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        pytest.param(
            urllib3.exceptions.NameResolutionError(
                "k8s.lan", urllib3.connection.HTTPSConnection("k8s.lan"), socket.gaierror(-2, "Name not known")
            ),
            "list Group resources: cannot reach the API server https://192.168.1.10:6443: its host name does not "
            "resolve",
            id="dns",
        ),
        pytest.param(
            urllib3.exceptions.ReadTimeoutError(_pool(), "/apis", "Read timed out. (read timeout=30.0)"),
            "list Group resources: no answer from the API server https://192.168.1.10:6443: Read timed out. "
            "(read timeout=30.0)",
            id="read-timeout",
        ),
    ],
)
def test_a_server_without_an_answer_is_one_line_naming_it(reason: Exception, expected: str) -> None:
    error = translate(urllib3.exceptions.MaxRetryError(_pool(), "/apis", reason), "list Group resources")

    assert isinstance(error, KubeTransient)
    assert str(error) == expected
    assert "\n" not in str(error)
