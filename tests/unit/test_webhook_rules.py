"""What the admission webhook answers for each kind of request, decided without sockets over a fake cache."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from schemas import GROUP_VERSION
from schemas.labels import GROUP_LABEL
from webhooks.admission import (
    ALL_NAMESPACES,
    AdmissionRules,
    KnownMachine,
    MalformedReviewError,
    parse_review,
    review,
)

NAMESPACE = "homelab"
ALWAYS_ON = {"node-role.kubernetes.io/control-plane": ""}
"""Power Jobs pinned to a machine that stays on, as the examples pin theirs (otherwise a warning)."""


@dataclass
class FakeLookup:
    """An AdmissionLookup over plain collections, as the operator's caches would answer."""

    groups: set[tuple[str, str]] = field(default_factory=lambda: {(NAMESPACE, "workers")})
    machines: list[KnownMachine] = field(default_factory=list)
    kubernetes_nodes: set[str] = field(default_factory=lambda: {"nas-1", "nas-2", "nas-3"})

    def group_exists(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.groups

    def nodes(self, namespace: str) -> Iterable[KnownMachine]:
        return [m for m in self.machines if namespace == ALL_NAMESPACES or m.namespace == namespace]

    def kubernetes_node_exists(self, name: str) -> bool:
        return name in self.kubernetes_nodes


class BrokenLookup:
    """A cache that fails every question, as one would while the API server is unreachable."""

    def group_exists(self, namespace: str, name: str) -> bool:
        raise ConnectionError("API server unreachable")

    def nodes(self, namespace: str) -> Iterable[KnownMachine]:
        raise ConnectionError("API server unreachable")

    def kubernetes_node_exists(self, name: str) -> bool:
        raise ConnectionError("API server unreachable")


def machine(
    name: str,
    *,
    kubernetes_node_name: str | None = None,
    provider_id: str | None = None,
    power_policy: str = "Auto",
    group: str | None = "workers",
    namespace: str = NAMESPACE,
) -> KnownMachine:
    return KnownMachine(name, kubernetes_node_name or name, provider_id, power_policy, group, namespace)


def node_object(name: str = "nas-1", group: str | None = "workers", **spec: Any) -> dict[str, Any]:
    labels = {GROUP_LABEL: group} if group is not None else {}
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Node",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels, "uid": f"uid-{name}"},
        "spec": {
            "startupJob": {"image": "ghcr.io/example/wol:1", "nodeSelector": ALWAYS_ON},
            "shutdownJob": {"image": "ghcr.io/example/ssh:1", "nodeSelector": ALWAYS_ON},
            **spec,
        },
    }


def group_object(name: str = "workers", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Group",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"maxSize": 3, **spec},
    }


def review_body(
    kind: str,
    operation: str,
    obj: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    *,
    group: str = "infra.homecluster.dev",
    uid: str = "req-1",
) -> bytes:
    name = (obj or old or {}).get("metadata", {}).get("name", "")
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": "v1alpha1" if group else "v1", "kind": kind},
        "resource": {"group": group, "version": "v1alpha1", "resource": kind.lower() + "s"},
        "operation": operation,
        "namespace": NAMESPACE,
        "name": name,
        "object": obj,
        "oldObject": old,
        "userInfo": {"username": "alice"},
    }
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).encode()


def answer(body: bytes, lookup: Any = None) -> dict[str, Any]:
    response: dict[str, Any] = review(body, AdmissionRules(lookup or FakeLookup()))["response"]
    return response


def denied_fields(response: dict[str, Any]) -> list[str]:
    assert response["allowed"] is False
    return [cause["field"] for cause in response["status"]["details"]["causes"]]


# --- Node ---------------------------------------------------------------------------------------------


def test_a_valid_node_is_admitted_silently() -> None:
    response = answer(review_body("Node", "CREATE", node_object()))
    assert response == {"uid": "req-1", "allowed": True}


