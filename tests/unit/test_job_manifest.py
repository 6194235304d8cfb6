"""The power Job a machine's template becomes: what the API server and the machine simulator will see."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from kubeapi.job_manifest import render_job
from schemas.node import Node, OperationKind


def make_node(**startup_job: Any) -> Node:
    return Node.model_validate(
        {
            "metadata": {"name": "nas-1", "namespace": "homelab", "uid": "uid-1"},
            "spec": {
                "startupJob": {"image": "ghcr.io/example/wol:1", **startup_job},
                "shutdownJob": {"image": "ghcr.io/example/ssh:1", "args": ["poweroff"]},
            },
        }
    )


def test_job_names_machine_group_operation_and_attempt_in_labels() -> None:
    job = render_job(make_node(), "workers", OperationKind.STARTUP, 3, "nas-1-startup-3", 600)
    assert job["metadata"]["name"] == "nas-1-startup-3"
    assert job["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "homelab-autoscaler",
        "infra.homecluster.dev/node": "nas-1",
        "infra.homecluster.dev/group": "workers",
        "infra.homecluster.dev/operation": "startup",
        "infra.homecluster.dev/attempt": "3",
    }
    assert job["spec"]["template"]["metadata"]["labels"] == job["metadata"]["labels"]


def test_job_is_owned_by_the_machine_resource() -> None:
    job = render_job(make_node(), "workers", OperationKind.STARTUP, 1, "nas-1-startup-1", 600)
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("Node", "nas-1", "uid-1", True)


@pytest.mark.parametrize(
    ("template", "expected_deadline"),
    [
        pytest.param({}, 600, id="group-timeout-by-default"),
        pytest.param({"activeDeadlineSeconds": 45}, 45, id="template-overrides"),
    ],
)
def test_a_hung_power_command_cannot_outlive_its_deadline(template: dict[str, Any], expected_deadline: int) -> None:
    job = render_job(make_node(**template), "workers", OperationKind.STARTUP, 1, "nas-1-startup-1", 600)
    assert job["spec"]["activeDeadlineSeconds"] == expected_deadline
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_shutdown_uses_the_shutdown_template() -> None:
    job = render_job(make_node(), "workers", OperationKind.SHUTDOWN, 2, "nas-1-shutdown-2", 300)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert (container["name"], container["image"]) == ("shutdown", "ghcr.io/example/ssh:1")
    assert container["args"] == ["poweroff"]


def test_secrets_are_referenced_never_inlined() -> None:
    node = make_node(
        env=[{"name": "BMC_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "bmc", "key": "password"}}}],
        envFrom=[{"configMapRef": {"name": "bmc-hosts"}}],
        volumes=[{"name": "creds", "mountPath": "/creds", "secretName": "bmc"}],
    )
    pod = render_job(node, "workers", OperationKind.STARTUP, 1, "nas-1-startup-1", 600)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["env"] == [
        {"name": "BMC_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "bmc", "key": "password", "optional": False}}}
    ]
    assert container["volumeMounts"] == [{"name": "creds", "mountPath": "/creds", "readOnly": True}]
    assert pod["volumes"] == [{"name": "creds", "secret": {"secretName": "bmc"}}]


def test_wake_on_lan_on_the_host_network_keeps_cluster_dns() -> None:
    pod = render_job(make_node(hostNetwork=True), "w", OperationKind.STARTUP, 1, "j", 600)["spec"]["template"]["spec"]
    assert (pod["hostNetwork"], pod["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")


def test_every_field_of_a_full_template_is_a_valid_kubernetes_job() -> None:
    node = make_node(
        command=["/bin/wol"],
        args=["--mac", "aa:bb:cc:dd:ee:ff"],
        env=[{"name": "MODE", "value": "broadcast"}],
        envFrom=[{"secretRef": {"name": "ipmi"}, "prefix": "IPMI_"}],
        volumes=[
            {"name": "creds", "mountPath": "/creds", "secretName": "bmc"},
            {"name": "hosts", "mountPath": "/hosts", "configMapName": "hosts"},
        ],
        resources={"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        serviceAccountName="power",
        hostNetwork=True,
        nodeSelector={"kubernetes.io/hostname": "pi"},
        tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
        backoffLimit=2,
        ttlSecondsAfterFinished=60,
    )
    job = render_job(node, "workers", OperationKind.STARTUP, 1, "nas-1-startup-1", 600)
    kubernetes_validate.validate(job, "1.32", strict=True)
