"""Drains: which pods are evicted, disruption budgets honoured until the deadline, and what the actor is told.

Everything runs against the fake API's own Eviction API and real PodDisruptionBudget objects, so a refusal is the
429 a budget gives, not a scripted one. Pods are Running and Ready unless a test says otherwise: the Eviction API
deletes Pending or finished pods without asking any budget.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubeapi_test_support import (
    REPLY_TO,
    EvictionRecorder,
    Reports,
    batch_for,
    create_budget,
    create_machine,
    create_pod,
    group_spec,
    kube_node_name,
)
from kubernetes import client as kube

from actors.fsm import effects
from actors.messages import DrainCompleted
from kubeapi.writer import KubeWriter
from schemas import GROUP_VERSION
from schemas.crds import render_crds
from schemas.node import NodeStatus
from sim.fakeapi import FakeApiServer
from tests.support.polling import wait_for

WEB = {"app": "web"}


@pytest.fixture
def recorder(fake_api: FakeApiServer) -> EvictionRecorder:
    evictions = EvictionRecorder()
    fake_api.on_request.append(evictions)  # the conftest clears on_request after each test
    return evictions


def _daemon_set_owner(fake_api: FakeApiServer, namespace: str) -> dict[str, Any]:
    # The fake serves no DaemonSets and collects pods whose owner uid does not exist, so the "DaemonSet" borrows
    # the uid of an object that does; the drain only looks at the kind.
    stand_in = fake_api.store.create("v1", "configmaps", {"metadata": {"name": "ds-stand-in"}}, namespace)
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "node-exporter",
            "uid": stand_in["metadata"]["uid"], "controller": True}


def _pod_names(fake_api: FakeApiServer, namespace: str) -> set[str]:
    return {pod["metadata"]["name"] for pod in fake_api.store.list("v1", "pods", namespace)}


def _drained(reports: Reports) -> DrainCompleted:
    return wait_for(lambda: next(iter(reports.of_type(DrainCompleted)), None), timeout=10.0, what="DrainCompleted")


def _disruptions_allowed(fake_api: FakeApiServer, namespace: str, budget: str = "web") -> int:
    return int(fake_api.store.get("policy/v1", "poddisruptionbudgets", budget, namespace)["status"]
               ["disruptionsAllowed"])


def test_drain_evicts_workload_pods_and_leaves_daemon_mirror_and_finished_pods(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports, recorder: EvictionRecorder
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    on_node = kube_node_name(namespace, "m1")
    create_pod(fake_api, namespace, "web-1", on_node)
    create_pod(fake_api, namespace, "web-2", on_node, phase="Pending")
    create_pod(fake_api, namespace, "exporter", on_node, ownerReferences=[_daemon_set_owner(fake_api, namespace)])
    create_pod(fake_api, namespace, "static", on_node, annotations={"kubernetes.io/config.mirror": "abc"})
    create_pod(fake_api, namespace, "done", on_node, phase="Succeeded")
    create_pod(fake_api, namespace, "elsewhere", "another-node")

    writer.submit(batch_for(node, effects.Drain()))

    assert _drained(reports) == DrainCompleted(True, "evicted 2 pods")
    assert reports.addresses == [REPLY_TO]
    assert sorted(recorder.evictions) == [f"{namespace}/web-1", f"{namespace}/web-2"]
    assert _pod_names(fake_api, namespace) == {"exporter", "static", "done", "elsewhere"}


def test_drain_retries_while_a_disruption_budget_refuses_and_evicts_once_it_allows(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports, recorder: EvictionRecorder
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    create_pod(fake_api, namespace, "web-1", kube_node_name(namespace, "m1"), labels=WEB)
    create_budget(fake_api, namespace, "web", "web", minAvailable=1)
    # A replica becomes ready elsewhere just before the third attempt, so the budget allows one disruption.
    recorder.before[3] = lambda: create_pod(fake_api, namespace, "web-2", "another-node", labels=WEB)

    writer.submit(batch_for(node, effects.Drain()))

    assert _drained(reports) == DrainCompleted(True, "evicted 1 pods")
    assert recorder.evictions == [f"{namespace}/web-1"] * 3
    assert _pod_names(fake_api, namespace) == {"web-2"}
    assert _disruptions_allowed(fake_api, namespace) == 0


def test_drain_gives_up_at_the_shutdown_timeout_while_a_budget_still_refuses(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    create_pod(fake_api, namespace, "web-1", kube_node_name(namespace, "m1"), labels=WEB)
    create_pod(fake_api, namespace, "batch-1", kube_node_name(namespace, "m1"), labels={"app": "batch"})
    create_budget(fake_api, namespace, "web", "web", minAvailable=1)

    writer.submit(batch_for(node, effects.Drain(), spec=group_spec(shutdownTimeout="500ms")))

    result = _drained(reports)
    assert not result.succeeded
    assert f"{namespace}/web-1" in result.message
    assert "disruption budget" in result.message
    assert "evicted 1 pods" in result.message
    assert _pod_names(fake_api, namespace) == {"web-1"}


def test_drain_waits_until_evicted_pods_have_finished_terminating(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    create_pod(fake_api, namespace, "web-1", kube_node_name(namespace, "m1"), finalizers=["example.dev/hold"])

    writer.submit(batch_for(node, effects.Drain()))

    wait_for(lambda: fake_api.store.get("v1", "pods", "web-1", namespace)["metadata"].get("deletionTimestamp"),
             what="the evicted pod to start terminating")
    assert reports.of_type(DrainCompleted) == [], "the drain finished while its pod was still terminating"
    fake_api.store.patch("v1", "pods", "web-1", {"metadata": {"finalizers": None}}, namespace)
    assert _drained(reports) == DrainCompleted(True, "evicted 1 pods")


def test_a_drain_does_not_hold_up_other_machines_and_keeps_its_own_order(
    fake_api: FakeApiServer, api_client: kube.ApiClient, namespace: str, reports: Reports
) -> None:
    draining = create_machine(fake_api, namespace, "m1")
    other = create_machine(fake_api, namespace, "m2")
    create_pod(fake_api, namespace, "web-1", kube_node_name(namespace, "m1"), labels=WEB)
    create_budget(fake_api, namespace, "web", "web", minAvailable=1)
    writer = KubeWriter(api_client, reports, workers=1, base_backoff=0.02, max_backoff=0.05)
    try:
        writer.submit(batch_for(draining, effects.Drain(), effects.PatchStatus(NodeStatus(attempts=5)),
                                spec=group_spec(shutdownTimeout="1s")))
        writer.submit(batch_for(other, effects.PatchStatus(NodeStatus(attempts=7))))

        wait_for(lambda: fake_api.store.get(GROUP_VERSION, "nodes", "m2", namespace).get("status"),
                 what="the other machine's status")
        assert reports.of_type(DrainCompleted) == [], "the other machine finished while the drain still waits"
        assert "status" not in fake_api.store.get(GROUP_VERSION, "nodes", "m1", namespace), (
            "the draining machine's next effect waits for its drain"
        )
        assert writer.wait_idle(10.0)
    finally:
        writer.stop()

    assert [message.succeeded for message in reports.of_type(DrainCompleted)] == [False]
    assert fake_api.store.get(GROUP_VERSION, "nodes", "m1", namespace)["status"]["attempts"] == 5


def test_a_node_with_nothing_to_evict_drains_at_once(
    fake_api: FakeApiServer, namespace: str, writer: KubeWriter, reports: Reports, recorder: EvictionRecorder
) -> None:
    node = create_machine(fake_api, namespace, "m1")
    create_pod(fake_api, namespace, "exporter", kube_node_name(namespace, "m1"),
               ownerReferences=[_daemon_set_owner(fake_api, namespace)])

    writer.submit(batch_for(node, effects.Drain()))

    assert _drained(reports) == DrainCompleted(True, "evicted 0 pods")
    assert recorder.evictions == []
    assert _pod_names(fake_api, namespace) == {"exporter"}


# -- a server without the Eviction API --------------------------------------------------------------------------


@pytest.fixture
def server_without_eviction() -> Iterator[FakeApiServer]:
    with FakeApiServer(host="127.0.0.1", port=0, eviction_api=False) as server:
        for crd in render_crds():
            server.store.create("apiextensions.k8s.io/v1", "customresourcedefinitions", crd)
        yield server


def test_without_the_eviction_api_a_drain_fails_and_touches_nothing(
    server_without_eviction: FakeApiServer, reports: Reports
) -> None:
    server = server_without_eviction
    node = create_machine(server, "default", "m1")
    create_pod(server, "default", "web-1", kube_node_name("default", "m1"))
    configuration = kube.Configuration()
    configuration.host = server.url
    with kube.ApiClient(configuration) as client:
        writer = KubeWriter(client, reports, base_backoff=0.01, max_backoff=0.05, drain_poll_seconds=0.02)
        try:
            writer.submit(batch_for(node, effects.Drain()))
            result = _drained(reports)
        finally:
            writer.stop(timeout=5.0)

    assert not result.succeeded
    assert "does not serve pods/eviction" in result.message
    assert _pod_names(server, "default") == {"web-1"}
