"""kubectl 1.32 against the fake through the kubeconfig it writes: the commands a person uses to look at
and poke the operator's objects. Skipped where kubectl is not installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fakeapi_test_support import WIDGET_CRD

from sim.fakeapi import FakeApiServer

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    def run(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        command = [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"), *arguments]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=check)
    return run


def test_create_get_label_patch_delete_a_node(fake_api: FakeApiServer, kubectl: Kubectl, tmp_path: Path) -> None:
    manifest = tmp_path / "node.yaml"
    manifest.write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Node
        metadata:
          name: kubectl-node
          labels: {role: worker}
        """))

    assert "created" in kubectl("create", "-f", str(manifest)).stdout
    table = kubectl("get", "nodes").stdout
    kubectl("label", "node", "kubectl-node", "homelab.dev/group=rack")
    kubectl("patch", "node", "kubectl-node", "-p", '{"spec": {"unschedulable": true}}')
    as_json = json.loads(kubectl("get", "nodes", "-o", "json").stdout)
    deleted = kubectl("delete", "node", "kubectl-node").stdout

    assert table.splitlines()[0].split()[:2] == ["NAME", "STATUS"]
    assert "kubectl-node" in table
    node = next(item for item in as_json["items"] if item["metadata"]["name"] == "kubectl-node")
    assert node["metadata"]["labels"] == {"role": "worker", "homelab.dev/group": "rack"}
    assert node["spec"]["unschedulable"] is True
    assert 'node "kubectl-node" deleted' in deleted
    assert fake_api.store.list("v1", "nodes", field_selector="metadata.name=kubectl-node") == []


def test_get_custom_resources_by_plural_and_short_name(fake_api: FakeApiServer, widgets: str, kubectl: Kubectl,
                                                       namespace: str) -> None:
    fake_api.store.create("example.dev/v1", "widgets", {"metadata": {"name": "w1"}, "spec": {"color": "red"}},
                          namespace)

    by_plural = kubectl("get", widgets, "-n", namespace).stdout
    by_short_name = kubectl("get", "wd", "w1", "-n", namespace, "-o", "json").stdout
    merge_patched = kubectl("patch", "wd", "w1", "-n", namespace, "--type", "merge", "-p",
                            '{"spec": {"color": "blue"}}')
    strategic = kubectl("patch", "wd", "w1", "-n", namespace, "-p", '{"spec": {"color": "green"}}', check=False)

    assert by_plural.split() == ["NAME", "COLOR", "w1", "red"]
    assert json.loads(by_short_name)["spec"] == {"color": "red"}
    assert merge_patched.returncode == 0
    assert strategic.returncode != 0
    assert "application/strategic-merge-patch+json is not supported" in strategic.stderr
    assert fake_api.store.get("example.dev/v1", "widgets", "w1", namespace)["spec"] == {"color": "blue"}


def test_create_a_crd_from_a_file_then_its_objects(fake_api: FakeApiServer, kubectl: Kubectl, tmp_path: Path,
                                                   namespace: str) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD))
    crd["metadata"]["name"] = "sprockets.example.dev"
    crd["spec"]["names"] = {"plural": "sprockets", "kind": "Sprocket"}
    crd_file = tmp_path / "crd.json"
    crd_file.write_text(json.dumps(crd))
    object_file = tmp_path / "sprocket.json"
    object_file.write_text(json.dumps({"apiVersion": "example.dev/v1", "kind": "Sprocket",
                                       "metadata": {"name": "s1", "namespace": namespace}}))

    # As on a real cluster, the CRD must exist before kubectl can map its objects: two commands.
    crd_created = kubectl("create", "-f", str(crd_file))
    object_created = kubectl("create", "-f", str(object_file))
    listed = kubectl("get", "sprockets", "-n", namespace, "-o", "name").stdout
    kubectl("delete", "-f", str(crd_file))

    assert "sprockets.example.dev created" in crd_created.stdout
    assert "sprocket.example.dev/s1 created" in object_created.stdout
    assert listed.strip() == "sprocket.example.dev/s1"


