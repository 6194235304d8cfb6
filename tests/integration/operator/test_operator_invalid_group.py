"""A Group our schemas refuse (written while the webhook was off) is reported where its owner looks: an InvalidSpec
condition in its status and a Warning Event, with the problem spelled as the webhook spells it; `status` shows the
Group as invalid with the same words."""

from __future__ import annotations

from typing import Any

from homelab_autoscaler.status_view import InvalidResource, parse_group
from schemas import GROUP_VERSION
from schemas.crds import GROUP_CRD_NAME
from tests.support.crds import looser_crd
from tests.support.operator_homelab import GROUP, NAMESPACE, Homelab
from tests.support.polling import wait_for

# The CRD refuses the bad Group too, as a real API server would: it is stored the one way such an object reaches a
# cluster, under an older, looser CRD (the webhook was off then).
REASON = "spec.bootTimeout: bootTimeout must be a duration such as 90s, 10m or 1h30m; got 'ten minutes'"


def group_resource(homelab: Homelab) -> dict[str, Any]:
    return homelab.fake.store.get(GROUP_VERSION, "groups", GROUP, NAMESPACE)


def invalid_spec(homelab: Homelab) -> dict[str, Any] | None:
    conditions = (group_resource(homelab).get("status") or {}).get("conditions") or []
    return next((condition for condition in conditions if condition["type"] == "InvalidSpec"), None)


def warnings(homelab: Homelab) -> list[str]:
    return [str(event["message"]) for event in homelab.events(GROUP) if event.get("reason") == "InvalidSpec"]


def test_a_group_invalid_from_the_start_gets_a_condition_and_a_warning_event(homelab: Homelab) -> None:
    with looser_crd(homelab.fake, GROUP_CRD_NAME):
        homelab.add_group(bootTimeout="ten minutes")

    homelab.start_operator()

    condition = wait_for(lambda: invalid_spec(homelab), what="the InvalidSpec condition")
    assert (condition["status"], condition["message"]) == ("True", REASON)
    assert wait_for(lambda: warnings(homelab), what="the Warning Event") == [
        f"invalid spec, the operator does not run this group until it is fixed: {REASON}"
    ]
    shown = parse_group(group_resource(homelab))
    assert isinstance(shown, InvalidResource)
    assert shown.reason == REASON


def test_a_group_made_invalid_keeps_its_last_spec_and_is_cleared_once_fixed(homelab: Homelab) -> None:
    homelab.add_group()
    homelab.add_machine("m1")
    running = homelab.start_operator()

    broken = group_resource(homelab)
    with looser_crd(homelab.fake, GROUP_CRD_NAME):
        homelab.fake.store.patch(GROUP_VERSION, "groups", GROUP, {"spec": {"bootTimeout": "ten minutes"}}, NAMESPACE)

    condition = wait_for(lambda: invalid_spec(homelab), what="the InvalidSpec condition")
    assert (condition["status"], condition["message"]) == ("True", REASON)
    assert wait_for(lambda: warnings(homelab), what="the Warning Event") == [
        f"invalid spec, the operator keeps running its last valid spec until it is fixed: {REASON}"
    ]
    assert running.target_size() == 0  # the group still answers Cluster Autoscaler

    homelab.fake.store.patch(
        GROUP_VERSION, "groups", GROUP, {"spec": {"bootTimeout": broken["spec"].get("bootTimeout")}}, NAMESPACE
    )
    wait_for(lambda: invalid_spec(homelab) is None, what="the InvalidSpec condition to go")
