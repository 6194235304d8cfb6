"""Validating webhooks registered in a ValidatingWebhookConfiguration are called by the fake as by a real API
server: a denial or an unreachable webhook refuses the write with the real server's words and stores nothing,
the review describes the object as it would be stored, and selectors and failurePolicy are honoured. The
expected texts were taken from kube-apiserver 1.36 given the same configuration."""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fakeapi_test_support import raw_request

from sim.fakeapi import FakeApiServer
from webhooks.certs import create_certificate_authority, create_serving_certificate

WEBHOOKS = "admissionregistration.k8s.io/v1"
KUBECTL = shutil.which("kubectl")
# What the scripted webhook answers, by the path it is called on.
ANSWERS: dict[str, dict[str, Any]] = {
    "/deny": {"allowed": False, "warnings": ["careful: w1"], "status": {
        "code": 422, "reason": "Invalid", "message": "metadata.labels: labels must include the group",
        "details": {"causes": [{"reason": "FieldValueInvalid", "field": "metadata.labels",
                                "message": "labels must include the group"}]}}},
    "/plain": {"allowed": False},
    "/allow": {"allowed": True, "warnings": ["allowed with a warning"]},
}


class ScriptedWebhook:
    """An HTTPS webhook on loopback that answers by path and remembers every review it was sent."""

    def __init__(self, directory: Path) -> None:
        now = datetime.now(UTC)
        authority = create_certificate_authority(now)
        serving = create_serving_certificate(authority, ("hook.default.svc",), now, ip_addresses=("127.0.0.1",))
        (directory / "tls.crt").write_bytes(serving.cert_pem)
        (directory / "tls.key").write_bytes(serving.key_pem)
        self.ca_bundle = base64.b64encode(authority.cert_pem).decode()
        self.reviews: list[dict[str, Any]] = []
        reviews = self.reviews

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reviews.append(review)
                answer = {"uid": review["request"]["uid"], **ANSWERS[self.path.split("?")[0]]}
                data = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                   "response": answer}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        assert not self.thread.is_alive(), "the scripted webhook server did not stop"


@pytest.fixture(scope="module")
def hook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptedWebhook]:
    webhook = ScriptedWebhook(tmp_path_factory.mktemp("hook"))
    yield webhook
    webhook.stop()


def webhook(name: str, client_config: dict[str, Any], *, label: str, failure_policy: str = "Fail",
            namespace_selector: dict[str, Any] | None = None) -> dict[str, Any]:
    """A webhook on configmaps carrying the label ``label=yes``, so each case picks its own."""
    entry: dict[str, Any] = {
        "name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": failure_policy,
        "clientConfig": client_config, "objectSelector": {"matchLabels": {label: "yes"}},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE", "DELETE"],
                   "resources": ["configmaps"]}]}
    if namespace_selector is not None:
        entry["namespaceSelector"] = namespace_selector
    return entry


@pytest.fixture(scope="module")
def configuration(fake_api: FakeApiServer, hook: ScriptedWebhook) -> Iterator[None]:
    url = f"https://127.0.0.1:{hook.port}"
    fake_api.expose_service("default", "hook", 443, ("127.0.0.1", hook.port))
    fake_api.store.create(WEBHOOKS, "validatingwebhookconfigurations", {"metadata": {"name": "cases"}, "webhooks": [
        webhook("deny.cases.dev", {"url": f"{url}/deny", "caBundle": hook.ca_bundle}, label="deny"),
        webhook("plain.cases.dev", {"url": f"{url}/plain", "caBundle": hook.ca_bundle}, label="plain"),
        webhook("down.cases.dev", {"url": "https://127.0.0.1:1/validate", "caBundle": hook.ca_bundle}, label="down"),
        webhook("ignored.cases.dev", {"url": "https://127.0.0.1:1/validate", "caBundle": hook.ca_bundle},
                label="ignored", failure_policy="Ignore"),
        webhook("service.cases.dev", {"service": {"namespace": "default", "name": "hook", "port": 443,
                                                  "path": "/deny"}, "caBundle": hook.ca_bundle}, label="service"),
        webhook("unknown-service.cases.dev", {"service": {"namespace": "default", "name": "nowhere", "port": 443,
                                                          "path": "/deny"}, "caBundle": hook.ca_bundle},
                label="unknown-service"),
        webhook("untrusted.cases.dev", {"url": f"{url}/allow"}, label="untrusted"),
        webhook("allow.cases.dev", {"url": f"{url}/allow", "caBundle": hook.ca_bundle}, label="allow"),
        webhook("production-only.cases.dev", {"url": f"{url}/deny", "caBundle": hook.ca_bundle},
                label="production", namespace_selector={"matchLabels": {"stage": "production"}}),
    ]})
    yield
    fake_api.store.delete(WEBHOOKS, "validatingwebhookconfigurations", "cases")