@pytest.mark.parametrize(
    ("obj", "others", "expected_field", "expected_words"),
    [
        pytest.param(
            node_object(group="storage"),
            [],
            f"metadata.labels[{GROUP_LABEL}]",
            "Group 'storage', which does not exist",
            id="group-missing",
        ),
        pytest.param(node_object(group=None), [], "metadata.labels", GROUP_LABEL, id="group-label-missing"),
        pytest.param(
            node_object(kubernetesNodeName="nas-2"),
            [machine("nas-2")],
            "spec.kubernetesNodeName",
            "'nas-2' is already used by Node nas-2",
            id="kubernetes-node-taken",
        ),
        pytest.param(
            node_object("nas-1"),
            [machine("old-box", kubernetes_node_name="nas-1")],
            "spec.kubernetesNodeName",
            "unset, so the Node name",
            id="defaulted-kubernetes-node-taken",
        ),
        pytest.param(
            node_object(kubernetesNodeName="nas-3"),
            [machine("nas-3", namespace="lab")],
            "spec.kubernetesNodeName",
            "lab/nas-3",
            id="kubernetes-node-taken-in-another-namespace",
        ),
        pytest.param(
            node_object(providerID="k3s://nas-1"),
            [machine("nas-2", provider_id="k3s://nas-1")],
            "spec.providerID",
            "'k3s://nas-1' is already used by Node nas-2",
            id="provider-id-taken",
        ),
        pytest.param(
            node_object(powerPolicy="Sometimes"),
            [],
            "spec.powerPolicy",
            "powerPolicy must be one of",
            id="schema-field-error",
        ),
        pytest.param(
            node_object(providerID="nas-1"),
            [],
            "spec.providerID",
            "<scheme>://<id>",
            id="schema-rule-error",
        ),
    ],
)
def test_node_denials_name_the_field_and_the_reason(
    obj: dict[str, Any], others: list[KnownMachine], expected_field: str, expected_words: str
) -> None:
    response = answer(review_body("Node", "CREATE", obj), FakeLookup(machines=others))
    assert expected_field in denied_fields(response)
    assert response["status"]["code"] == 422
    assert expected_field in response["status"]["message"]
    assert expected_words in response["status"]["message"]


def natively_powered(name: str = "nas-1", **power: Any) -> dict[str, Any]:
    obj = node_object(name)
    obj["spec"] = {"power": power}
    return obj


IPMI = {"host": "10.0.0.5", "credentials": {"name": "bmc-nas-1"}}


def test_a_node_powered_natively_is_admitted_silently() -> None:
    response = answer(review_body("Node", "CREATE", natively_powered(ipmi=IPMI)))
    assert response == {"uid": "req-1", "allowed": True}, "no power-Job placement warning without Jobs"


@pytest.mark.parametrize(
    ("obj", "expected_field", "expected_words"),
    [
        pytest.param(
            node_object(power={"ipmi": IPMI}),
            "spec.power",
            "either by Jobs (startupJob and shutdownJob) or natively (power), not both",
            id="both-ways",
        ),
        pytest.param(
            natively_powered(ipmi=IPMI, redfish={"endpoint": "https://bmc", "credentials": {"name": "c"}}),
            "spec.power",
            "name at most one BMC (ipmi or redfish), not both",
            id="two-bmcs",
        ),
        pytest.param(
            natively_powered(wakeOnLan={"macAddress": "aa:bb:cc:dd:ee:ff"}),
            "spec.power",
            "nothing can power the machine off: add ssh, ipmi or redfish",
            id="no-off-driver",
        ),
    ],
)
def test_one_way_to_power_a_machine_is_enforced_with_the_crds_words(
    obj: dict[str, Any], expected_field: str, expected_words: str
) -> None:
    response = answer(review_body("Node", "CREATE", obj))
    assert expected_field in denied_fields(response)
    assert expected_words in response["status"]["message"]


def test_every_violation_is_listed_not_just_the_first() -> None:
    obj = node_object(group="storage", kubernetesNodeName="nas-2", providerID="k3s://taken")
    others = [machine("nas-2", provider_id="k3s://taken")]
    response = answer(review_body("Node", "CREATE", obj), FakeLookup(machines=others))
    fields = denied_fields(response)
    assert all(f"({number}) " in response["status"]["message"] for number in (1, 2, 3))
    assert sorted(fields) == sorted([f"metadata.labels[{GROUP_LABEL}]", "spec.kubernetesNodeName", "spec.providerID"])


def test_an_update_does_not_conflict_with_the_stored_copy_of_itself() -> None:
    stored = node_object(kubernetesNodeName="nas-1", providerID="k3s://nas-1")
    changed = node_object(kubernetesNodeName="nas-1", providerID="k3s://nas-1", priority=5)
    lookup = FakeLookup(machines=[machine("nas-1", provider_id="k3s://nas-1")])
    assert answer(review_body("Node", "UPDATE", changed, stored), lookup)["allowed"] is True