def test_get_watch_prints_changes_as_they_happen(fake_api: FakeApiServer, kubeconfig: Path, tmp_path: Path,
                                                 namespace: str) -> None:
    assert KUBECTL is not None
    fake_api.store.create("v1", "configmaps", {"metadata": {"name": "watched"}}, namespace)
    process = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"), "get", "configmaps",
         "-n", namespace, "-w", "--no-headers"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        fake_api.store.create("v1", "configmaps", {"metadata": {"name": "arrived"}}, namespace)
        second = process.stdout.readline()
    finally:
        process.kill()
        process.communicate(timeout=10)

    assert first.split()[0] == "watched"
    assert second.split()[0] == "arrived"


def _ready(status: str) -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": status}], "nodeInfo": {"kubeletVersion": "v1.32.0"}}


# name, labels, spec, status -> the STATUS, ROLES and VERSION a real server prints for it
NODE_ROWS = [
    ("table-ready", {}, {}, _ready("True"), "Ready", "<none>", "v1.32.0"),
    ("table-not-ready", {}, {}, _ready("False"), "NotReady", "<none>", "v1.32.0"),
    ("table-unknown-ready", {}, {}, _ready("Unknown"), "NotReady", "<none>", "v1.32.0"),
    ("table-cordoned", {}, {"unschedulable": True}, _ready("True"), "Ready,SchedulingDisabled", "<none>", "v1.32.0"),
    ("table-no-condition", {}, {}, {}, "Unknown", "<none>", ""),
    ("table-roles", {"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/control-plane": ""}, {},
     _ready("True"), "Ready", "control-plane,worker", "v1.32.0"),
    ("table-legacy-role", {"kubernetes.io/role": "edge"}, {}, _ready("True"), "Ready", "edge", "v1.32.0"),
]


