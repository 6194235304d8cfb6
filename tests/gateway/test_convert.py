"""The pure converters: what CA reads for groups, instances, template nodes and options, and how the
nodes and pricing windows CA sends are read back. No server, no sockets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from actors.fsm.group import InstanceError, InstanceErrorClass, InstanceState, InstanceView
from actors.read_model import GroupSnapshot, MachineSnapshot, TemplateSource
from grpc_gateway import convert
from grpc_gateway.errors import InvalidRequest
from grpc_gateway.views import NodeGroupView, NodeRef, TemplateNode
from protos import externalgrpc_pb2 as externalgrpc
from protos import k8s_node_pb2 as kubernetes
from schemas.common import Taint, TaintEffect
from schemas.group import AutoscalingOptions
from schemas.node import NodeState, PowerPolicy

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
FAKE_NODE_REASON = "k8s.io/cluster-autoscaler/fake-node-reason"
States = externalgrpc.InstanceStatus


def parse_node(template: TemplateNode) -> kubernetes.Node:
    node: kubernetes.Node = kubernetes.Node.FromString(convert.node_bytes(template))
    return node


def quantities(resource_map: Any) -> dict[str, str]:
    return {name: quantity.string for name, quantity in resource_map.items()}


# ---- groups and instances ---------------------------------------------------------------------------


def test_node_group_carries_id_and_bounds() -> None:
    group = convert.to_pb_node_group(NodeGroupView(id="gpu", min_size=0, max_size=3, debug="3 machines"))

    assert (group.id, group.minSize, group.maxSize, group.debug) == ("gpu", 0, 3, "3 machines")


@pytest.mark.parametrize(
    ("view", "want_state", "want_error"),
    [
        pytest.param(
            InstanceView(id="homelab://infra/m1", state=InstanceState.CREATING),
            States.instanceCreating,
            None,
            id="booting",
        ),
        pytest.param(
            InstanceView(id="homelab://infra/m1", state=InstanceState.RUNNING),
            States.instanceRunning,
            None,
            id="running",
        ),
        pytest.param(
            InstanceView(id="homelab://infra/m1", state=InstanceState.DELETING),
            States.instanceDeleting,
            None,
            id="shutting-down",
        ),
        pytest.param(
            InstanceView(
                id="homelab://infra/m1",
                state=InstanceState.CREATING,
                error=InstanceError(code="WOL_FAILED", message="no ping after 10m"),
            ),
            States.instanceCreating,
            ("WOL_FAILED", "no ping after 10m", 99),
            id="failed-boot-defaults-to-class-other",
        ),
        pytest.param(
            InstanceView(
                id="homelab://infra/m1",
                state=InstanceState.CREATING,
                error=InstanceError(
                    code="NO_SPARE_MACHINE",
                    message="all machines quarantined",
                    error_class=InstanceErrorClass.OUT_OF_RESOURCES,
                ),
            ),
            States.instanceCreating,
            ("NO_SPARE_MACHINE", "all machines quarantined", 1),
            id="failed-boot-out-of-resources",
        ),
        pytest.param(
            InstanceView(
                id="homelab://infra/m1",
                state=InstanceState.CREATING,
                error=InstanceError(code="", message="ignored"),
            ),
            States.instanceCreating,
            None,
            id="message-without-code-is-no-error",
        ),
    ],
)
def test_instance_mapping(
    view: InstanceView, want_state: int, want_error: tuple[str, str, int] | None
) -> None:
    instance = convert.to_pb_instance(view)

    error = instance.status.errorInfo
    got_error = (error.errorCode, error.errorMessage, error.instanceErrorClass) if error.errorCode else None
    assert instance.id == "homelab://infra/m1"
    assert instance.status.instanceState == want_state
    assert got_error == want_error


def test_instance_id_is_the_provider_id_byte_for_byte() -> None:
    provider_id = "homelab://infra/Rack 2/m1%20"

    instance = convert.to_pb_instance(InstanceView(id=provider_id, state=InstanceState.RUNNING))

    assert externalgrpc.Instance.FromString(instance.SerializeToString()).id == provider_id


# ---- template node ----------------------------------------------------------------------------------

BASIC = TemplateNode(name="template-basic", capacity={"cpu": "8", "memory": "31Gi", "pods": "110"})


@pytest.mark.parametrize(
    ("template", "want_capacity", "want_allocatable"),
    [
        pytest.param(
            BASIC,
            {"cpu": "8", "memory": "31Gi", "pods": "110"},
            {"cpu": "8", "memory": "31Gi", "pods": "110"},
            id="allocatable-defaults-to-capacity",
        ),
        pytest.param(
            TemplateNode(name="t", capacity={"cpu": "4", "memory": "16Gi"}),
            {"cpu": "4", "memory": "16Gi", "pods": "110"},
            {"cpu": "4", "memory": "16Gi", "pods": "110"},
            id="missing-pods-gets-kubelet-default",
        ),
        pytest.param(
            TemplateNode(
                name="t",
                capacity={"cpu": "4", "memory": "16Gi", "pods": "250"},
                allocatable={"cpu": "3800m", "memory": "15Gi"},
            ),
            {"cpu": "4", "memory": "16Gi", "pods": "250"},
            {"cpu": "3800m", "memory": "15Gi", "pods": "250"},
            id="allocatable-without-pods-takes-capacity-pods",
        ),
        pytest.param(
            TemplateNode(
                name="t",
                capacity={"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "1"},
                allocatable={"cpu": "15", "memory": "60Gi", "pods": "100", "nvidia.com/gpu": "1"},
            ),
            {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "1"},
            {"cpu": "15", "memory": "60Gi", "pods": "100", "nvidia.com/gpu": "1"},
            id="extended-resources-and-explicit-allocatable",
        ),
    ],
)
def test_template_resources(
    template: TemplateNode, want_capacity: dict[str, str], want_allocatable: dict[str, str]
) -> None:
    node = parse_node(template)

    assert quantities(node.status.capacity) == want_capacity
    assert quantities(node.status.allocatable) == want_allocatable


@pytest.mark.parametrize(
    ("template", "want_labels"),
    [
        pytest.param(
            BASIC,
            {"kubernetes.io/os": "linux", "kubernetes.io/hostname": "template-basic"},
            id="os-and-hostname-always",
        ),
        pytest.param(
            TemplateNode(name="t", architecture="arm64", labels={"infra.homecluster.dev/group": "pis"}),
            {
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": "t",
                "kubernetes.io/arch": "arm64",
                "infra.homecluster.dev/group": "pis",
            },
            id="architecture-and-group-label",
        ),
        pytest.param(
            TemplateNode(
                name="t",
                architecture="amd64",
                labels={"kubernetes.io/arch": "arm64", "kubernetes.io/hostname": "m7", "zone": "attic"},
            ),
            {
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": "m7",
                "kubernetes.io/arch": "arm64",
                "zone": "attic",
            },
            id="labels-from-a-real-node-win",
        ),
    ],
)
def test_template_labels(template: TemplateNode, want_labels: dict[str, str]) -> None:
    assert dict(parse_node(template).metadata.labels) == want_labels


def test_template_is_ready_without_pressure() -> None:
    node = parse_node(BASIC)

    assert {condition.type: condition.status for condition in node.status.conditions} == {
        "Ready": "True",
        "MemoryPressure": "False",
        "DiskPressure": "False",
        "PIDPressure": "False",
        "NetworkUnavailable": "False",
    }


def test_template_carries_taints_in_order() -> None:
    template = TemplateNode(
        name="t",
        capacity={"pods": "110"},
        taints=(
            Taint(key="dedicated", value="gpu", effect=TaintEffect.NO_SCHEDULE),
            Taint(key="spot", effect=TaintEffect.PREFER_NO_SCHEDULE),
        ),
    )

    taints = [(taint.key, taint.value, taint.effect) for taint in parse_node(template).spec.taints]

    assert taints == [("dedicated", "gpu", "NoSchedule"), ("spot", "", "PreferNoSchedule")]


@pytest.mark.parametrize(
    ("provider_id", "want_present", "want_value"),
    [
        pytest.param("", False, "", id="provider-id-omitted"),
        pytest.param("homelab://infra/template", True, "homelab://infra/template", id="provider-id-given"),
    ],
)
def test_template_provider_id_is_optional(provider_id: str, want_present: bool, want_value: str) -> None:
    node = parse_node(TemplateNode(name="t", provider_id=provider_id))

    assert (node.spec.HasField("providerID"), node.spec.providerID) == (want_present, want_value)


def test_template_bytes_do_not_depend_on_mapping_order() -> None:
    forwards = TemplateNode(name="t", labels={"a": "1", "b": "2"}, capacity={"cpu": "2", "memory": "4Gi"})
    backwards = TemplateNode(name="t", labels={"b": "2", "a": "1"}, capacity={"memory": "4Gi", "cpu": "2"})

    assert convert.node_bytes(forwards) == convert.node_bytes(backwards)


def test_template_response_has_the_node_in_both_fields() -> None:
    response = convert.template_response(BASIC)

    assert response.nodeBytes == response.nodeInfo == convert.node_bytes(BASIC)
    assert response.nodeBytes != b""


# ---- autoscaling options ----------------------------------------------------------------------------


def cluster_autoscaler_defaults(**changes: Any) -> externalgrpc.NodeGroupAutoscalingOptions:
    """Defaults as CA 1.34.2 sends them (both layouts), with non-default values to spot a lost copy."""
    fields: dict[str, Any] = {
        "scaleDownUtilizationThreshold": 0.61,
        "scaleDownGpuUtilizationThreshold": 0.42,
        "zeroOrMaxNodeScaling": False,
        "ignoreDaemonSetsUtilization": True,
        "scaleDownUnneededTime": {"duration": 11 * MINUTE},
        "scaleDownUnreadyTime": {"duration": 21 * MINUTE},
        "MaxNodeProvisionTime": {"duration": 16 * MINUTE},
        "scaleDownUnneededDuration": {"seconds": 11 * 60},
        "scaleDownUnreadyDuration": {"seconds": 21 * 60},
        "MaxNodeProvisionDuration": {"seconds": 16 * 60},
    }
    fields.update(changes)
    return externalgrpc.NodeGroupAutoscalingOptions(**{k: v for k, v in fields.items() if v is not None})


def durations(options: externalgrpc.NodeGroupAutoscalingOptions) -> dict[str, tuple[int, int]]:
    """Each duration option as (current-layout ns, legacy-layout ns)."""
    return {
        "unneeded": (
            options.scaleDownUnneededDuration.ToNanoseconds(),
            options.scaleDownUnneededTime.duration,
        ),
        "unready": (options.scaleDownUnreadyDuration.ToNanoseconds(), options.scaleDownUnreadyTime.duration),
        "provision": (
            options.MaxNodeProvisionDuration.ToNanoseconds(),
            options.MaxNodeProvisionTime.duration,
        ),
    }


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(None, id="group-sets-no-options"),
        pytest.param(AutoscalingOptions(), id="group-sets-empty-options"),
    ],
)
def test_no_overrides_leaves_options_unset(overrides: AutoscalingOptions | None) -> None:
    request = externalgrpc.NodeGroupAutoscalingOptionsRequest(
        id="gpu", defaults=cluster_autoscaler_defaults()
    )

    response = convert.options_response(request, overrides)

    assert convert.autoscaling_options(request.defaults, overrides) is None
    assert not response.HasField("nodeGroupAutoscalingOptions")


def test_one_override_keeps_every_other_default() -> None:
    request = externalgrpc.NodeGroupAutoscalingOptionsRequest(
        id="gpu", defaults=cluster_autoscaler_defaults()
    )

    response = convert.options_response(request, AutoscalingOptions(scale_down_unneeded_time="30m"))

    options = response.nodeGroupAutoscalingOptions
    assert response.HasField("nodeGroupAutoscalingOptions")
    assert (options.scaleDownUtilizationThreshold, options.scaleDownGpuUtilizationThreshold) == (0.61, 0.42)
    assert (options.zeroOrMaxNodeScaling, options.ignoreDaemonSetsUtilization) == (False, True)
    assert durations(options) == {
        "unneeded": (30 * MINUTE, 30 * MINUTE),
        "unready": (21 * MINUTE, 21 * MINUTE),
        "provision": (16 * MINUTE, 16 * MINUTE),
    }


def test_every_override_applies_in_both_layouts() -> None:
    overrides = AutoscalingOptions(
        scale_down_utilization_threshold=0.3,
        scale_down_gpu_utilization_threshold=0.2,
        scale_down_unneeded_time="5m",
        scale_down_unready_time="1h",
        max_node_provision_time="12m30s",
        zero_or_max_node_scaling=True,
        ignore_daemon_sets_utilization=False,
    )

    options = convert.autoscaling_options(cluster_autoscaler_defaults(), overrides)

    assert options is not None
    assert (options.scaleDownUtilizationThreshold, options.scaleDownGpuUtilizationThreshold) == (0.3, 0.2)
    assert (options.zeroOrMaxNodeScaling, options.ignoreDaemonSetsUtilization) == (True, False)
    assert durations(options) == {
        "unneeded": (5 * MINUTE, 5 * MINUTE),
        "unready": (60 * MINUTE, 60 * MINUTE),
        "provision": (750 * SECOND, 750 * SECOND),
    }


@pytest.mark.parametrize(
    ("defaults", "want_unneeded", "want_provision"),
    [
        pytest.param(
            cluster_autoscaler_defaults(
                scaleDownUnneededDuration=None, scaleDownUnreadyDuration=None, MaxNodeProvisionDuration=None
            ),
            11 * MINUTE,
            16 * MINUTE,
            id="legacy-only-client-before-1.34.2",
        ),
        pytest.param(
            cluster_autoscaler_defaults(
                scaleDownUnneededTime=None, scaleDownUnreadyTime=None, MaxNodeProvisionTime=None
            ),
            11 * MINUTE,
            16 * MINUTE,
            id="current-only-client-1.35",
        ),
        pytest.param(
            cluster_autoscaler_defaults(MaxNodeProvisionTime={"duration": 99 * MINUTE}),
            11 * MINUTE,
            16 * MINUTE,
            id="both-layouts-current-wins",
        ),
        pytest.param(
            cluster_autoscaler_defaults(MaxNodeProvisionTime=None, MaxNodeProvisionDuration=None),
            11 * MINUTE,
            15 * MINUTE,
            id="client-before-1.29-without-provision-time-gets-ca-default",
        ),
        pytest.param(None, 10 * MINUTE, 15 * MINUTE, id="no-defaults-at-all-gets-ca-defaults"),
    ],
)
def test_defaults_from_any_client_layout(
    defaults: externalgrpc.NodeGroupAutoscalingOptions | None, want_unneeded: int, want_provision: int
) -> None:
    options = convert.autoscaling_options(defaults, AutoscalingOptions(zero_or_max_node_scaling=True))

    assert options is not None
    got = durations(options)
    assert got["unneeded"] == (want_unneeded, want_unneeded)
    assert got["provision"] == (want_provision, want_provision)


def test_no_defaults_at_all_never_answers_zero_thresholds() -> None:
    request = externalgrpc.NodeGroupAutoscalingOptionsRequest(id="gpu")

    response = convert.options_response(request, AutoscalingOptions(ignore_daemon_sets_utilization=True))

    options = response.nodeGroupAutoscalingOptions
    assert (options.scaleDownUtilizationThreshold, options.scaleDownGpuUtilizationThreshold) == (0.5, 0.5)
    assert options.ignoreDaemonSetsUtilization is True


@pytest.mark.parametrize(
    ("defaults", "want_startup_seconds", "want_non_atomic"),
    [
        pytest.param(
            cluster_autoscaler_defaults(), 15 * 60, False, id="client-without-field-11-gets-ca-default"
        ),
        pytest.param(
            cluster_autoscaler_defaults(
                maxNodeStartupDuration={"seconds": 600}, allowNonAtomicScaleUpToMax=True
            ),
            600,
            True,
            id="future-client-values-copied",
        ),
    ],
)
def test_pending_upstream_fields(
    defaults: externalgrpc.NodeGroupAutoscalingOptions, want_startup_seconds: int, want_non_atomic: bool
) -> None:
    options = convert.autoscaling_options(defaults, AutoscalingOptions(scale_down_unready_time="25m"))

    assert options is not None
    assert options.maxNodeStartupDuration.ToSeconds() == want_startup_seconds
    assert options.allowNonAtomicScaleUpToMax is want_non_atomic


def test_fractional_override_is_exact_in_nanoseconds() -> None:
    options = convert.autoscaling_options(None, AutoscalingOptions(scale_down_unneeded_time="1.1s"))

    assert options is not None
    assert durations(options)["unneeded"] == (1_100_000_000, 1_100_000_000)


def test_defaults_passed_in_are_not_modified() -> None:
    defaults = cluster_autoscaler_defaults()
    before = defaults.SerializeToString(deterministic=True)

    convert.autoscaling_options(defaults, AutoscalingOptions(scale_down_unneeded_time="1m"))

    assert defaults.SerializeToString(deterministic=True) == before


INT64_NANOSECONDS_SECONDS = (2**63 - 1) // SECOND
"""Whole seconds of the longest duration int64 nanoseconds hold (about 292 years)."""


@pytest.mark.parametrize(
    ("duration", "want_nanoseconds"),
    [
        pytest.param(
            {"seconds": INT64_NANOSECONDS_SECONDS, "nanos": 854_775_807}, 2**63 - 1, id="int64-maximum-is-carried"
        ),
        pytest.param(
            {"seconds": -INT64_NANOSECONDS_SECONDS, "nanos": -854_775_808}, -(2**63), id="int64-minimum-is-carried"
        ),
        pytest.param({"seconds": INT64_NANOSECONDS_SECONDS + 1}, None, id="one-second-past-int64"),
        pytest.param({"seconds": -INT64_NANOSECONDS_SECONDS - 1}, None, id="one-second-before-int64"),
        pytest.param({"seconds": 315_576_000_000}, None, id="protobuf-duration-maximum"),
    ],
)
def test_a_default_duration_must_fit_int64_nanoseconds(duration: dict[str, int], want_nanoseconds: int | None) -> None:
    defaults = cluster_autoscaler_defaults(scaleDownUnreadyDuration=duration)
    overrides = AutoscalingOptions(scale_down_unneeded_time="1m")  # the unready default is carried over

    if want_nanoseconds is None:
        with pytest.raises(InvalidRequest, match=r"defaults\.scaleDownUnreadyDuration"):
            convert.autoscaling_options(defaults, overrides)
        return
    options = convert.autoscaling_options(defaults, overrides)
    assert options is not None
    assert durations(options)["unready"] == (want_nanoseconds, want_nanoseconds)


def test_an_out_of_range_default_that_is_overridden_is_not_read() -> None:
    defaults = cluster_autoscaler_defaults(scaleDownUnreadyDuration={"seconds": 315_576_000_000})

    options = convert.autoscaling_options(defaults, AutoscalingOptions(scale_down_unready_time="25m"))

    assert options is not None
    assert durations(options)["unready"] == (25 * MINUTE, 25 * MINUTE)


# ---- nodes CA sends ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "want"),
    [
        pytest.param(
            externalgrpc.ExternalGrpcNode(
                name="homelab://infra/m1",
                providerID="homelab://infra/m1",
                annotations={FAKE_NODE_REASON: "unregistered"},
            ),
            NodeRef(
                name="homelab://infra/m1",
                provider_id="homelab://infra/m1",
                annotations={FAKE_NODE_REASON: "unregistered"},
                is_stand_in=True,
            ),
            id="stand-in-for-unregistered-instance",
        ),
        pytest.param(
            externalgrpc.ExternalGrpcNode(
                name="homelab://infra/m1",
                providerID="homelab://infra/m1",
                annotations={FAKE_NODE_REASON: "create-error"},
            ),
            NodeRef(
                name="homelab://infra/m1",
                provider_id="homelab://infra/m1",
                annotations={FAKE_NODE_REASON: "create-error"},
                is_stand_in=True,
            ),
            id="stand-in-for-failed-boot",
        ),
        pytest.param(
            externalgrpc.ExternalGrpcNode(
                name="m1",
                providerID="homelab://infra/m1",
                labels={"infra.homecluster.dev/group": "gpu"},
                annotations={"node.alpha.kubernetes.io/ttl": "0"},
            ),
            NodeRef(
                name="m1",
                provider_id="homelab://infra/m1",
                labels={"infra.homecluster.dev/group": "gpu"},
                annotations={"node.alpha.kubernetes.io/ttl": "0"},
            ),
            id="real-node",
        ),
        pytest.param(
            externalgrpc.ExternalGrpcNode(name="m1", providerID="m1"),
            NodeRef(name="m1", provider_id="m1"),
            id="real-node-named-like-its-provider-id",
        ),
        pytest.param(
            externalgrpc.ExternalGrpcNode(name="control-plane"),
            NodeRef(name="control-plane", provider_id=""),
            id="node-without-provider-id",
        ),
        pytest.param(
            externalgrpc.ExternalGrpcNode(annotations={FAKE_NODE_REASON: "unregistered"}),
            NodeRef(name="", provider_id="", annotations={FAKE_NODE_REASON: "unregistered"}),
            id="annotation-without-identity-is-not-a-stand-in",
        ),
    ],
)
def test_node_from_wire(node: externalgrpc.ExternalGrpcNode, want: NodeRef) -> None:
    assert convert.node_from_pb(node) == want


# ---- pricing ----------------------------------------------------------------------------------------

START = datetime(2026, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
END = datetime(2026, 5, 1, 13, 0, tzinfo=UTC)
LATER = datetime(2027, 1, 1, tzinfo=UTC)


def timestamp(moment: datetime) -> dict[str, int]:
    return {"seconds": int(moment.timestamp()), "nanos": moment.microsecond * 1000}


@pytest.mark.parametrize(
    ("request_type", "fields", "want"),
    [
        pytest.param(
            externalgrpc.PricingNodePriceRequest,
            {"startTimestamp": timestamp(START), "endTimestamp": timestamp(END)},
            (START, END),
            id="node-current-fields",
        ),
        pytest.param(
            externalgrpc.PricingNodePriceRequest,
            {"startTime": timestamp(START), "endTime": timestamp(END)},
            (START, END),
            id="node-legacy-fields",
        ),
        pytest.param(
            externalgrpc.PricingNodePriceRequest,
            {
                "startTimestamp": timestamp(START),
                "endTimestamp": timestamp(END),
                "startTime": timestamp(LATER),
                "endTime": timestamp(LATER),
            },
            (START, END),
            id="node-both-current-wins",
        ),
        pytest.param(externalgrpc.PricingNodePriceRequest, {}, (None, None), id="node-no-window"),
        pytest.param(
            externalgrpc.PricingPodPriceRequest,
            {"startTimestamp": timestamp(START), "endTime": timestamp(END)},
            (START, END),
            id="pod-mixed-layouts",
        ),
        pytest.param(
            externalgrpc.PricingPodPriceRequest,
            {"startTime": timestamp(START), "endTime": timestamp(END)},
            (START, END),
            id="pod-legacy-fields",
        ),
    ],
)
def test_pricing_window(
    request_type: type[Any], fields: dict[str, Any], want: tuple[datetime | None, datetime | None]
) -> None:
    assert convert.pricing_window(request_type(**fields)) == want


FIRST_MOMENT = datetime(1, 1, 1, tzinfo=UTC)
LAST_MICROSECOND = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
FIRST_SECONDS = -62_135_596_800
LAST_SECONDS = 253_402_300_799


@pytest.mark.parametrize(
    ("fields", "want"),
    [
        pytest.param(
            {
                "startTimestamp": {"seconds": FIRST_SECONDS},
                "endTimestamp": {"seconds": LAST_SECONDS, "nanos": 999_999_999},
            },
            (FIRST_MOMENT, LAST_MICROSECOND),
            id="year-1-to-year-9999-are-read",
        ),
        pytest.param({"endTimestamp": {"seconds": LAST_SECONDS + 1}}, "endTimestamp", id="after-year-9999"),
        pytest.param({"startTimestamp": {"seconds": FIRST_SECONDS - 1}}, "startTimestamp", id="before-year-1"),
        pytest.param(
            {"endTimestamp": {"seconds": LAST_SECONDS, "nanos": 2**31 - 1}}, "endTimestamp", id="nanos-carry-past-9999"
        ),
        pytest.param({"startTime": {"seconds": -(2**63)}}, "startTime", id="legacy-field-int64-minimum"),
        pytest.param({"endTime": {"seconds": 2**63 - 1}}, "endTime", id="legacy-field-int64-maximum"),
    ],
)
def test_a_pricing_timestamp_outside_years_1_to_9999_is_an_invalid_request(
    fields: dict[str, Any], want: tuple[datetime, datetime] | str
) -> None:
    request = externalgrpc.PricingNodePriceRequest(**fields)

    if isinstance(want, str):
        with pytest.raises(InvalidRequest, match=f"^{want} .*outside the years 1 to 9999"):
            convert.pricing_window(request)
    else:
        assert convert.pricing_window(request) == want


@pytest.mark.parametrize(
    ("fields", "want"),
    [
        pytest.param({"pod_bytes": b"current"}, b"current", id="current-field"),
        pytest.param({"pod": b"legacy"}, b"legacy", id="legacy-field"),
        pytest.param({"pod_bytes": b"current", "pod": b"legacy"}, b"current", id="both-current-wins"),
        pytest.param({}, b"", id="none"),
    ],
)
def test_pod_bytes(fields: dict[str, bytes], want: bytes) -> None:
    assert convert.pod_bytes(externalgrpc.PricingPodPriceRequest(**fields)) == want


# ---- from the read model's snapshots ----------------------------------------------------------------


def snapshot(
    *machines: MachineSnapshot, template: TemplateSource | None = None, target: int = 1
) -> GroupSnapshot:
    return GroupSnapshot("lab/gpu", "lab", "gpu", 0, 4, target, machines, template=template)


def machine(hourly_price: str | None = None, power_watts: int | None = None) -> MachineSnapshot:
    return MachineSnapshot(
        "gpu-1", "lab", "gpu-1", "homelab://lab/gpu-1", NodeState.READY, PowerPolicy.AUTO, None,
        hourly_price=Decimal(hourly_price) if hourly_price is not None else None,
        power_watts=power_watts,
    )


def test_node_group_view_says_how_many_machines_and_the_target() -> None:
    view = convert.node_group_view(snapshot(machine(), machine(), target=1))

    assert view == NodeGroupView(id="lab/gpu", min_size=0, max_size=4, debug="2 machines, target 1")


OBSERVED = TemplateSource(
    labels={
        "kubernetes.io/hostname": "gpu-1",
        "infra.homecluster.dev/node": "gpu-1",
        "infra.homecluster.dev/group": "gpu",
        "kubernetes.io/arch": "amd64",
    },
    taints=(
        Taint(key="dedicated", value="gpu", effect=TaintEffect.NO_SCHEDULE),
        Taint(key="node.kubernetes.io/unschedulable", effect=TaintEffect.NO_SCHEDULE),
        Taint(key="ToBeDeletedByClusterAutoscaler", value="1700000000", effect=TaintEffect.NO_SCHEDULE),
        Taint(key="DeletionCandidateOfClusterAutoscaler", value="1700000000", effect=TaintEffect.PREFER_NO_SCHEDULE),
        Taint(key="node.kubernetes.io/not-ready", effect=TaintEffect.NO_EXECUTE),
    ),
    capacity={"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "1"},
    allocatable={"cpu": "15", "memory": "60Gi", "nvidia.com/gpu": "1"},
    origin="observed",
)


def test_template_from_a_member_snapshot_drops_what_belongs_to_that_machine() -> None:
    template = convert.template_node(snapshot(template=OBSERVED))

    assert template is not None
    node = parse_node(template)
    assert dict(node.metadata.labels) == {
        "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": "template-lab-gpu",
        "infra.homecluster.dev/group": "gpu",
        "kubernetes.io/arch": "amd64",
    }
    assert [(taint.key, taint.effect) for taint in node.spec.taints] == [("dedicated", "NoSchedule")]
    assert quantities(node.status.allocatable) == {"cpu": "15", "memory": "60Gi", "nvidia.com/gpu": "1", "pods": "110"}
    assert not node.spec.HasField("providerID")


def test_template_from_a_declared_template_keeps_it_whole() -> None:
    declared = TemplateSource(
        labels={"zone": "attic"}, taints=(), capacity={"cpu": "4", "pods": "32"}, allocatable={}, origin="declared"
    )

    template = convert.template_node(snapshot(template=declared))

    assert template is not None
    node = parse_node(template)
    assert node.metadata.labels["zone"] == "attic"
    assert quantities(node.status.capacity) == quantities(node.status.allocatable) == {"cpu": "4", "pods": "32"}


def test_no_template_source_means_no_template() -> None:
    assert convert.template_node(snapshot()) is None


def test_a_template_response_is_never_built_from_empty_bytes() -> None:
    with pytest.raises(ValueError, match="empty bytes"):
        convert.template_response_from_bytes(b"")


# ---- node price ------------------------------------------------------------------------------------

NOON = datetime(2026, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("priced", "window", "price_per_kwh", "want"),
    [
        pytest.param(machine(hourly_price="0.12"), timedelta(hours=1), None, Decimal("0.12"), id="one-hour"),
        pytest.param(machine(hourly_price="0.12"), timedelta(minutes=90), None, Decimal("0.18"), id="pro-rated"),
        pytest.param(machine(hourly_price="0.12"), timedelta(0), None, Decimal(0), id="empty-window"),
        pytest.param(
            machine(hourly_price="0.12", power_watts=500),
            timedelta(hours=2),
            Decimal("0.30"),
            Decimal("0.24"),
            id="hourly-price-wins-over-energy",
        ),
        pytest.param(
            machine(power_watts=65), timedelta(hours=10), Decimal("0.30"), Decimal("0.195"), id="energy-only"
        ),
        pytest.param(machine(power_watts=65), timedelta(hours=10), None, None, id="energy-without-kwh-price"),
        pytest.param(machine(), timedelta(hours=1), Decimal("0.30"), None, id="nothing-to-price-by"),
    ],
)
def test_node_price(
    priced: MachineSnapshot, window: timedelta, price_per_kwh: Decimal | None, want: Decimal | None
) -> None:
    assert convert.node_price(priced, NOON, NOON + window, price_per_kwh) == want


@pytest.mark.parametrize(
    ("learned_seconds", "provision"),
    [
        pytest.param(None, 16 * MINUTE, id="too-few-boots-keeps-cas-default"),
        pytest.param(450.0, 450 * SECOND, id="learned-from-the-groups-boots"),
        pytest.param(187.5, 187_500_000_000, id="fractions-of-a-second-survive"),
    ],
)
def test_auto_provision_time_answers_what_the_group_learned(learned_seconds: float | None, provision: int) -> None:
    request = externalgrpc.NodeGroupAutoscalingOptionsRequest(id="gpu", defaults=cluster_autoscaler_defaults())

    response = convert.options_response(request, AutoscalingOptions(max_node_provision_time="auto"), learned_seconds)

    options = response.nodeGroupAutoscalingOptions
    assert durations(options)["provision"] == (provision, provision)
    # Everything else is CA's own default, as with any single override.
    assert durations(options)["unneeded"] == (11 * MINUTE, 11 * MINUTE)
    assert options.scaleDownUtilizationThreshold == 0.61
