"""The admission rules: each bad object is refused at the right field path with a message a person can act on."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.group import Group, GroupSpec
from schemas.labels import GROUP_LABEL
from schemas.node import Node, NodeSpec
from schemas.validation import (
    FieldError,
    field_errors_from_validation_error,
    is_dns_subdomain,
    is_label_value,
    is_qualified_name,
    validate_group,
    validate_node,
)

Change = Callable[[dict[str, Any]], None]


def valid_group() -> dict[str, Any]:
    return {
        "apiVersion": "infra.homecluster.dev/v1alpha1",
        "kind": "Group",
        "metadata": {"name": "workers", "namespace": "homelab", "uid": "u1", "managedFields": []},
        "spec": {
            "minSize": 0,
            "maxSize": 3,
            "failurePolicy": {"cooldownBase": "30s", "cooldownCap": "30m"},
            "template": {
                "capacity": {"cpu": 8, "memory": "32Gi", "pods": "110"},
                "allocatable": {"cpu": "7500m", "memory": "30Gi"},
                "labels": {"kubernetes.io/arch": "amd64"},
                "taints": [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}],
            },
            "nodeLabels": {"homelab.example/rack": "a"},
            "nodeTaints": [{"key": "power", "value": "on-demand", "effect": "NoSchedule"}],
            "schedules": [
                {"name": "office", "days": ["Mon", "Fri"], "start": "08:00", "end": "18:00",
                 "timeZone": "Europe/Berlin", "minSize": 2},
                {"name": "nights", "days": ["Sat"], "start": "22:00", "end": "06:00", "maxSize": 1},
            ],
        },
    }


def valid_job() -> dict[str, Any]:
    return {
        "image": "ghcr.io/example/power:1",
        "env": [
            {"name": "HOST", "value": "10.0.0.5"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "bmc", "key": "password"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "power"}}],
        "volumes": [
            {"name": "ssh", "mountPath": "/etc/ssh-key", "secretName": "ssh"},
            {"name": "scripts", "mountPath": "/scripts", "configMapName": "scripts"},
        ],
        "resources": {"requests": {"memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "nodeSelector": {"kubernetes.io/hostname": "control-plane"},
        "tolerations": [{"operator": "Exists"}, {"key": "power", "value": "yes", "effect": "NoSchedule"}],
    }


def valid_node() -> dict[str, Any]:
    return {
        "apiVersion": "infra.homecluster.dev/v1alpha1",
        "kind": "Node",
        "metadata": {"name": "node1", "namespace": "homelab", "labels": {GROUP_LABEL: "workers"}},
        "spec": {"providerID": "k3s://node1", "startupJob": valid_job(), "shutdownJob": valid_job()},
    }


def at(*path: str | int, value: object) -> Change:
    """A change setting the field at `path` (created as needed) to `value`."""

    def change(obj: dict[str, Any]) -> None:
        target: Any = obj
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
        target[path[-1]] = value

    return change


def without(*path: str | int) -> Change:
    def change(obj: dict[str, Any]) -> None:
        target: Any = obj
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


def appended(*path: str | int, value: object) -> Change:
    def change(obj: dict[str, Any]) -> None:
        target: Any = obj
        for key in path:
            target = target[key]
        target.append(value)

    return change


def _leaf(path: str) -> str:
    return re.split(r"\.(?![^\[]*\])", path)[-1]


GROUP_CASES = [
    pytest.param(at("spec", "minSize", value=5), "spec.minSize", "must not be greater than maxSize (3)", id="min>max"),
    pytest.param(without("spec", "maxSize"), "spec.maxSize", "is required", id="maxSize-missing"),
    pytest.param(at("spec", "maxSize", value=-1), "spec.maxSize", "must be at least 0", id="maxSize-negative"),
    pytest.param(at("spec", "maxSize", value="three"), "spec.maxSize", "valid integer", id="maxSize-text"),
    pytest.param(at("spec", "maxsize", value=3), "spec.maxsize", "not a known field", id="field-typo"),
    pytest.param(
        at("spec", "bootTimeout", value="10 minutes"), "spec.bootTimeout", "duration such as 90s", id="bad-duration"
    ),
    pytest.param(at("spec", "bootTimeout", value="0s"), "spec.bootTimeout", "longer than 0s", id="zero-timeout"),
    pytest.param(
        at("spec", "shutdownTimeout", value="0m"), "spec.shutdownTimeout", "longer than 0s", id="zero-shutdown"
    ),
    pytest.param(
        at("spec", "autoscalingOptions", "scaleDownUnneededTime", value="soon"),
        "spec.autoscalingOptions.scaleDownUnneededTime",
        "duration such as 90s",
        id="bad-ca-duration",
    ),
    pytest.param(
        at("spec", "autoscalingOptions", "scaleDownUtilizationThreshold", value=1.5),
        "spec.autoscalingOptions.scaleDownUtilizationThreshold",
        "must be at most 1",
        id="threshold>1",
    ),
    pytest.param(
        at("spec", "failurePolicy", "cooldownBase", value="1h"),
        "spec.failurePolicy.cooldownBase",
        "must not be longer than cooldownCap (30m)",
        id="cooldown>cap",
    ),
    pytest.param(
        at("spec", "failurePolicy", "cooldownBase", value="0s"),
        "spec.failurePolicy.cooldownBase",
        "longer than 0s",
        id="zero-cooldown",
    ),
    pytest.param(
        at("spec", "powerReadback", "transitionInterval", value="10m"),
        "spec.powerReadback.transitionInterval",
        "must not be longer than steadyInterval (5m)",
        id="readback-fast>slow",
    ),
    pytest.param(
        at("spec", "powerReadback", "steadyInterval", value="0s"),
        "spec.powerReadback.steadyInterval",
        "longer than 0s",
        id="readback-zero-interval",
    ),
    pytest.param(
        at("spec", "powerReadback", "powerOnGrace", value="10m"),
        "spec.powerReadback.powerOnGrace",
        "must be shorter than bootTimeout",
        id="grace>=bootTimeout",
    ),
    pytest.param(
        at("spec", "powerOffNodePolicy", value="Destroy"),
        "spec.powerOffNodePolicy",
        "must be one of 'Delete' or 'Keep'",
        id="bad-enum",
    ),
    pytest.param(
        without("spec", "template", "capacity", "pods"), "spec.template.capacity", "must include pods", id="no-pods"
    ),
    pytest.param(
        at("spec", "template", "capacity", "pods", value="0"),
        "spec.template.capacity[pods]",
        "must be at least 1",
        id="zero-pods",
    ),
    pytest.param(
        at("spec", "template", "capacity", "cpu", value="lots"),
        "spec.template.capacity[cpu]",
        "Kubernetes quantity",
        id="bad-quantity",
    ),
    pytest.param(
        at("spec", "template", "allocatable", "memory", value="64Gi"),
        "spec.template.allocatable[memory]",
        "must not exceed capacity[memory] (32Gi)",
        id="allocatable>capacity",
    ),
    pytest.param(
        at("spec", "template", "allocatable", "nvidia.com/gpu", value="1"),
        "spec.template.allocatable[nvidia.com/gpu]",
        "has no capacity[nvidia.com/gpu]",
        id="allocatable-without-capacity",
    ),
    pytest.param(
        at("spec", "template", "labels", "kubernetes.io/arch", value="x86 64"),
        "spec.template.labels[kubernetes.io/arch]",
        "not a valid label value",
        id="template-label-value",
    ),
    pytest.param(
        at("spec", "nodeLabels", GROUP_LABEL, value="other"),
        f"spec.nodeLabels[{GROUP_LABEL}]",
        "written by the operator",
        id="reserved-node-label",
    ),
    pytest.param(
        at("spec", "nodeLabels", "-rack", value="a"), "spec.nodeLabels[-rack]", "invalid key", id="bad-label-key"
    ),
    pytest.param(
        appended("spec", "nodeTaints", value={"key": "power", "value": "other", "effect": "NoSchedule"}),
        "spec.nodeTaints[1]",
        "repeats key 'power' with effect NoSchedule",
        id="duplicate-taint",
    ),
    pytest.param(
        at("spec", "nodeTaints", 0, "key", value="bad key"), "spec.nodeTaints[0].key", "taint key", id="taint-key"
    ),
    pytest.param(
        at("spec", "nodeTaints", 0, "effect", value="NoBoot"), "spec.nodeTaints[0].effect", "one of", id="effect"
    ),
    pytest.param(at("spec", "gpuLabel", value="not a key!"), "spec.gpuLabel", "label key", id="gpu-label"),
    pytest.param(
        at("spec", "autoscalingOptions", value={"maxNodeProvisionTime": "0s"}),
        "spec.autoscalingOptions.maxNodeProvisionTime",
        "give up on every boot at once",
        id="zero-provision-time",
    ),
    pytest.param(
        at("spec", "autoscalingOptions", value={"maxNodeProvisionTime": "automatic"}),
        "spec.autoscalingOptions.maxNodeProvisionTime",
        "",
        id="not-auto-nor-a-duration",
    ),
    pytest.param(at("metadata", "name", value="g" * 64), "metadata.name", "at most 63", id="long-group-name"),
    pytest.param(
        at("spec", "exercise", value={"every": "30m"}), "spec.exercise.every", "must be at least 1h",
        id="exercise-too-often",
    ),
    pytest.param(
        at("spec", "exercise", value={"window": {"days": ["Sat"], "start": "02:00", "end": "06:00",
                                                 "timeZone": "Europe/Atlantis"}}),
        "spec.exercise.window.timeZone",
        "is not an IANA time zone",
        id="exercise-window-unknown-zone",
    ),
    pytest.param(
        at("spec", "exercise", value={"window": {"days": ["Sat"], "start": "02:00", "end": "02:00"}}),
        "spec.exercise.window.end",
        "must differ from start",
        id="exercise-window-without-length",
    ),
    pytest.param(
        at("spec", "schedules", 0, "timeZone", value="Europe/Atlantis"),
        "spec.schedules[0].timeZone",
        "not an IANA time zone",
        id="schedule-unknown-zone",
    ),
    pytest.param(
        at("spec", "schedules", 0, "end", value="08:00"), "spec.schedules[0].end", "must differ from start",
        id="schedule-end-equals-start",
    ),
    pytest.param(
        at("spec", "schedules", 0, "minSize", value=4),
        "spec.schedules[0].minSize",
        "minSize (4) must not be greater than maxSize (3)",
        id="schedule-min-above-spec-max",
    ),
    pytest.param(
        at("spec", "schedules", 1, "minSize", value=2),
        "spec.schedules[1].minSize",
        "minSize (2) must not be greater than maxSize (1)",
        id="schedule-min-above-its-max",
    ),
    pytest.param(
        at("spec", "minSize", value=2), "spec.schedules[1].maxSize", "minSize (2) must not be greater than maxSize (1)",
        id="schedule-max-below-spec-min",
    ),
    pytest.param(
        without("spec", "schedules", 1, "maxSize"), "spec.schedules[1].minSize", "must set minSize, maxSize or both",
        id="schedule-overrides-nothing",
    ),
    pytest.param(
        at("spec", "schedules", 1, "name", value="office"), "spec.schedules[1].name", "used twice",
        id="schedule-name-twice",
    ),
    pytest.param(
        at("spec", "schedules", 0, "start", value="24:00"), "spec.schedules[0].start", "", id="schedule-start-24:00"
    ),
    pytest.param(at("spec", "schedules", 0, "days", value=["Monday"]), "spec.schedules[0].days[0]", "", id="bad-day"),
]


@pytest.mark.parametrize(("change", "path", "fragment"), GROUP_CASES)
def test_a_bad_group_is_refused_at_the_field(change: Change, path: str, fragment: str) -> None:
    group = valid_group()
    change(group)
    errors = validate_group(group)
    matching = [error for error in errors if error.path == path]
    assert matching, f"no error at {path}; got {errors}"
    assert any(fragment in error.message for error in matching), matching
    assert all(_leaf(error.path) in error.message for error in errors), "every message names its field"


NODE_CASES = [
    pytest.param(at("metadata", "name", value="n" * 64), "metadata.name", "at most 63 characters", id="long-name"),
    pytest.param(at("metadata", "name", value="Node_1"), "metadata.name", "lowercase RFC 1123", id="bad-name"),
    pytest.param(
        without("metadata", "labels", GROUP_LABEL), "metadata.labels", f"must include {GROUP_LABEL}", id="no-group"
    ),
    pytest.param(
        at("metadata", "labels", GROUP_LABEL, value="Not A Group"),
        f"metadata.labels[{GROUP_LABEL}]",
        "must be the name of a Group",
        id="bad-group-label",
    ),
    pytest.param(
        at("metadata", "labels", GROUP_LABEL, value="g" * 64),
        f"metadata.labels[{GROUP_LABEL}]",
        "at most 63 characters",
        id="long-group-label",
    ),
    pytest.param(
        at("spec", "providerID", value="node1"), "spec.providerID", "<scheme>://<id>", id="providerID-no-scheme"
    ),
    pytest.param(at("spec", "providerID", value=""), "spec.providerID", "at least 1", id="providerID-empty"),
    pytest.param(
        at("spec", "kubernetesNodeName", value="Node 1"), "spec.kubernetesNodeName", "RFC 1123", id="k8s-node-name"
    ),
    pytest.param(
        without("spec", "startupJob"), "spec.startupJob", "needs both startupJob and shutdownJob, or power",
        id="no-startup-job",
    ),
    pytest.param(
        at("spec", "power", value={"ipmi": {"host": "10.0.0.5", "credentials": {"name": "bmc"}}}),
        "spec.power", "either by Jobs (startupJob and shutdownJob) or natively (power), not both", id="jobs-and-power",
    ),
    pytest.param(at("spec", "powerPolicy", value="Sometimes"), "spec.powerPolicy", "one of", id="bad-policy"),
    pytest.param(
        at("spec", "startupJob", "env", 0, value={"name": "HOST"}),
        "spec.startupJob.env[0]",
        "exactly one of value or valueFrom; it sets neither",
        id="env-neither",
    ),
    pytest.param(
        at("spec", "startupJob", "env", 1, "value", value="literal"),
        "spec.startupJob.env[1]",
        "exactly one of value or valueFrom; it sets both",
        id="env-both",
    ),
    pytest.param(
        at("spec", "startupJob", "env", 1, "valueFrom", "configMapKeyRef", value={"name": "c", "key": "k"}),
        "spec.startupJob.env[1].valueFrom",
        "exactly one of secretKeyRef or configMapKeyRef; it sets both",
        id="valueFrom-both",
    ),
    pytest.param(
        at("spec", "startupJob", "env", 1, "valueFrom", value={}),
        "spec.startupJob.env[1].valueFrom",
        "it sets neither",
        id="valueFrom-neither",
    ),
    pytest.param(
        at("spec", "startupJob", "env", 0, "name", value="1HOST"),
        "spec.startupJob.env[0].name",
        "environment variable name",
        id="env-name",
    ),
    pytest.param(
        at("spec", "startupJob", "env", value=[{"name": f"V{index}", "value": "x"} for index in range(65)]),
        "spec.startupJob.env",
        "at most 64 items",
        id="too-many-env",
    ),
    pytest.param(
        at("spec", "shutdownJob", "envFrom", 0, "secretRef", value={"name": "s"}),
        "spec.shutdownJob.envFrom[0]",
        "exactly one of secretRef or configMapRef; it sets both",
        id="envFrom-both",
    ),
    pytest.param(
        at("spec", "shutdownJob", "envFrom", 0, value={"prefix": "X_"}),
        "spec.shutdownJob.envFrom[0]",
        "it sets neither",
        id="envFrom-neither",
    ),
    pytest.param(
        without("spec", "startupJob", "volumes", 0, "secretName"),
        "spec.startupJob.volumes[0]",
        "exactly one of secretName or configMapName; it sets neither",
        id="volume-neither",
    ),
    pytest.param(
        at("spec", "startupJob", "volumes", 0, "configMapName", value="c"),
        "spec.startupJob.volumes[0]",
        "it sets both",
        id="volume-both",
    ),
    pytest.param(
        at("spec", "startupJob", "volumes", 1, "name", value="ssh"),
        "spec.startupJob.volumes[1].name",
        "volume names must be unique",
        id="volume-name-twice",
    ),
    pytest.param(
        at("spec", "startupJob", "volumes", 1, "mountPath", value="/etc/ssh-key/"),
        "spec.startupJob.volumes[1].mountPath",
        "its own mount path",
        id="mount-path-twice",
    ),
    pytest.param(
        at("spec", "startupJob", "volumes", 0, "mountPath", value="etc/ssh"),
        "spec.startupJob.volumes[0].mountPath",
        "absolute path",
        id="relative-mount-path",
    ),
    pytest.param(
        at("spec", "startupJob", "volumes", 0, "name", value="SSH"),
        "spec.startupJob.volumes[0].name",
        "RFC 1123 label",
        id="volume-name-format",
    ),
    pytest.param(
        at("spec", "startupJob", "tolerations", 0, "value", value="x"),
        "spec.startupJob.tolerations[0].value",
        "operator Exists, so value must be empty",
        id="exists-with-value",
    ),
    pytest.param(
        at("spec", "startupJob", "tolerations", 0, "operator", value="Equal"),
        "spec.startupJob.tolerations[0].operator",
        "no key, so operator must be Exists",
        id="equal-without-key",
    ),
    pytest.param(
        at("spec", "startupJob", "tolerations", 1, "tolerationSeconds", value=30),
        "spec.startupJob.tolerations[1].tolerationSeconds",
        "needs effect NoExecute",
        id="seconds-without-noexecute",
    ),
    pytest.param(
        at("spec", "startupJob", "nodeSelector", "kubernetes.io/hostname", value="control plane"),
        "spec.startupJob.nodeSelector[kubernetes.io/hostname]",
        "not a valid label value",
        id="node-selector",
    ),
    pytest.param(
        at("spec", "startupJob", "resources", "requests", "memory", value="1Gi"),
        "spec.startupJob.resources.requests[memory]",
        "must not exceed limits[memory] (64Mi)",
        id="request>limit",
    ),
    pytest.param(
        at("spec", "pricing", "hourlyPrice", value="cheap"), "spec.pricing.hourlyPrice", "decimal number", id="price"
    ),
    pytest.param(
        at("spec", "pricing", value={"powerWatts": -40}), "spec.pricing.powerWatts", "must be at least 0",
        id="negative-watts",
    ),
    pytest.param(
        at("spec", "pricing", value={"powerWatts": 250_000}), "spec.pricing.powerWatts", "must be at most 20000",
        id="absurd-watts",
    ),
    pytest.param(
        at("spec", "pricing", value={"powerWatts": 40, "standbyWatts": 60}),
        "spec.pricing.standbyWatts",
        "must not exceed powerWatts (40)",
        id="standby-above-on",
    ),
]


@pytest.mark.parametrize(("change", "path", "fragment"), NODE_CASES)
def test_a_bad_node_is_refused_at_the_field(change: Change, path: str, fragment: str) -> None:
    node = valid_node()
    change(node)
    errors = validate_node(node)
    matching = [error for error in errors if error.path == path]
    assert matching, f"no error at {path}; got {errors}"
    assert any(fragment in error.message for error in matching), matching
    assert all(_leaf(error.path) in error.message for error in errors), "every message names its field"


@pytest.mark.parametrize(
    ("validate", "obj"),
    [
        pytest.param(validate_group, valid_group(), id="group-dict"),
        pytest.param(validate_group, valid_group()["spec"], id="group-spec-dict"),
        pytest.param(validate_group, Group.model_validate(valid_group()), id="group-model"),
        pytest.param(validate_group, GroupSpec.model_validate(valid_group()["spec"]), id="group-spec-model"),
        pytest.param(validate_group, {"metadata": {"name": "g"}, "spec": {"maxSize": 0}}, id="group-minimal"),
        pytest.param(
            validate_group,
            {"metadata": {"name": "g"}, "spec": {"maxSize": 1, "autoscalingOptions": {"maxNodeProvisionTime": "auto"}}},
            id="group-learned-provision-time",
        ),
        pytest.param(validate_node, valid_node(), id="node-dict"),
        pytest.param(validate_node, valid_node()["spec"], id="node-spec-dict"),
        pytest.param(validate_node, Node.model_validate(valid_node()), id="node-model"),
        pytest.param(validate_node, NodeSpec.model_validate(valid_node()["spec"]), id="node-spec-model"),
    ],
)
def test_valid_objects_pass(validate: Callable[[Any], list[FieldError]], obj: Any) -> None:
    assert validate(obj) == []


def test_the_longest_name_that_fits_a_label_value_is_accepted() -> None:
    node = valid_node()
    node["metadata"]["name"] = "n" * 63
    assert validate_node(node) == []


def test_a_bare_spec_is_reported_with_paths_from_the_object_root() -> None:
    spec = valid_group()["spec"]
    spec["minSize"] = 9
    # The nights window keeps maxSize 1, below the new minSize too.
    assert [error.path for error in validate_group(spec)] == ["spec.minSize", "spec.schedules[1].maxSize"]


def test_field_errors_come_alone_because_cross_field_rules_need_a_well_formed_spec() -> None:
    group = valid_group()
    group["spec"]["maxSize"] = "three"
    group["spec"]["minSize"] = 9
    assert [error.path for error in validate_group(group)] == ["spec.maxSize"]


def test_every_problem_is_reported_at_once() -> None:
    node = valid_node()
    node["metadata"]["labels"] = {}
    node["spec"]["providerID"] = "node1"
    node["spec"]["shutdownJob"]["volumes"][1]["name"] = "ssh"
    assert {error.path for error in validate_node(node)} == {
        "metadata.labels",
        "spec.providerID",
        "spec.shutdownJob.volumes[1].name",
    }


def test_python_names_in_the_input_are_reported_with_wire_names() -> None:
    with pytest.raises(ValidationError) as caught:
        NodeSpec.model_validate({"provider_id": "", "startup_job": {"image": "x", "env_from": [{"prefix": 1}]}})
    errors = field_errors_from_validation_error(caught.value, NodeSpec, "spec")
    assert {error.path for error in errors} == {
        "spec.providerID",
        "spec.startupJob.envFrom[0].prefix",
    }


def test_field_errors_render_as_path_and_message() -> None:
    assert str(FieldError("spec.maxSize", "maxSize is required")) == "spec.maxSize: maxSize is required"


def test_a_changed_object_is_not_mutated_by_validation() -> None:
    node = valid_node()
    before = copy.deepcopy(node)
    validate_node(node)
    assert node == before


@pytest.mark.parametrize(
    ("predicate", "text", "expected"),
    [
        pytest.param(is_label_value, "", True, id="label-value-empty"),
        pytest.param(is_label_value, "a.b_c-d", True, id="label-value-punctuation"),
        pytest.param(is_label_value, "a" * 63, True, id="label-value-63"),
        pytest.param(is_label_value, "a" * 64, False, id="label-value-64"),
        pytest.param(is_label_value, "-a", False, id="label-value-leading-dash"),
        pytest.param(is_label_value, "a b", False, id="label-value-space"),
        pytest.param(is_qualified_name, "infra.homecluster.dev/group", True, id="key-prefixed"),
        pytest.param(is_qualified_name, "dedicated", True, id="key-plain"),
        pytest.param(is_qualified_name, "/group", False, id="key-empty-prefix"),
        pytest.param(is_qualified_name, "Bad_Prefix/group", False, id="key-bad-prefix"),
        pytest.param(is_qualified_name, "a/b/c", False, id="key-two-slashes"),
        pytest.param(is_qualified_name, "x" * 64, False, id="key-name-64"),
        pytest.param(is_dns_subdomain, "node-1.lan", True, id="subdomain"),
        pytest.param(is_dns_subdomain, "Node1", False, id="subdomain-uppercase"),
        pytest.param(is_dns_subdomain, "a" * 254, False, id="subdomain-254"),
    ],
)
def test_kubernetes_name_formats(predicate: Callable[[str], bool], text: str, expected: bool) -> None:
    assert predicate(text) is expected