def test_get_nodes_prints_the_real_servers_status_and_roles(fake_api: FakeApiServer, kubectl: Kubectl) -> None:
    for name, labels, spec, status, *_ in NODE_ROWS:
        fake_api.store.create("v1", "nodes", {"metadata": {"name": name, "labels": labels}, "spec": spec,
                                              "status": status})
    try:
        printed = kubectl("get", "nodes", *(row[0] for row in NODE_ROWS)).stdout.splitlines()
    finally:
        for name, *_ in NODE_ROWS:
            fake_api.store.delete("v1", "nodes", name)

    assert printed[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    # Columns are separated by at least three spaces; a blank VERSION leaves the row one cell short.
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{3,}", line.strip()) for line in printed[1:])}
    for name, _labels, _spec, _status, shown_status, roles, version in NODE_ROWS:
        assert rows[name][0] == shown_status, name
        assert rows[name][1] == roles, name
        assert rows[name][3:] == ([version] if version else []), name


def test_get_events_prints_what_happened_to_which_object(fake_api: FakeApiServer, kubectl: Kubectl,
                                                         namespace: str) -> None:
    fake_api.store.create("v1", "events", {
        "metadata": {"name": "power-on.1"}, "involvedObject": {"kind": "Node", "name": "machine-1"},
        "reason": "PowerOn", "message": "Powering on machine-1 ", "type": "Normal",
        "source": {"component": "homelab-autoscaler"}, "firstTimestamp": "2020-01-01T00:00:00Z",
        "lastTimestamp": "2020-01-01T00:00:00Z", "count": 3}, namespace)
    fake_api.store.create("events.k8s.io/v1", "events", {
        "metadata": {"name": "boot-failed.1"}, "regarding": {"kind": "Node", "name": "machine-2"},
        "reason": "BootFailed", "note": "not Ready after 10m", "type": "Warning", "action": "Boot",
        "reportingController": "homelab-autoscaler", "reportingInstance": "operator-0",
        "eventTime": "2020-01-01T00:00:00.000000Z"}, namespace)

    printed = kubectl("get", "events", "-n", namespace).stdout.splitlines()
    wide = kubectl("get", "events.v1.events.k8s.io", "-n", namespace, "-o", "wide").stdout.splitlines()

    assert printed[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert [re.split(r"\s{3,}", line.strip())[1:] for line in printed[1:]] == [
        ["Normal", "PowerOn", "node/machine-1", "Powering on machine-1"]]
    assert re.split(r"\s{2,}", wide[0].strip()) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE",
                                                    "MESSAGE", "FIRST SEEN", "COUNT", "NAME"]
    assert re.split(r"\s{3,}", wide[1].strip())[1:] == [
        "Warning", "BootFailed", "node/machine-2", "homelab-autoscaler, operator-0", "not Ready after 10m",
        wide[1].split()[0], "1", "boot-failed.1"]


# kubectl's generators send protobuf for built-in kinds: each command, and what the server then holds.
CREATE_COMMANDS = [
    pytest.param(["namespace", "kubectl-made"], "v1", "namespaces", "kubectl-made",
                 {"spec": {"finalizers": ["kubernetes"]}}, id="namespace"),
    pytest.param(["secret", "generic", "creds", "--from-literal=user=admin", "--from-literal=password=s3cret"],
                 "v1", "secrets", "creds",
                 {"type": "Opaque", "data": {"user": "YWRtaW4=", "password": "czNjcmV0"}}, id="secret-generic"),
    pytest.param(["configmap", "settings", "--from-literal=mode=fast"], "v1", "configmaps", "settings",
                 {"data": {"mode": "fast"}}, id="configmap"),
    pytest.param(["serviceaccount", "robot"], "v1", "serviceaccounts", "robot", {}, id="serviceaccount"),
    pytest.param(["poddisruptionbudget", "keep-one", "--selector=app=web", "--min-available=1"], "policy/v1",
                 "poddisruptionbudgets", "keep-one",
                 {"spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}, id="pdb"),
]


@pytest.mark.parametrize(("arguments", "api_version", "plural", "name", "expected"), CREATE_COMMANDS)
def test_kubectl_create_of_a_built_in_kind_stores_what_was_asked(
        fake_api: FakeApiServer, kubectl: Kubectl, namespace: str, arguments: list[str], api_version: str,
        plural: str, name: str, expected: dict[str, Any]) -> None:
    scope = [] if plural == "namespaces" else ["-n", namespace]

    created = kubectl("create", *arguments, *scope, check=False)

    assert created.returncode == 0, created.stderr
    assert "created" in created.stdout
    stored = fake_api.store.get(api_version, plural, name, None if plural == "namespaces" else namespace)
    for key, value in expected.items():
        assert stored[key] == value, key
    if plural == "namespaces":
        fake_api.store.delete("v1", "namespaces", name)


def test_kubectl_create_job_runs_the_given_command(fake_api: FakeApiServer, kubectl: Kubectl,
                                                   namespace: str) -> None:
    kubectl("create", "job", "once", "-n", namespace, "--image=busybox", "--", "echo", "hello")

    pod_spec = fake_api.store.get("batch/v1", "jobs", "once", namespace)["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["containers"] == [{"name": "once", "image": "busybox", "command": ["echo", "hello"]}]


def test_get_jobs_and_pods_print_the_real_servers_columns(fake_api: FakeApiServer, kubectl: Kubectl,
                                                          namespace: str) -> None:
    kubectl("create", "job", "power-on", "-n", namespace, "--image=wol", "--", "wake")
    fake_api.store.patch("batch/v1", "jobs", "power-on", {"status": {
        "succeeded": 1, "startTime": "2020-01-01T00:00:00Z", "completionTime": "2020-01-01T00:00:42Z",
        "conditions": [{"type": "Complete", "status": "True"}]}}, namespace, subresource="status")
    fake_api.store.create("v1", "pods", {"metadata": {"name": "power-on-x"}, "spec": {
        "nodeName": "nuc-1", "containers": [{"name": "wake", "image": "wol"}]}}, namespace)
    fake_api.store.patch("v1", "pods", "power-on-x", {"status": {"phase": "Running", "containerStatuses": [
        {"name": "wake", "ready": True, "restartCount": 0, "state": {"running": {}}}]}}, namespace,
        subresource="status")

    jobs = kubectl("get", "jobs", "-n", namespace).stdout.splitlines()
    pods = kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout.splitlines()

    assert jobs[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert jobs[1].split()[:4] == ["power-on", "Complete", "1/1", "42s"]
    assert re.split(r"\s{2,}", pods[0].strip()) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                                                    "NOMINATED NODE", "READINESS GATES"]
    cells = re.split(r"\s{2,}", pods[1].strip())
    assert cells[:4] + cells[5:] == ["power-on-x", "1/1", "Running", "0", "<none>", "nuc-1", "<none>", "<none>"]