DENIED = "admission webhook \"{}\" denied the request"
FAILED = ('Internal error occurred: failed calling webhook "{}": failed to call webhook: Post "{}?timeout=10s": '
          "{}")
CASES = [
    pytest.param("deny", 422, "Invalid", DENIED.format("deny.cases.dev") + ": metadata.labels: labels must include "
                 "the group", '299 - "careful: w1"', id="denied-with-the-webhooks-status"),
    pytest.param("plain", 400, None, DENIED.format("plain.cases.dev") + " without explanation", None,
                 id="denied-without-explanation"),
    pytest.param("down", 500, "InternalError", FAILED.format("down.cases.dev", "https://127.0.0.1:1/validate",
                                                             "dial tcp 127.0.0.1:1: connect: connection refused"),
                 None, id="webhook-down-fail"),
    pytest.param("service", 422, "Invalid", DENIED.format("service.cases.dev") + ": metadata.labels: labels must "
                 "include the group", '299 - "careful: w1"', id="service-on-loopback"),
    pytest.param("unknown-service", 500, "InternalError", FAILED.format(
        "unknown-service.cases.dev", "https://nowhere.default.svc:443/deny", 'service "nowhere" not found'), None,
        id="service-that-does-not-exist"),
]


@pytest.mark.parametrize(("label", "code", "reason", "message", "warning"), CASES)
def test_a_webhook_that_refuses_or_cannot_be_reached_refuses_the_write(
        fake_api: FakeApiServer, configuration: None, namespace: str, label: str, code: int, reason: str | None,
        message: str, warning: str | None) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "labels": {label: "yes"}}}

    status, headers, answer = raw_request(fake_api.url, "POST", f"/api/v1/namespaces/{namespace}/configmaps",
                                          json.dumps(body), {"Content-Type": "application/json"})

    assert (status, answer["code"], answer.get("reason"), answer["message"]) == (code, code, reason, message)
    assert headers.get("Warning") == warning
    assert fake_api.store.list("v1", "configmaps", namespace) == []


def test_an_unreachable_webhook_with_failure_policy_ignore_lets_the_write_through(
        fake_api: FakeApiServer, configuration: None, namespace: str) -> None:
    fake_api.store.create("v1", "configmaps", {"metadata": {"name": "cm"}}, namespace)
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm2", "labels": {"ignored": "yes"}}}

    status, _, _ = raw_request(fake_api.url, "POST", f"/api/v1/namespaces/{namespace}/configmaps", json.dumps(body),
                               {"Content-Type": "application/json"})

    assert status == 201


def test_a_webhook_is_trusted_only_through_its_ca_bundle(fake_api: FakeApiServer, configuration: None,
                                                         namespace: str) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "labels": {"untrusted": "yes"}}}

    status, _, answer = raw_request(fake_api.url, "POST", f"/api/v1/namespaces/{namespace}/configmaps",
                                    json.dumps(body), {"Content-Type": "application/json"})

    assert status == 500
    assert 'failed calling webhook "untrusted.cases.dev"' in answer["message"]
    assert "tls: failed to verify certificate" in answer["message"]


