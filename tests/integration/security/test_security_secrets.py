"""Secrets are referenced, never read: a BMC password never reaches a log line, an Event or the operator's memory.

A machine's power Jobs take its credentials from a Secret by reference (an env `valueFrom`, an `envFrom` and a
volume), and the kubelet resolves them. These tests create such a Secret with a value nobody could guess, let the
writer (and then the whole operator) create the Jobs with every logger at DEBUG, and look for the value, plain and
base64-encoded, in every log record and every Event; and they check from the recorded requests that the only
Secret the operator ever reads is its own webhook certificate.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from pathlib import Path
from typing import Any, Final

import grpc
import pytest
from security_support import (
    GROUP,
    OPERATOR_NAMESPACE,
    WATCH_NAMESPACE,
    Cluster,
    operator_settings,
    running_operator,
)

from actors.effects_port import EffectBatch, MachineRef
from actors.fsm import effects
from actors.messages import EffectFailed
from kubeapi.writer import KubeWriter
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas.group import GroupSpec
from schemas.node import Node, OperationKind
from tests.support.polling import wait_for

CREDENTIALS: Final = "bmc-credentials"
WEBHOOK_SECRET: Final = "homelab-autoscaler-webhook-tls"


def power_job_using_the_secret() -> dict[str, Any]:
    return {
        "image": "ghcr.io/example/ipmitool:1",
        "command": ["sh", "-c", "ipmitool -P \"$BMC_PASSWORD\" chassis power on"],
        "env": [{"name": "BMC_PASSWORD", "valueFrom": {"secretKeyRef": {"name": CREDENTIALS, "key": "password"}}}],
        "envFrom": [{"secretRef": {"name": CREDENTIALS}, "prefix": "BMC_"}],
        "volumes": [{"name": "bmc", "mountPath": "/etc/bmc", "secretName": CREDENTIALS}],
    }


@pytest.fixture
def password(cluster: Cluster) -> str:
    """A Secret the power Jobs reference, holding a value that appears nowhere else; returns the value."""
    value = f"hunter2-{uuid.uuid4().hex}"
    cluster.add_secret(CREDENTIALS, WATCH_NAMESPACE, {"password": value, "user": "admin"})
    return value


def forms_of(value: str) -> list[str]:
    """The ways a value could leak: as it is, and base64-encoded as Secret data holds it."""
    return [value, base64.b64encode(value.encode()).decode()]


def leaks(value: str, records: list[logging.LogRecord], cluster: Cluster) -> list[str]:
    """Where `value` shows up: log records (message, arguments, traceback) and Events, in any namespace."""
    found = []
    for record in records:
        text = " ".join([record.getMessage(), repr(record.args), record.exc_text or ""])
        if any(form in text for form in forms_of(value)):
            found.append(f"log {record.name}: {record.getMessage()[:120]}")
    for event in cluster.fake.store.list("v1", "events"):
        if any(form in json.dumps(event) for form in forms_of(value)):
            found.append(f"Event {event['metadata']['name']}")
    return found


def secret_requests(cluster: Cluster) -> set[tuple[str, str | None, str | None]]:
    return {(r.verb, r.namespace, r.name) for r in cluster.recorder.requests() if r.resource == "secrets"}


def test_the_writer_creates_jobs_that_only_reference_the_secret(
    cluster: Cluster, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stored = cluster.add_machine("ipmi-1", startupJob=power_job_using_the_secret())
    node = Node.model_validate(stored)
    machine = MachineRef(WATCH_NAMESPACE, "ipmi-1", "ipmi-1", GROUP)
    job = "ipmi-1-startup-1"
    reports: list[object] = []
    writer = KubeWriter(cluster.api_client, lambda _to, message: reports.append(message), base_backoff=0.01)
    try:
        batch = (
            effects.CreateJob(OperationKind.STARTUP, 1, job),
            effects.CreateJob(OperationKind.STARTUP, 1, job),  # adopted: read back and logged
            effects.RecordEvent(effects.EventType.NORMAL, "PowerOn", f"started Job {job}"),
        )
        writer.submit(EffectBatch(machine, node, GroupSpec.model_validate({"maxSize": 1}), batch, "node-actor"))
        assert writer.wait_idle(10.0)
    finally:
        writer.stop()

    assert [report for report in reports if isinstance(report, EffectFailed)] == []
    created = cluster.fake.store.get("batch/v1", "jobs", job, WATCH_NAMESPACE)
    container = created["spec"]["template"]["spec"]["containers"][0]
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == CREDENTIALS  # the reference went through
    assert not any(form in json.dumps(created) for form in forms_of(password))
    assert leaks(password, caplog.records, cluster) == []
    assert secret_requests(cluster) == set()


def test_the_operator_reads_no_secret_but_its_webhook_certificate_and_logs_none(
    cluster: Cluster, password: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cluster.add_group()
    cluster.add_machine("ipmi-1", startupJob=power_job_using_the_secret())
    with running_operator(cluster, operator_settings(tmp_path)) as operator:
        with grpc.insecure_channel(f"127.0.0.1:{operator.grpc_port}") as channel:
            externalgrpc_grpc.CloudProviderStub(channel).NodeGroupIncreaseSize(
                externalgrpc.NodeGroupIncreaseSizeRequest(id=f"{WATCH_NAMESPACE}/{GROUP}", delta=1), timeout=10
            )
        wait_for(lambda: cluster.fake.store.list("batch/v1", "jobs", WATCH_NAMESPACE), what="the startup Job")
        wait_for(lambda: cluster.fake.store.list("v1", "events", WATCH_NAMESPACE), what="an Event")

    assert leaks(password, caplog.records, cluster) == []
    # The webhook's own private key is a Secret value too: it never reaches a log either.
    certificate = cluster.fake.store.get("v1", "secrets", WEBHOOK_SECRET, OPERATOR_NAMESPACE)
    private_key_lines = base64.b64decode(certificate["data"]["tls.key"]).decode().splitlines()[1:-1]
    assert private_key_lines
    assert [line for line in private_key_lines if any(line in r.getMessage() for r in caplog.records)] == []
    reads = {request for request in secret_requests(cluster) if request[0] in ("get", "list", "watch")}
    assert reads == {("get", OPERATOR_NAMESPACE, WEBHOOK_SECRET)}
