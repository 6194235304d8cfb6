"""Groups and Nodes through the fake as through a real API server: `kubectl apply` of an object the CRD's
schema or CEL rules refuse prints the real server's error and stores nothing, and an accepted object gets the
schema's defaults. The expected texts were taken from kube-apiserver 1.36 given the same manifests."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakeapi_test_support import raw_request
from kubernetes import client

from schemas import GROUP_VERSION
from schemas.crds import render_crds
from sim.fakeapi import FakeApiServer

KUBECTL = shutil.which("kubectl")
NOT_CHECKED = ("<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; "
               "correct the existing errors to complete validation")
DURATION = r"'^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$'"


@pytest.fixture(scope="module")
def crds(fake_api: FakeApiServer) -> Iterator[None]:
    for crd in render_crds():
        fake_api.store.create("apiextensions.k8s.io/v1", "customresourcedefinitions", crd)
    yield
    for crd in render_crds():
        fake_api.store.delete("apiextensions.k8s.io/v1", "customresourcedefinitions", crd["metadata"]["name"])
    fake_api.settle()


def kubectl_apply(kubeconfig: Path, tmp_path: Path, manifest: str) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(manifest))
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"),
                           "apply", "-f", str(path)], capture_output=True, text=True, timeout=30, check=False)


def group(name: str, spec: str) -> str:
    return f"apiVersion: {GROUP_VERSION}\nkind: Group\nmetadata: {{name: {name}}}\nspec: {spec}\n"


def in_namespace(manifest: str, namespace: str) -> str:
    return manifest.replace("metadata: {", f"metadata: {{namespace: {namespace}, ")


REFUSED = [
    pytest.param(group("sizes", "{minSize: 5, maxSize: 2}"),
                 'The Group "sizes" is invalid: spec.minSize: Invalid value: minSize must not be greater than maxSize',
                 id="cel-min-above-max"),
    pytest.param(group("boot", "{maxSize: 2, bootTimeout: 10 minutes}"),
                 'The Group "boot" is invalid: spec.bootTimeout: Invalid value: "10 minutes": spec.bootTimeout in '
                 f"body should match {DURATION}", id="pattern"),
    pytest.param(group("cooldown", "{maxSize: 2, failurePolicy: {cooldownBase: 1h, cooldownCap: 1m}, "
                                   "template: {capacity: {cpu: '8'}}}"),
                 'The Group "cooldown" is invalid: \n'
                 "* spec.failurePolicy.cooldownBase: Invalid value: cooldownBase must not be longer than cooldownCap\n"
                 "* spec.template.capacity: Invalid value: capacity must include pods (e.g. pods: 110): a "
                 "scale-from-zero template without pods fits no pod", id="cel-nested-rules"),
    pytest.param(group("nospec", "null"),
                 f'The Group "nospec" is invalid: \n* spec: Required value\n* {NOT_CHECKED}', id="required"),
    pytest.param(group("many", "{minSize: -1, maxSize: two, powerOffNodePolicy: Sleep}"),
                 'The Group "many" is invalid: \n'
                 '* spec.minSize: Invalid value: -1: spec.minSize in body should be greater than or equal to 0\n'
                 '* spec.maxSize: Invalid value: "string": spec.maxSize in body must be of type integer: "string"\n'
                 '* spec.powerOffNodePolicy: Unsupported value: "Sleep": supported values: "Delete", "Keep"\n'
                 f"* {NOT_CHECKED}", id="range-type-enum"),
    pytest.param(group("unknown", "{maxSize: 2, foo: 1}"),
                 'Error from server (BadRequest): error when creating "MANIFEST": Group in version "v1alpha1" cannot '
                 'be handled as a Group: strict decoding error: unknown field "spec.foo"', id="unknown-field"),
]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
@pytest.mark.parametrize(("manifest", "printed"), REFUSED)
def test_kubectl_apply_of_an_object_the_crd_refuses_prints_the_real_error_and_stores_nothing(
        fake_api: FakeApiServer, crds: None, kubeconfig: Path, tmp_path: Path, namespace: str, manifest: str,
        printed: str) -> None:
    applied = kubectl_apply(kubeconfig, tmp_path, in_namespace(manifest, namespace))

    assert applied.returncode == 1
    # The real server lists several causes in no fixed order (it walks Go maps), so the lines are compared as a set.
    expected = printed.replace("MANIFEST", str(tmp_path / "manifest.yaml")).splitlines()
    shown = applied.stderr.strip().splitlines()
    assert (shown[0], sorted(shown[1:])) == (expected[0], sorted(expected[1:]))
    assert fake_api.store.list(GROUP_VERSION, "groups", namespace) == []


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_a_group_applied_without_optional_fields_gets_the_schemas_defaults(
        fake_api: FakeApiServer, crds: None, kubeconfig: Path, tmp_path: Path, namespace: str) -> None:
    applied = kubectl_apply(kubeconfig, tmp_path, in_namespace(group("small", "{maxSize: 2}"), namespace))
    assert KUBECTL is not None
    listed = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "get", "groups", "-n", namespace],
                            capture_output=True, text=True, timeout=30, check=True).stdout

    assert applied.returncode == 0, applied.stderr
    assert listed.splitlines()[1].split()[:3] == ["small", "0", "2"]  # MIN is the default 0, not blank
    assert fake_api.store.get(GROUP_VERSION, "groups", "small", namespace)["spec"] == {
        "minSize": 0, "maxSize": 2, "bootTimeout": "10m", "shutdownTimeout": "5m", "powerOffNodePolicy": "Delete",
        "failurePolicy": {"quarantineAfter": 3, "cooldownBase": "30s", "cooldownCap": "30m", "shutdownRetries": 2},
        "powerReadback": {"transitionInterval": "5s", "steadyInterval": "5m", "powerOnGrace": "60s",
                          "powerOnRetries": 1}}


def test_an_unknown_field_without_strict_validation_is_dropped_with_a_warning(
        fake_api: FakeApiServer, crds: None, namespace: str) -> None:
    body = {"apiVersion": GROUP_VERSION, "kind": "Group", "metadata": {"name": "warned"},
            "spec": {"maxSize": 1, "colour": "red"}}

    code, headers, created = raw_request(fake_api.url, "POST", f"/apis/{GROUP_VERSION}/namespaces/{namespace}/groups",
                                         json.dumps(body), {"Content-Type": "application/json"})

    assert code == 201
    assert headers["Warning"] == '299 - "unknown field \\"spec.colour\\""'
    assert "colour" not in created["spec"]


def test_an_update_that_breaks_a_rule_is_refused_and_the_group_keeps_its_spec(
        fake_api: FakeApiServer, crds: None, api_client: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(api_client)
    fake_api.store.create(GROUP_VERSION, "groups", {"metadata": {"name": "g"}, "spec": {"maxSize": 3}}, namespace)

    with pytest.raises(client.ApiException) as refused:
        custom.patch_namespaced_custom_object("infra.homecluster.dev", "v1alpha1", namespace, "groups", "g",
                                              {"spec": {"minSize": 4}})

    assert refused.value.status == 422
    answer: dict[str, Any] = json.loads(refused.value.body or "{}")
    assert answer["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.minSize",
                                            "message": "Invalid value: minSize must not be greater than maxSize"}]
    assert fake_api.store.get(GROUP_VERSION, "groups", "g", namespace)["spec"]["minSize"] == 0


def test_status_written_by_the_operator_is_checked_against_the_status_schema(
        fake_api: FakeApiServer, crds: None, namespace: str) -> None:
    fake_api.store.create(GROUP_VERSION, "groups", {"metadata": {"name": "s"}, "spec": {"maxSize": 3}}, namespace)

    code, _, answer = raw_request(
        fake_api.url, "PATCH", f"/apis/{GROUP_VERSION}/namespaces/{namespace}/groups/s/status",
        json.dumps({"status": {"targetSize": -1}}), {"Content-Type": "application/merge-patch+json"})

    assert (code, answer["reason"]) == (422, "Invalid")
    assert answer["details"]["causes"][0]["field"] == "status.targetSize"
    assert "status" not in fake_api.store.get(GROUP_VERSION, "groups", "s", namespace)