def test_the_review_carries_the_object_as_it_would_be_stored_and_its_old_version(
        fake_api: FakeApiServer, configuration: None, hook: ScriptedWebhook, namespace: str) -> None:
    labels = {"allow": "yes"}
    fake_api.store.create("v1", "configmaps", {"metadata": {"name": "cm", "labels": labels}, "data": {"a": "1"}},
                          namespace)
    hook.reviews.clear()

    status, headers, _ = raw_request(
        fake_api.url, "PATCH", f"/api/v1/namespaces/{namespace}/configmaps/cm", json.dumps({"data": {"a": "2"}}),
        {"Content-Type": "application/merge-patch+json"})
    deleted, _, _ = raw_request(fake_api.url, "DELETE", f"/api/v1/namespaces/{namespace}/configmaps/cm")

    assert (status, headers["Warning"], deleted) == (200, '299 - "allowed with a warning"', 200)
    update, delete = (review["request"] for review in hook.reviews)
    assert (update["operation"], update["namespace"], update["name"]) == ("UPDATE", namespace, "cm")
    assert (update["object"]["data"], update["oldObject"]["data"]) == ({"a": "2"}, {"a": "1"})
    assert update["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert (delete["operation"], delete["object"], delete["oldObject"]["data"]) == ("DELETE", None, {"a": "2"})


def test_selectors_decide_which_writes_a_webhook_sees(fake_api: FakeApiServer, configuration: None,
                                                      hook: ScriptedWebhook, namespace: str) -> None:
    hook.reviews.clear()
    unlabelled = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain-cm"}}
    elsewhere = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "staging-cm", "labels": {"production": "yes"}}}

    first, _, _ = raw_request(fake_api.url, "POST", f"/api/v1/namespaces/{namespace}/configmaps",
                              json.dumps(unlabelled), {"Content-Type": "application/json"})
    second, _, _ = raw_request(fake_api.url, "POST", f"/api/v1/namespaces/{namespace}/configmaps",
                               json.dumps(elsewhere), {"Content-Type": "application/json"})
    fake_api.store.patch("v1", "namespaces", namespace, {"metadata": {"labels": {"stage": "production"}}})
    elsewhere["metadata"]["name"] = "production-cm"
    third, _, answer = raw_request(fake_api.url, "POST", f"/api/v1/namespaces/{namespace}/configmaps",
                                   json.dumps(elsewhere), {"Content-Type": "application/json"})

    assert (first, second, third) == (201, 201, 422)
    assert answer["message"].startswith(DENIED.format("production-only.cases.dev"))
    assert len(hook.reviews) == 1


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_shows_the_webhooks_denial_and_warning(fake_api: FakeApiServer, configuration: None,
                                                       kubeconfig: Path, tmp_path: Path, namespace: str) -> None:
    assert KUBECTL is not None
    manifest = tmp_path / "cm.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": "cm", "namespace": namespace, "labels": {"deny": "yes"}}}))

    applied = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "apply", "-f", str(manifest)],
                             capture_output=True, text=True, timeout=30, check=False)

    assert applied.returncode == 1
    assert applied.stderr.splitlines() == ["Warning: careful: w1",
                                           "The request is invalid: metadata.labels: labels must include the group"]


def test_a_configuration_the_real_server_refuses_is_refused_when_registered(fake_api: FakeApiServer) -> None:
    rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}
    body = {"apiVersion": WEBHOOKS, "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "bad"},
            "webhooks": [{"name": "nodots", "clientConfig": {"url": "http://127.0.0.1:1/x"}, "rules": [rule]},
                         {"name": "a.b.c", "sideEffects": "Some", "admissionReviewVersions": ["v1beta1"],
                          "clientConfig": {}, "failurePolicy": "Maybe"}]}

    status, _, answer = raw_request(fake_api.url, "POST", f"/apis/{WEBHOOKS}/validatingwebhookconfigurations",
                                    json.dumps(body), {"Content-Type": "application/json"})

    assert (status, answer["reason"]) == (422, "Invalid")
    # The causes kube-apiserver 1.36 gives for the same configuration.
    assert sorted((c["field"], c["reason"], c["message"]) for c in answer["details"]["causes"]) == sorted([
        ("webhooks[0].name", "FieldValueInvalid",
         'Invalid value: "nodots": should be a domain with at least three segments separated by dots'),
        ("webhooks[0].sideEffects", "FieldValueRequired", "Required value: must specify one of None, NoneOnDryRun"),
        ("webhooks[0].clientConfig.url", "FieldValueInvalid",
         "Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]"),
        ("webhooks[0].admissionReviewVersions", "FieldValueRequired",
         "Required value: must specify one of v1, v1beta1"),
        ("webhooks[1].failurePolicy", "FieldValueNotSupported",
         'Unsupported value: "Maybe": supported values: "Fail", "Ignore"'),
        ("webhooks[1].sideEffects", "FieldValueNotSupported",
         'Unsupported value: "Some": supported values: "None", "NoneOnDryRun"'),
        ("webhooks[1].clientConfig", "FieldValueRequired",
         "Required value: exactly one of url or service is required"),
    ])
    assert fake_api.store.list(WEBHOOKS, "validatingwebhookconfigurations", field_selector="metadata.name=bad") == []


def test_a_registered_configuration_gets_the_real_defaults(fake_api: FakeApiServer) -> None:
    created = fake_api.store.create(WEBHOOKS, "validatingwebhookconfigurations", {
        "metadata": {"name": "defaulted"}, "webhooks": [webhook("a.b.c", {"url": "https://127.0.0.1:1/x"},
                                                                label="never")]})
    fake_api.store.delete(WEBHOOKS, "validatingwebhookconfigurations", "defaulted")

    (defaulted,) = created["webhooks"]
    assert (defaulted["matchPolicy"], defaulted["namespaceSelector"], defaulted["timeoutSeconds"]) == (
        "Equivalent", {}, 10)
    assert defaulted["rules"][0]["scope"] == "*"
