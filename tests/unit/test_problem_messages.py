"""One spelling of a schema problem wherever a person reads it: the webhook's refusal, the operator's log line (and
the Group's InvalidSpec condition built from it) and `homelab-autoscaler status` all say the same thing."""

from __future__ import annotations

from typing import Any

import pytest

from actors.watcher_actor import MalformedObjectError
from actors.watcher_actor import parse_group as operator_parse_group
from actors.watcher_actor import parse_machine as operator_parse_machine
from homelab_autoscaler.status_view import InvalidResource
from homelab_autoscaler.status_view import parse_group as status_parse_group
from homelab_autoscaler.status_view import parse_node as status_parse_node
from schemas.validation import validate_group, validate_node

JOB = {"image": "busybox"}


def group(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "rack", "namespace": "lab"}, "spec": {"minSize": 0, "maxSize": 3, **spec}}


def node(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "nas-1", "namespace": "lab", "labels": {"infra.homecluster.dev/group": "rack"}},
        "spec": {"startupJob": JOB, "shutdownJob": JOB, **spec},
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            group(bootTimeout="ten minutes"),
            "spec.bootTimeout: bootTimeout must be a duration such as 90s, 10m or 1h30m; got 'ten minutes'",
            id="group-duration",
        ),
        pytest.param(
            group(minSize="none"),
            "spec.minSize: minSize must be a valid integer, unable to parse string as an integer; got 'none'",
            id="group-integer",
        ),
    ],
)
def test_a_bad_group_reads_the_same_in_the_webhook_the_operator_and_status(raw: dict[str, Any], expected: str) -> None:
    (webhook,) = validate_group(raw)
    with pytest.raises(MalformedObjectError) as operator:
        operator_parse_group(raw)
    status = status_parse_group(raw)

    assert str(webhook) == expected
    assert str(operator.value) == expected
    assert isinstance(status, InvalidResource)
    assert status.reason == expected


def test_a_bad_node_reads_the_same_in_the_webhook_the_operator_and_status() -> None:
    raw = node(priority="high")
    expected = "spec.priority: priority must be a valid integer, unable to parse string as an integer; got 'high'"

    (webhook,) = validate_node(raw)
    with pytest.raises(MalformedObjectError) as operator:
        operator_parse_machine(raw)
    status = status_parse_node(raw)

    assert str(webhook) == expected
    assert str(operator.value) == expected
    assert isinstance(status, InvalidResource)
    assert status.reason == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {"startupJob": JOB},
            "spec.shutdownJob: a Node needs both startupJob and shutdownJob, or power (native Wake-on-LAN, IPMI, "
            "Redfish or SSH drivers)",
            id="one-job",
        ),
        pytest.param(
            {"startupJob": JOB, "shutdownJob": JOB, "power": {"ipmi": {"host": "h", "credentials": {"name": "c"}}}},
            "spec.power: a Node is powered either by Jobs (startupJob and shutdownJob) or natively (power), not both",
            id="both-ways",
        ),
        pytest.param(
            {"power": {"wakeOnLan": {"macAddress": "aa:bb:cc:dd:ee:ff"}}},
            "spec.power: nothing can power the machine off: add ssh, ipmi or redfish",
            id="no-off-driver",
        ),
    ],
)
def test_a_node_without_one_way_to_power_it_reads_the_same_everywhere_and_is_skipped(
    spec: dict[str, Any], expected: str
) -> None:
    raw = {**node(), "spec": spec}
    (webhook,) = validate_node(raw)
    with pytest.raises(MalformedObjectError) as operator:
        operator_parse_machine(raw)
    status = status_parse_node(raw)

    assert str(webhook) == expected
    assert str(operator.value) == expected
    assert isinstance(status, InvalidResource)
    assert status.reason == expected