@pytest.mark.parametrize(
    ("operation", "obj", "old", "warned"),
    [
        pytest.param("CREATE", node_object("nas-9"), None, True, id="create-warns"),
        pytest.param(
            "UPDATE", node_object("nas-9", priority=1), node_object("nas-9"), False, id="unrelated-update-is-quiet"
        ),
        pytest.param(
            "UPDATE", node_object("nas-1", kubernetesNodeName="nas-9"), node_object("nas-1"), True, id="repoint-warns"
        ),
    ],
)
def test_a_missing_kubernetes_node_warns_but_never_denies(
    operation: str, obj: dict[str, Any], old: dict[str, Any] | None, warned: bool
) -> None:
    # A powered-off machine has no Kubernetes Node; the original webhook refused it and broke every update.
    response = answer(review_body("Node", operation, obj, old))
    assert response["allowed"] is True
    warnings = response.get("warnings", [])
    assert bool(warnings) is warned
    assert all("nas-9" in warning and "does not exist" in warning for warning in warnings)


@pytest.mark.parametrize(
    ("spec", "unpinned"),
    [
        pytest.param({}, [], id="both-pinned"),
        pytest.param({"startupJob": {"image": "ghcr.io/example/wol:1"}}, ["startupJob"], id="startup-unpinned"),
        pytest.param(
            {"startupJob": {"image": "a:1"}, "shutdownJob": {"image": "b:1"}}, ["startupJob", "shutdownJob"],
            id="both-unpinned",
        ),
    ],
)
def test_a_power_job_that_may_run_on_a_powered_off_machine_is_allowed_with_a_warning(
    spec: dict[str, Any], unpinned: list[str]
) -> None:
    # Seen with the real CA: a pending power Job pod that fits a group's template makes CA scale up to run it.
    response = answer(review_body("Node", "CREATE", node_object("nas-1", **spec)))
    assert response["allowed"] is True
    placement = [warning for warning in response.get("warnings", []) if "nodeSelector" in warning]
    assert [warning.split(" ", 1)[0] for warning in placement] == [f"spec.{field}" for field in unpinned]
    assert all("Cluster Autoscaler may scale a group up to run it" in warning for warning in placement)


# --- Group --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_size", "machines", "allowed"),
    [
        pytest.param(2, [machine("a", power_policy="On"), machine("b", power_policy="On")], True, id="room-for-all"),
        pytest.param(1, [machine("a", power_policy="On"), machine("b", power_policy="On")], False, id="too-small"),
        pytest.param(
            1, [machine("a", power_policy="On"), machine("b", power_policy="Auto")], True, id="auto-not-counted"
        ),
        pytest.param(
            1,
            [machine("a", power_policy="On"), machine("b", power_policy="On", group="storage")],
            True,
            id="other-group-not-counted",
        ),
        pytest.param(
            1,
            [machine("a", power_policy="On"), machine("b", power_policy="On", namespace="lab")],
            True,
            id="other-namespace-not-counted",
        ),
    ],
)
def test_max_size_leaves_room_for_always_on_machines(
    max_size: int, machines: list[KnownMachine], allowed: bool
) -> None:
    response = answer(review_body("Group", "CREATE", group_object(maxSize=max_size)), FakeLookup(machines=machines))
    assert response["allowed"] is allowed
    if not allowed:
        assert denied_fields(response) == ["spec.maxSize"]
        assert "2 machines of this group with powerPolicy On (a, b)" in response["status"]["message"]


@pytest.mark.parametrize(
    ("window_max", "warned"),
    [
        pytest.param(1, True, id="window-max-below-the-always-on-machines"),
        pytest.param(2, False, id="window-max-room-for-them"),
    ],
)
def test_a_window_whose_max_is_below_the_always_on_machines_is_a_warning(window_max: int, warned: bool) -> None:
    window = {"name": "quiet", "days": ["Sun"], "start": "22:00", "end": "06:00", "maxSize": window_max}
    machines = [machine("a", power_policy="On"), machine("b", power_policy="On")]
    body = review_body("Group", "CREATE", group_object(maxSize=3, schedules=[window]))
    response = answer(body, FakeLookup(machines=machines))
    assert response["allowed"] is True
    warnings = response.get("warnings", [])
    assert bool(warnings) is warned
    if warned:
        assert warnings[0].startswith("schedule 'quiet': maxSize (1) is below the 2 machines of this group with "
                                      "powerPolicy On (a, b)")


def test_group_rules_from_the_schema_package_apply() -> None:
    response = answer(review_body("Group", "CREATE", group_object(minSize=4, maxSize=2)))
    assert denied_fields(response) == ["spec.minSize"]
    assert "minSize (4) must not be greater than maxSize (2)" in response["status"]["message"]


