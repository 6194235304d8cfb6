"""PodDisruptionBudgets and the Eviction API: budget status kept current, evictions allowed, refused with 429 or
answered with a server error exactly where a real API server would, through the official client and kubectl."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fakeapi_test_support import raw_request, status_of
from kubernetes import client

from sim.fakeapi import FakeApiServer

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
HOLD = "example.dev/hold"
WEB = {"app": "web"}

# How a test pod looks to a budget: the status a kubelet would have written for it.
POD_STATES: dict[str, dict[str, Any]] = {
    "ready": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    "running": {"phase": "Running"},
    "unready": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]},
    "pending": {"phase": "Pending"},
    "succeeded": {"phase": "Succeeded"},
    "failed": {"phase": "Failed"},
    "terminating": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
}


@pytest.fixture
def policy(api_client: client.ApiClient) -> client.PolicyV1Api:
    return client.PolicyV1Api(api_client)


def make_pod(fake_api: FakeApiServer, namespace: str, name: str, state: str = "ready", *,
             labels: dict[str, str] | None = None, node: str = "", finalizers: list[str] | None = None) -> None:
    """A pod in ``state`` (see POD_STATES); "terminating" ones are held by a finalizer after their deletion."""
    metadata: dict[str, Any] = {"name": name, "labels": WEB if labels is None else labels}
    if finalizers or state == "terminating":
        metadata["finalizers"] = finalizers or [HOLD]
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    fake_api.store.create("v1", "pods", {"metadata": metadata, "spec": spec}, namespace)
    fake_api.store.patch("v1", "pods", name, {"status": POD_STATES[state]}, namespace, subresource="status")
    if state == "terminating":
        fake_api.store.delete("v1", "pods", name, namespace)


def make_budget(policy: client.PolicyV1Api, namespace: str, name: str = "web", selector: Any = None,
                **spec: Any) -> None:
    body = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": WEB} if selector is None else selector, **spec}}
    policy.create_namespaced_pod_disruption_budget(namespace, body)


def budget_counts(policy: client.PolicyV1Api, namespace: str, name: str = "web") -> tuple[int, int, int, int]:
    """(expectedPods, currentHealthy, desiredHealthy, disruptionsAllowed) as a client reads them."""
    status = policy.read_namespaced_pod_disruption_budget(name, namespace).status
    return status.expected_pods, status.current_healthy, status.desired_healthy, status.disruptions_allowed


def evict(core: client.CoreV1Api, namespace: str, name: str, **options: Any) -> int:
    """Ask the Eviction API to evict a pod; the HTTP status it answered."""
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace), **options)
    try:
        _, code, _ = core.create_namespaced_pod_eviction_with_http_info(name, namespace, eviction)
    except client.ApiException as error:
        return int(error.status)
    return int(code)


def pod_names(fake_api: FakeApiServer, namespace: str) -> set[str]:
    return {pod["metadata"]["name"] for pod in fake_api.store.list("v1", "pods", namespace)}


def release(fake_api: FakeApiServer, namespace: str, *names: str) -> None:
    """Drop the test finalizer so the namespace can go away after the test."""
    for name in names:
        fake_api.store.patch("v1", "pods", name, {"metadata": {"finalizers": None}}, namespace)


# -- discovery


def test_discovery_serves_budgets_and_the_eviction_subresource(core: client.CoreV1Api,
                                                                policy: client.PolicyV1Api) -> None:
    core_resources = {r.name: r for r in core.get_api_resources().resources}
    policy_resources = {r.name: r for r in policy.get_api_resources().resources}

    eviction = core_resources["pods/eviction"]
    assert (eviction.group, eviction.version, eviction.kind, eviction.verbs) == ("policy", "v1", "Eviction",
                                                                                 ["create"])
    budgets = policy_resources["poddisruptionbudgets"]
    assert (budgets.kind, budgets.namespaced, budgets.short_names) == ("PodDisruptionBudget", True, ["pdb"])
    assert policy_resources["poddisruptionbudgets/status"].verbs == ["get", "patch", "update"]


# -- the disruption controller's part: budget status


@pytest.mark.parametrize(("spec", "states", "counts"), [
    pytest.param({"minAvailable": 2}, ["ready"] * 3, (3, 3, 2, 1), id="min-available-int"),
    pytest.param({"minAvailable": 3}, ["ready"] * 3, (3, 3, 3, 0), id="min-available-int-no-spare"),
    pytest.param({"minAvailable": "50%"}, ["ready"] * 3, (3, 3, 2, 1), id="min-available-percent-rounds-up"),
    pytest.param({"minAvailable": "100%"}, ["ready"] * 3, (3, 3, 3, 0), id="min-available-all"),
    pytest.param({"maxUnavailable": 1}, ["ready"] * 3, (3, 3, 2, 1), id="max-unavailable-int"),
    pytest.param({"maxUnavailable": "34%"}, ["ready"] * 3, (3, 3, 1, 2), id="max-unavailable-percent-rounds-up"),
    pytest.param({"maxUnavailable": 0}, ["ready"] * 3, (3, 3, 3, 0), id="max-unavailable-zero"),
    pytest.param({"maxUnavailable": 1}, ["ready", "ready", "unready"], (3, 2, 2, 0),
                 id="max-unavailable-already-spent-by-an-unready-pod"),
    pytest.param({"minAvailable": 1}, ["running", "running"], (2, 2, 1, 1),
                 id="running-pods-without-a-ready-condition-count-as-healthy"),
    pytest.param({"minAvailable": 1}, ["ready", "pending", "unready", "terminating", "succeeded"], (5, 1, 1, 0),
                 id="only-ready-pods-not-being-deleted-are-healthy"),
    pytest.param({"minAvailable": 1}, [], (0, 0, 1, 0), id="no-pods"),
    pytest.param({"minAvailable": 0}, [], (0, 0, 0, 0), id="no-pods-allows-nothing-even-with-zero-minimum"),
    pytest.param({}, ["ready"] * 3, (3, 3, 1, 2), id="no-bound-defaults-to-min-available-1"),
])
def test_budget_status_follows_the_spec_and_the_health_of_selected_pods(
    fake_api: FakeApiServer, policy: client.PolicyV1Api, namespace: str, spec: dict[str, Any], states: list[str],
    counts: tuple[int, int, int, int],
) -> None:
    for index, state in enumerate(states):
        make_pod(fake_api, namespace, f"web-{index}", state)
    make_pod(fake_api, namespace, "unrelated", labels={"app": "other"})

    make_budget(policy, namespace, **spec)

    budget = policy.read_namespaced_pod_disruption_budget("web", namespace)
    assert budget_counts(policy, namespace) == counts
    assert budget.status.observed_generation == budget.metadata.generation
    condition = next(c for c in budget.status.conditions if c.type == "DisruptionAllowed")
    allowed = counts[3] > 0
    assert (condition.status, condition.reason) == (("True", "SufficientPods") if allowed
                                                    else ("False", "InsufficientPods"))
    if not spec:
        assert budget.spec.min_available == 1
    release(fake_api, namespace, *(f"web-{i}" for i, state in enumerate(states) if state == "terminating"))


def test_a_new_budget_starts_with_a_zero_status_that_the_controller_fills_in(
    fake_api: FakeApiServer, policy: client.PolicyV1Api, namespace: str
) -> None:
    make_pod(fake_api, namespace, "web-0")
    body = {"metadata": {"name": "web"}, "spec": {"minAvailable": 0, "selector": {"matchLabels": WEB}},
            "status": {"disruptionsAllowed": 99}}

    created = policy.create_namespaced_pod_disruption_budget(namespace, body)

    assert (created.status.disruptions_allowed, created.status.expected_pods) == (0, 0)
    assert budget_counts(policy, namespace) == (1, 1, 0, 1)


def test_budget_status_follows_pod_and_spec_changes(
    fake_api: FakeApiServer, policy: client.PolicyV1Api, namespace: str
) -> None:
    make_budget(policy, namespace, minAvailable=1)
    seen = [budget_counts(policy, namespace)]
    make_pod(fake_api, namespace, "web-0", "pending")
    make_pod(fake_api, namespace, "web-1", "pending")
    seen.append(budget_counts(policy, namespace))
    for name in ("web-0", "web-1"):
        fake_api.store.patch("v1", "pods", name, {"status": POD_STATES["ready"]}, namespace, subresource="status")
    seen.append(budget_counts(policy, namespace))
    fake_api.store.patch("v1", "pods", "web-1", {"metadata": {"labels": {"app": "other"}}}, namespace)
    seen.append(budget_counts(policy, namespace))
    policy.patch_namespaced_pod_disruption_budget("web", namespace, {"spec": {"minAvailable": 0}})
    seen.append(budget_counts(policy, namespace))
    fake_api.store.delete("v1", "pods", "web-0", namespace)
    seen.append(budget_counts(policy, namespace))

    assert seen == [(0, 0, 1, 0), (2, 0, 1, 0), (2, 2, 1, 1), (1, 1, 1, 0), (1, 1, 0, 1), (0, 0, 0, 0)]
    budget = policy.read_namespaced_pod_disruption_budget("web", namespace)
    assert budget.metadata.generation == 2
    assert budget.status.observed_generation == 2


@pytest.mark.parametrize(("spec", "field", "text"), [
    pytest.param({"minAvailable": 1, "maxUnavailable": 1}, "spec", "cannot be both set", id="both-bounds"),
    pytest.param({"minAvailable": -1}, "spec.minAvailable", "greater than or equal to 0", id="negative"),
    pytest.param({"maxUnavailable": "half"}, "spec.maxUnavailable", "integer or percentage", id="not-a-percent"),
    pytest.param({"minAvailable": "150%"}, "spec.minAvailable", "greater than 100%", id="over-100-percent"),
    pytest.param({"selector": {"matchExpressions": [{"key": "app", "operator": "Near", "values": ["web"]}]}},
                 "spec.selector.matchExpressions[0].operator", "not a valid selector operator", id="bad-operator"),
    pytest.param({"unhealthyPodEvictionPolicy": "Sometimes"}, "spec.unhealthyPodEvictionPolicy",
                 "supported values", id="bad-unhealthy-policy"),
])
def test_invalid_budgets_are_refused(policy: client.PolicyV1Api, namespace: str, spec: dict[str, Any], field: str,
                                     text: str) -> None:
    with pytest.raises(client.ApiException) as caught:
        make_budget(policy, namespace, **spec)

    status = status_of(caught.value)
    assert caught.value.status == 422
    assert [cause["field"] for cause in status["details"]["causes"]] == [field]
    assert text in status["message"]


# -- the Eviction API


def test_an_eviction_without_a_budget_deletes_the_pod(fake_api: FakeApiServer, core: client.CoreV1Api,
                                                      namespace: str) -> None:
    make_pod(fake_api, namespace, "web-0")
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name="web-0", namespace=namespace))

    answer, code, _ = core.create_namespaced_pod_eviction_with_http_info("web-0", namespace, eviction)

    assert code == 201
    assert answer.kind == "Status"
    assert pod_names(fake_api, namespace) == set()


def test_each_allowed_eviction_spends_one_disruption_until_the_budget_refuses(
    fake_api: FakeApiServer, core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    for index in range(3):
        make_pod(fake_api, namespace, f"web-{index}")
    make_budget(policy, namespace, minAvailable=1)
    before = budget_counts(policy, namespace)

    first = evict(core, namespace, "web-0")
    after_first = budget_counts(policy, namespace)
    second = evict(core, namespace, "web-1")
    third = evict(core, namespace, "web-2")

    assert (first, second, third) == (201, 201, 429)
    assert (before, after_first) == ((3, 3, 1, 2), (2, 2, 1, 1))
    assert budget_counts(policy, namespace) == (1, 1, 1, 0)
    assert pod_names(fake_api, namespace) == {"web-2"}


def test_a_refused_eviction_answers_429_naming_the_budget_and_leaves_the_pod_alone(
    fake_api: FakeApiServer, core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    make_pod(fake_api, namespace, "web-0")
    make_pod(fake_api, namespace, "web-1")
    make_budget(policy, namespace, minAvailable=2)
    before = fake_api.store.get("v1", "pods", "web-0", namespace)

    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_pod_eviction("web-0", namespace, client.V1Eviction(
            metadata=client.V1ObjectMeta(name="web-0", namespace=namespace)))

    status = status_of(caught.value)
    assert caught.value.status == 429
    assert status["reason"] == "TooManyRequests"
    assert status["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert status["details"]["causes"] == [{"reason": "DisruptionBudget",
                                            "message": "The disruption budget web needs 2 healthy pods and has 2 "
                                                       "currently"}]
    assert "Retry-After" not in caught.value.headers
    assert fake_api.store.get("v1", "pods", "web-0", namespace) == before


@pytest.mark.parametrize(("state", "left"), [
    pytest.param("pending", set(), id="pending"),
    pytest.param("succeeded", set(), id="succeeded"),
    pytest.param("failed", set(), id="failed"),
    pytest.param("terminating", {"web-0"}, id="already-terminating"),
])
def test_pods_that_are_not_running_are_evicted_whatever_the_budget(
    fake_api: FakeApiServer, core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str, state: str,
    left: set[str],
) -> None:
    make_pod(fake_api, namespace, "web-0", state)
    make_budget(policy, namespace, maxUnavailable=0)

    code = evict(core, namespace, "web-0")

    assert code == 201
    assert pod_names(fake_api, namespace) == left
    release(fake_api, namespace, *left)


@pytest.mark.parametrize(("states", "spec", "code"), [
    pytest.param(["ready", "ready"], {"minAvailable": 2}, 201, id="budget-healthy-without-it"),
    pytest.param(["ready"], {"minAvailable": 2}, 429, id="budget-already-short"),
    pytest.param(["ready"], {"minAvailable": 2, "unhealthyPodEvictionPolicy": "AlwaysAllow"}, 201,
                 id="budget-short-but-always-allow"),
    pytest.param(["ready"], {"minAvailable": 2, "unhealthyPodEvictionPolicy": "IfHealthyBudget"}, 429,
                 id="budget-short-and-if-healthy-budget"),
    pytest.param([], {"maxUnavailable": 1}, 429, id="budget-wanting-no-healthy-pods-has-none-to-spare"),
])
def test_an_unready_pod_may_go_when_losing_it_costs_the_budget_nothing(
    fake_api: FakeApiServer, core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str, states: list[str],
    spec: dict[str, Any], code: int,
) -> None:
    for index, state in enumerate(states):
        make_pod(fake_api, namespace, f"web-{index}", state)
    make_pod(fake_api, namespace, "sick", "unready")
    make_budget(policy, namespace, **spec)

    answer = evict(core, namespace, "sick")

    assert answer == code
    assert ("sick" in pod_names(fake_api, namespace)) is (code == 429)


def test_two_budgets_selecting_the_pod_is_a_server_error(
    fake_api: FakeApiServer, core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    make_pod(fake_api, namespace, "web-0")
    make_budget(policy, namespace, "web", maxUnavailable=1)
    make_budget(policy, namespace, "everything", selector={}, maxUnavailable=1)

    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_pod_eviction("web-0", namespace, client.V1Eviction(
            metadata=client.V1ObjectMeta(name="web-0", namespace=namespace)))

    assert caught.value.status == 500
    assert "more than one PodDisruptionBudget" in status_of(caught.value)["message"]
    assert pod_names(fake_api, namespace) == {"web-0"}


def test_a_budget_without_a_selector_selects_nothing(
    fake_api: FakeApiServer, core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    make_pod(fake_api, namespace, "web-0")
    policy.create_namespaced_pod_disruption_budget(namespace, {"metadata": {"name": "web"},
                                                               "spec": {"maxUnavailable": 0}})

    assert budget_counts(policy, namespace) == (0, 0, 0, 0)
    assert evict(core, namespace, "web-0") == 201


def test_an_evicted_pod_held_by_a_finalizer_terminates_marked_as_disrupted(
    fake_api: FakeApiServer, core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    make_pod(fake_api, namespace, "web-0", finalizers=[HOLD])
    make_pod(fake_api, namespace, "web-1")
    make_budget(policy, namespace, minAvailable=1)

    first = evict(core, namespace, "web-0")
    pod = core.read_namespaced_pod("web-0", namespace)
    again = evict(core, namespace, "web-0")
    other = evict(core, namespace, "web-1")

    assert (first, again, other) == (201, 201, 429)
    assert pod.metadata.deletion_timestamp is not None
    target = next(c for c in pod.status.conditions if c.type == "DisruptionTarget")
    assert (target.status, target.reason) == ("True", "EvictionByEvictionAPI")
    assert budget_counts(policy, namespace) == (2, 1, 1, 0)
    release(fake_api, namespace, "web-0")
    assert pod_names(fake_api, namespace) == {"web-1"}


def test_a_dry_run_eviction_changes_nothing(fake_api: FakeApiServer, core: client.CoreV1Api,
                                           policy: client.PolicyV1Api, namespace: str) -> None:
    make_pod(fake_api, namespace, "web-0")
    make_pod(fake_api, namespace, "web-1")
    make_budget(policy, namespace, minAvailable=1)
    before = fake_api.store.get("v1", "pods", "web-0", namespace)

    code = evict(core, namespace, "web-0", delete_options=client.V1DeleteOptions(dry_run=["All"]))

    assert code == 201
    assert fake_api.store.get("v1", "pods", "web-0", namespace) == before
    assert budget_counts(policy, namespace) == (2, 2, 1, 1)


def test_a_failed_precondition_is_a_conflict(fake_api: FakeApiServer, core: client.CoreV1Api,
                                             namespace: str) -> None:
    make_pod(fake_api, namespace, "web-0")

    code = evict(core, namespace, "web-0", delete_options=client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid="not-this-pod")))

    assert code == 409
    assert pod_names(fake_api, namespace) == {"web-0"}


@pytest.mark.parametrize(("method", "pod", "body", "code", "text"), [
    pytest.param("POST", "web-0", {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-1"}},
                 400, "name in URL does not match name in Eviction object", id="name-mismatch"),
    pytest.param("POST", "web-0", {"apiVersion": "policy/v1", "kind": "Eviction",
                                   "metadata": {"name": "web-0", "namespace": "elsewhere"}},
                 400, "namespace of the provided object does not match", id="namespace-mismatch"),
    pytest.param("POST", "web-0", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"}},
                 400, "expected policy/v1, Kind=Eviction", id="not-an-eviction"),
    pytest.param("POST", "missing", {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "missing"}},
                 404, 'pods "missing" not found', id="missing-pod"),
    pytest.param("GET", "web-0", None, 405, "does not allow this method", id="get"),
])
def test_malformed_or_misdirected_evictions_are_refused(
    fake_api: FakeApiServer, namespace: str, method: str, pod: str, body: dict[str, Any] | None, code: int, text: str
) -> None:
    make_pod(fake_api, namespace, "web-0")

    answer, _, status = raw_request(fake_api.url, method, f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction",
                                    body=None if body is None else json.dumps(body),
                                    headers={"Content-Type": "application/json"})

    assert (answer, status["code"]) == (code, code)
    assert text in status["message"]
    assert pod_names(fake_api, namespace) == {"web-0"}


def test_a_server_without_the_eviction_api_answers_404_naming_no_object() -> None:
    with FakeApiServer(eviction_api=False) as server:
        make_pod(server, "default", "web-0")
        configuration = client.Configuration()
        configuration.host = server.url
        with client.ApiClient(configuration) as api_client:
            core = client.CoreV1Api(api_client)
            served = {r.name for r in core.get_api_resources().resources}
            with pytest.raises(client.ApiException) as caught:
                core.create_namespaced_pod_eviction("web-0", "default", client.V1Eviction(
                    metadata=client.V1ObjectMeta(name="web-0", namespace="default")))

        assert "pods/eviction" not in served
        assert caught.value.status == 404
        assert "details" not in status_of(caught.value)
        assert pod_names(server, "default") == {"web-0"}


# -- kubectl


Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    def run(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        command = [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"), *arguments]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=check)
    return run


@needs_kubectl
def test_kubectl_get_pdb_shows_bounds_and_allowed_disruptions(
    fake_api: FakeApiServer, policy: client.PolicyV1Api, kubectl: Kubectl, namespace: str
) -> None:
    for index in range(3):
        make_pod(fake_api, namespace, f"web-{index}")
    make_budget(policy, namespace, "web", minAvailable=2)
    make_budget(policy, namespace, "batch", selector={"matchLabels": {"app": "batch"}}, maxUnavailable="50%")

    header, *rows = kubectl("get", "pdb", "-n", namespace).stdout.splitlines()

    assert header.split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert [row.split()[:4] for row in rows] == [["batch", "N/A", "50%", "0"], ["web", "2", "N/A", "1"]]


@needs_kubectl
def test_kubectl_drain_waits_for_the_budget_and_evicts_once_it_allows(
    fake_api: FakeApiServer, policy: client.PolicyV1Api, kubectl: Kubectl, namespace: str
) -> None:
    node = f"{namespace}-node"
    fake_api.store.create("v1", "nodes", {"metadata": {"name": node}})
    make_pod(fake_api, namespace, "web-0", node=node)
    make_pod(fake_api, namespace, "web-1", node=node)
    make_budget(policy, namespace, minAvailable=2)

    blocked = kubectl("drain", node, "--force", "--ignore-daemonsets", "--timeout=1s", check=False)
    policy.patch_namespaced_pod_disruption_budget("web", namespace, {"spec": {"minAvailable": 0}})
    drained = kubectl("drain", node, "--force", "--ignore-daemonsets", "--timeout=10s", check=False)

    assert blocked.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget" in blocked.stderr
    assert drained.returncode == 0, drained.stderr
    assert "pod/web-0 evicted" in drained.stdout
    assert pod_names(fake_api, namespace) == set()
    assert fake_api.store.get("v1", "nodes", node)["spec"]["unschedulable"] is True
    fake_api.store.delete("v1", "nodes", node)
