"""The Group and Node models as a user and the other layers meet them: wire names, defaults, immutability."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas import common, group, node
from schemas.common import Condition, Metadata, Model, Taint, human_moment
from schemas.group import Group, GroupSpec, GroupStatus, NodeTemplate, PowerOffNodePolicy
from schemas.node import JobTemplate, Node, NodeSpec, NodeState, NodeStatus, PowerPolicy


def full_group() -> dict[str, Any]:
    """A Group with every field set to a value other than its default, as a user and the operator write it."""
    return {
        "metadata": {"name": "workers", "namespace": "homelab", "labels": {"tier": "compute"}},
        "spec": {
            "minSize": 1,
            "maxSize": 4,
            "maxConcurrentBoots": 2,
            "bootTimeout": "8m",
            "shutdownTimeout": "3m",
            "failurePolicy": {"quarantineAfter": 5, "cooldownBase": "1m", "cooldownCap": "1h", "shutdownRetries": 1},
            "powerOffNodePolicy": "Keep",
            "autoscalingOptions": {
                "scaleDownUtilizationThreshold": 0.4,
                "scaleDownGpuUtilizationThreshold": 0.3,
                "scaleDownUnneededTime": "15m",
                "scaleDownUnreadyTime": "25m",
                "maxNodeProvisionTime": "12m",
                "zeroOrMaxNodeScaling": True,
                "ignoreDaemonSetsUtilization": True,
            },
            "template": {
                "capacity": {"cpu": "8", "memory": "31Gi", "pods": "110"},
                "allocatable": {"cpu": "7500m", "memory": "30Gi", "pods": "110"},
                "labels": {"kubernetes.io/arch": "amd64"},
                "taints": [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}],
            },
            "gpuLabel": "nvidia.com/gpu.present",
            "gpuTypes": ["nvidia-rtx-3060"],
            "nodeLabels": {"homelab.example/rack": "a"},
            "nodeTaints": [{"key": "homelab.example/power", "value": "on-demand", "effect": "PreferNoSchedule"}],
            "schedules": [
                {"name": "office", "days": ["Mon", "Tue"], "start": "08:00", "end": "18:00",
                 "timeZone": "Europe/Berlin", "minSize": 2, "maxSize": 4},
            ],
            "exercise": {
                "every": "336h",
                "window": {"days": ["Sat"], "start": "02:00", "end": "06:00", "timeZone": "Europe/Berlin"},
            },
        },
        "status": {
            "targetSize": 2,
            "readyCount": 1,
            "machines": {"Ready": 1, "StartingUp": 1},
            "conditions": [
                {
                    "type": "Healthy",
                    "status": "True",
                    "reason": "AllMachinesHealthy",
                    "message": "2 of 2 machines healthy",
                    "lastTransitionTime": "2026-01-02T03:04:05Z",
                    "observedGeneration": 3,
                }
            ],
            "observedGeneration": 3,
            "minSize": 2,
            "maxSize": 4,
            "activeSchedule": "office",
            "nextScheduleChange": "2026-01-05T17:00:00Z",
            "exercising": "node2",
        },
    }


def full_job(kind: str) -> dict[str, Any]:
    return {
        "image": f"ghcr.io/example/power:{kind}",
        "command": ["/bin/power"],
        "args": [kind, "--mac", "aa:bb:cc:dd:ee:ff"],
        "env": [
            {"name": "BMC_HOST", "value": "10.0.0.5"},
            {"name": "BMC_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "bmc", "key": "password"}}},
            {
                "name": "PLUG",
                "valueFrom": {"configMapKeyRef": {"name": "plugs", "key": "node1", "optional": True}},
            },
        ],
        "envFrom": [{"prefix": "IPMI_", "secretRef": {"name": "ipmi"}}, {"configMapRef": {"name": "power"}}],
        "volumes": [
            {"name": "ssh-key", "mountPath": "/etc/ssh-key", "secretName": "ssh"},
            {"name": "scripts", "mountPath": "/scripts", "configMapName": "power-scripts"},
        ],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "serviceAccountName": "power",
        "hostNetwork": True,
        "nodeSelector": {"kubernetes.io/hostname": "control-plane"},
        "tolerations": [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "power", "operator": "Equal", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 30},
        ],
        "activeDeadlineSeconds": 300,
        "backoffLimit": 3,
        "ttlSecondsAfterFinished": 60,
    }


def full_node() -> dict[str, Any]:
    """A Node with every field set, including a status as the operator records it."""
    return {
        "metadata": {
            "name": "node1",
            "namespace": "homelab",
            "uid": "0b4f8a4e-1",
            "resourceVersion": "42",
            "generation": 3,
            "labels": {"infra.homecluster.dev/group": "workers"},
            "annotations": {"infra.homecluster.dev/reset": "1"},
            "deletionTimestamp": "2026-01-02T05:00:00Z",
        },
        "spec": {
            "kubernetesNodeName": "node1.lan",
            "providerID": "k3s://node1",
            "powerPolicy": "On",
            "priority": 10,
            "pricing": {"hourlyPrice": "0.05", "powerWatts": 65},
            "startupJob": full_job("startup"),
            "shutdownJob": full_job("shutdown"),
        },
        "status": {
            "state": "StartingUp",
            "since": "2026-01-02T03:04:05Z",
            "operation": {
                "kind": "startup",
                "attempt": 2,
                "jobName": "node1-startup-2",
                "started": "2026-01-02T03:04:05Z",
            },
            "consecutiveFailures": 1,
            "cooldownUntil": "2026-01-02T03:05:05Z",
            "providerID": "k3s://node1",
            "lastReady": {
                "labels": {"kubernetes.io/hostname": "node1"},
                "taints": [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}],
                "capacity": {"cpu": "8", "pods": "110"},
                "allocatable": {"cpu": "7500m", "pods": "110"},
                "seenAt": "2026-01-01T00:00:00Z",
            },
            "poweredOnSeconds": 3600.5,
            "reason": "BootRetried",
            "message": "first boot timed out",
            "handledReset": "0",
            "powerReadback": {"state": "Off", "observedAt": "2026-01-01T00:10:00Z", "driver": "ipmi"},
            "conditions": [{"type": "Ready", "status": "False", "reason": "Booting"}],
            "observedGeneration": 3,
            "lastExercise": {
                "started": "2026-01-02T03:00:00Z",
                "outcome": "Succeeded",
                "finished": "2026-01-02T03:04:05Z",
                "message": "Ready 2m after the power-on; powered off again",
            },
        },
    }


def minimal_group() -> dict[str, Any]:
    return {"metadata": {"name": "workers"}, "spec": {"maxSize": 3}}


def minimal_node() -> dict[str, Any]:
    return {
        "metadata": {"name": "node1", "labels": {"infra.homecluster.dev/group": "workers"}},
        "spec": {"startupJob": {"image": "wol:1"}, "shutdownJob": {"image": "ssh-poweroff:1"}},
    }


def natively_powered_node() -> dict[str, Any]:
    return {
        "metadata": {"name": "node2", "labels": {"infra.homecluster.dev/group": "workers"}},
        "spec": {"power": {"wakeOnLan": {"macAddress": "aa:bb:cc:dd:ee:ff"}, "redfish": {
            "endpoint": "https://10.0.0.6", "credentials": {"name": "bmc"}, "forceOffAfter": "90s"}}},
        "status": {
            "state": "ShuttingDown",
            "operation": {"kind": "shutdown", "attempt": 4, "jobName": "node2-shutdown-4",
                          "started": "2026-01-01T00:00:00Z", "driver": "redfish",
                          "commanded": "2026-01-01T00:00:01Z", "forcedOff": "2026-01-01T00:01:31Z"},
        },
    }


def _wire(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json", exclude_unset=True)


def _nested_models(value: object) -> Iterator[BaseModel]:
    """Every model instance inside `value`, itself included."""
    if isinstance(value, BaseModel):
        yield value
        for field_name in type(value).model_fields:
            yield from _nested_models(getattr(value, field_name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _nested_models(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _nested_models(item)


def _all_model_classes() -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set()
    for module in (common, group, node):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Model) and value.__module__ == module.__name__:
                found.add(value)
    # Bases only: their fields are sampled through the models built on them.
    found.discard(common.StatusModel)
    found.discard(Model)
    found.discard(group.WeeklyWindow)  # Schedule and ExerciseWindow
    return found


SAMPLE_INSTANCES = [
    *_nested_models(Group.model_validate(full_group())),
    *_nested_models(Node.model_validate(full_node())),
]


@pytest.mark.parametrize(
    ("model", "wire"),
    [
        pytest.param(Group, full_group(), id="group-every-field"),
        pytest.param(Node, full_node(), id="node-every-field"),
        pytest.param(Group, minimal_group(), id="group-minimal"),
        pytest.param(Node, minimal_node(), id="node-minimal"),
        pytest.param(Node, natively_powered_node(), id="node-powered-natively"),
    ],
)
def test_wire_form_survives_a_round_trip(model: type[BaseModel], wire: dict[str, Any]) -> None:
    assert _wire(model.model_validate(copy.deepcopy(wire))) == wire


def test_samples_cover_every_model_so_every_model_is_tested() -> None:
    assert {type(instance) for instance in SAMPLE_INSTANCES} == _all_model_classes()


@pytest.mark.parametrize("instance", SAMPLE_INSTANCES, ids=lambda instance: type(instance).__name__)
def test_every_model_pickles(instance: BaseModel) -> None:
    # Actor messages carry these models, and message payloads must survive pickling.
    assert pickle.loads(pickle.dumps(instance)) == instance


@pytest.mark.parametrize("instance", SAMPLE_INSTANCES, ids=lambda instance: type(instance).__name__)
def test_every_model_is_frozen(instance: BaseModel) -> None:
    field_name = next(iter(type(instance).model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(instance, field_name, getattr(instance, field_name))


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        pytest.param(lambda: GroupSpec(max_size=3).min_size, 0, id="group-minSize"),
        pytest.param(lambda: GroupSpec(max_size=3).boot_timeout, "10m", id="group-bootTimeout"),
        pytest.param(lambda: GroupSpec(max_size=3).shutdown_timeout, "5m", id="group-shutdownTimeout"),
        pytest.param(lambda: GroupSpec(max_size=3).failure_policy.quarantine_after, 3, id="quarantineAfter"),
        pytest.param(lambda: GroupSpec(max_size=3).failure_policy.cooldown_base, "30s", id="cooldownBase"),
        pytest.param(lambda: GroupSpec(max_size=3).failure_policy.cooldown_cap, "30m", id="cooldownCap"),
        pytest.param(lambda: GroupSpec(max_size=3).failure_policy.shutdown_retries, 2, id="shutdownRetries"),
        pytest.param(
            lambda: GroupSpec(max_size=3).power_off_node_policy, PowerOffNodePolicy.DELETE, id="powerOffNodePolicy"
        ),
        pytest.param(lambda: GroupSpec(max_size=3).autoscaling_options, None, id="autoscalingOptions-unset"),
        pytest.param(lambda: Group.model_validate(minimal_group()).status.target_size, 0, id="group-status"),
        pytest.param(lambda: Node.model_validate(minimal_node()).spec.power_policy, PowerPolicy.AUTO, id="powerPolicy"),
        pytest.param(lambda: Node.model_validate(minimal_node()).spec.priority, 0, id="priority"),
        pytest.param(lambda: JobTemplate(image="x").backoff_limit, 1, id="job-backoffLimit"),
        pytest.param(lambda: JobTemplate(image="x").ttl_seconds_after_finished, 600, id="job-ttl"),
        pytest.param(lambda: JobTemplate(image="x").host_network, False, id="job-hostNetwork"),
        pytest.param(lambda: NodeStatus().state, NodeState.SHUTDOWN, id="node-state"),
        pytest.param(lambda: Taint(key="k", effect="NoSchedule").value, "", id="taint-value"),  # type: ignore[arg-type]
    ],
)
def test_defaults(read: Any, expected: object) -> None:
    assert read() == expected


@pytest.mark.parametrize(
    ("model", "python_name", "wire_name"),
    [
        pytest.param(GroupSpec, "min_size", "minSize", id="minSize"),
        pytest.param(GroupSpec, "power_off_node_policy", "powerOffNodePolicy", id="powerOffNodePolicy"),
        pytest.param(NodeSpec, "provider_id", "providerID", id="spec-providerID"),
        pytest.param(NodeStatus, "provider_id", "providerID", id="status-providerID"),
        pytest.param(NodeSpec, "kubernetes_node_name", "kubernetesNodeName", id="kubernetesNodeName"),
        pytest.param(JobTemplate, "ttl_seconds_after_finished", "ttlSecondsAfterFinished", id="ttl"),
        pytest.param(Condition, "last_transition_time", "lastTransitionTime", id="lastTransitionTime"),
        pytest.param(Metadata, "resource_version", "resourceVersion", id="resourceVersion"),
    ],
)
def test_wire_names_are_camel_case(model: type[BaseModel], python_name: str, wire_name: str) -> None:
    assert model.model_fields[python_name].alias == wire_name


def test_provider_id_is_spelled_exactly_as_kubernetes_spells_it() -> None:
    wire = _wire(Node.model_validate(full_node()))
    assert wire["spec"]["providerID"] == wire["status"]["providerID"] == "k3s://node1"
    assert "providerId" not in wire["spec"]
    assert "providerId" not in wire["status"]


def test_python_names_are_accepted_too() -> None:
    spec = NodeSpec.model_validate(
        {"provider_id": "k3s://a", "startup_job": {"image": "a"}, "shutdown_job": {"image": "b"}}
    )
    assert spec.provider_id == "k3s://a"


@pytest.mark.parametrize(
    ("model", "wire"),
    [
        pytest.param(GroupSpec, {"maxSize": 1, "maxsize": 2}, id="group-spec-typo"),
        pytest.param(JobTemplate, {"image": "x", "imagee": "y"}, id="job-typo"),
    ],
)
def test_specs_refuse_unknown_fields(model: type[BaseModel], wire: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model.model_validate(wire)


@pytest.mark.parametrize(
    ("model", "wire"),
    [
        pytest.param(GroupStatus, {"targetSize": 1, "fieldFromANewerOperator": 1}, id="group-status"),
        pytest.param(NodeStatus, {"state": "Ready", "fieldFromANewerOperator": 1}, id="node-status"),
        pytest.param(Group, {**minimal_group(), "apiVersion": "infra.homecluster.dev/v1alpha1"}, id="group"),
    ],
)
def test_status_and_objects_ignore_unknown_fields(model: type[BaseModel], wire: dict[str, Any]) -> None:
    assert "fieldFromANewerOperator" not in _wire(model.model_validate(wire))


@pytest.mark.parametrize(
    ("written", "read"),
    [
        pytest.param(8, "8", id="integer"),
        pytest.param("8", "8", id="string"),
        pytest.param("500m", "500m", id="milli"),
        pytest.param("31Gi", "31Gi", id="binary-suffix"),
    ],
)
def test_quantities_accept_the_unquoted_integers_yaml_users_write(written: object, read: str) -> None:
    template = NodeTemplate.model_validate({"capacity": {"cpu": written, "pods": 110}})
    assert template.capacity == {"cpu": read, "pods": "110"}


@pytest.mark.parametrize("written", [pytest.param(True, id="boolean"), pytest.param(1.5, id="float")])
def test_quantities_refuse_other_scalars(written: object) -> None:
    with pytest.raises(ValidationError):
        NodeTemplate.model_validate({"capacity": {"cpu": written, "pods": "110"}})


# Parsed models share equal parts to save memory (one "fields given" set per distinct content, interned strings);
# what a reader or the writer sees of each instance must not change.

@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({"state": "Ready"}, {"state": "Ready", "attempts": 2}, id="different-fields-given"),
        pytest.param({"state": "Ready"}, {"state": "Shutdown"}, id="same-fields-given"),
    ],
)
def test_fields_given_stay_per_instance(first: dict[str, Any], second: dict[str, Any]) -> None:
    one, other = NodeStatus.model_validate(first), NodeStatus.model_validate(second)
    copied = one.model_copy(update={"reason": "Copied"})

    assert one.model_dump(mode="json", exclude_unset=True) == first
    assert other.model_dump(mode="json", exclude_unset=True) == second
    assert copied.model_fields_set == {*first, "reason"}
    assert NodeStatus.model_validate(first).model_fields_set == set(first)


def test_parsed_strings_read_as_given() -> None:
    wire = {
        "image": "busybox:1.36",
        "command": ["sh", "-c", "echo on"],
        "env": [{"name": "MACHINE", "value": "machine-1"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
    }

    first, second = JobTemplate.model_validate(wire), JobTemplate.model_validate(wire)

    assert first == second
    assert first.model_dump(mode="json", by_alias=True, exclude_unset=True) == wire
    assert first.command == ("sh", "-c", "echo on")


_HUMAN_NOW = datetime(2026, 3, 1, 6, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(_HUMAN_NOW + timedelta(seconds=73.9), "06:01:14 UTC (in 1m13s)", id="soon"),
        pytest.param(_HUMAN_NOW - timedelta(minutes=5), "05:55:00 UTC (5m ago)", id="past"),
        pytest.param(_HUMAN_NOW + timedelta(days=1, hours=2), "2026-03-02 08:00:00 UTC (in 1d2h)", id="another-day"),
    ],
)
def test_moments_are_shown_to_people_as_a_clock_time_and_a_distance(moment: datetime, expected: str) -> None:
    assert human_moment(moment, _HUMAN_NOW) == expected