def test_a_malformed_group_is_denied_with_the_field_path() -> None:
    response = answer(review_body("Group", "CREATE", group_object(maxSize="three")))
    assert denied_fields(response) == ["spec.maxSize"]


# --- UPDATE of objects that were already invalid ------------------------------------------------------


def test_an_update_keeping_an_old_violation_is_allowed_with_a_warning() -> None:
    # Two always-on machines but maxSize 1, stored before the rule existed: a label edit must still go through.
    machines = [machine("a", power_policy="On"), machine("b", power_policy="On")]
    stored = group_object(maxSize=1)
    edited = {**group_object(maxSize=1), "metadata": {"name": "workers", "labels": {"team": "infra"}}}
    response = answer(review_body("Group", "UPDATE", edited, stored), FakeLookup(machines=machines))
    assert response["allowed"] is True
    assert any("already invalid before this update" in w and "spec.maxSize" in w for w in response["warnings"])


def test_an_update_adding_a_new_violation_is_denied() -> None:
    machines = [machine("a", power_policy="On"), machine("b", power_policy="On")]
    response = answer(
        review_body("Group", "UPDATE", group_object(maxSize=1), group_object(maxSize=2)), FakeLookup(machines=machines)
    )
    assert denied_fields(response) == ["spec.maxSize"]


# --- what is not checked ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(review_body("Node", "DELETE", None, node_object()), id="delete-node"),
        pytest.param(review_body("Group", "DELETE", None, group_object()), id="delete-group"),
        pytest.param(review_body("Pod", "CREATE", {"metadata": {"name": "p"}}, group=""), id="other-kind"),
        pytest.param(review_body("Node", "CREATE", {"metadata": {"name": "n"}}, group=""), id="core-node"),
    ],
)
def test_deletes_and_foreign_kinds_are_allowed_without_looking(body: bytes) -> None:
    assert answer(body, BrokenLookup()) == {"uid": "req-1", "allowed": True}


def test_a_failing_cache_denies_with_an_internal_error_instead_of_crashing() -> None:
    response = answer(review_body("Node", "CREATE", node_object()), BrokenLookup())
    assert response["allowed"] is False
    assert response["status"]["code"] == 500
    assert "API server unreachable" in response["status"]["message"]


def test_the_response_echoes_the_request_uid() -> None:
    body = review_body("Node", "CREATE", node_object(group="storage"), uid="6f1c-uid")
    assert review(body, AdmissionRules(FakeLookup()))["response"]["uid"] == "6f1c-uid"


# --- malformed reviews --------------------------------------------------------------------------------


def _envelope(**changes: Any) -> bytes:
    document = json.loads(review_body("Node", "CREATE", node_object()))
    for key, value in changes.items():
        if key == "request_uid":
            document["request"]["uid"] = value
        elif value is None:
            document.pop(key)
        else:
            document[key] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "expected_words"),
    [
        pytest.param(b"{not json", "not valid JSON", id="not-json"),
        pytest.param(b"\xff\xfe", "not valid JSON", id="not-utf8"),
        pytest.param(b"[1, 2]", "JSON object", id="array"),
        pytest.param(_envelope(apiVersion="admission.k8s.io/v1beta1"), "admission.k8s.io/v1beta1", id="v1beta1"),
        pytest.param(_envelope(kind="ConversionReview"), "ConversionReview", id="wrong-kind"),
        pytest.param(_envelope(request=None), "no request", id="no-request"),
        pytest.param(_envelope(request_uid=""), "no uid", id="empty-uid"),
        pytest.param(_envelope(request_uid=7), "no uid", id="numeric-uid"),
        pytest.param(review_body("Node", "CREATE", None), "carries no object", id="create-without-object"),
    ],
)
def test_malformed_reviews_are_refused_with_a_plain_reason(body: bytes, expected_words: str) -> None:
    with pytest.raises(MalformedReviewError, match=expected_words):
        review(body, AdmissionRules(FakeLookup()))


def test_parse_review_reads_dispatch_fields() -> None:
    request = parse_review(review_body("Group", "UPDATE", group_object(), group_object()))
    assert (request.group, request.version, request.kind, request.operation) == (
        "infra.homecluster.dev",
        "v1alpha1",
        "Group",
        "UPDATE",
    )
    assert (request.namespace, request.name) == (NAMESPACE, "workers")
