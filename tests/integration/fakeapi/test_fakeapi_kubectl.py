"""kubectl 1.32 against the fake through the kubeconfig it writes: the commands a person uses to look at
and poke the operator's objects. Skipped where kubectl is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

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
