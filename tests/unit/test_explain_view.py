"""What `homelab-autoscaler explain` says for each situation a machine can be in, at a fixed moment: the "why"
and "what happens next" sentences, unknown energy, the newest Jobs and Events first, and the JSON shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from homelab_autoscaler.explain_view import explain, parse_metrics, render_text, to_document
from homelab_autoscaler.status_view import InvalidResource
from schemas.group import Group
from schemas.labels import GROUP_LABEL, OPERATION_LABEL, RESET_ANNOTATION
from schemas.node import Node

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GROUP = Group.model_validate({"metadata": {"name": "rack", "namespace": "lab"}, "spec": {"maxSize": 3}})


def ago(minutes: float) -> str:
    return (NOW - timedelta(minutes=minutes)).isoformat()


def machine(policy: str = "Auto", watts: int | None = 60, **status: Any) -> Node:
    return Node.model_validate({
        "metadata": {"name": "nas-1", "namespace": "lab", "labels": {GROUP_LABEL: "rack"}},
        "spec": {"startupJob": {"image": "x"}, "shutdownJob": {"image": "x"}, "powerPolicy": policy,
                 "pricing": {"powerWatts": watts} if watts is not None else {}},
        "status": {"since": ago(3), **status},
    })


def operation(kind: str, minutes: float) -> dict[str, Any]:
    return {"kind": kind, "attempt": 4, "jobName": f"nas-1-{kind}-4", "started": ago(minutes)}


@pytest.mark.parametrize(
    ("node", "next_starts"),
    [
        pytest.param(machine(state="Shutdown"), "It stays off until Cluster Autoscaler asks group rack", id="spare"),
        pytest.param(
            machine(state="Shutdown", consecutiveFailures=1, cooldownUntil=(NOW + timedelta(minutes=4)).isoformat()),
            "It cools down after its failed boot until 2026-03-01 12:04:00 UTC (in 4m) and is not chosen",
            id="cooling-down",
        ),
        pytest.param(machine("Off", state="Shutdown"), "It stays off until its powerPolicy changes.", id="policy-off"),
        pytest.param(machine(state="StartingUp"), "It waits for a boot slot", id="queued"),
        pytest.param(
            machine(state="StartingUp", operation=operation("startup", 3), operationTries=1),
            "Its startup Job nas-1-startup-4 was created 3m ago. If its Kubernetes Node is not Ready by "
            "2026-03-01 12:07:00 UTC (in 7m), the boot fails (bootTimeout 10m)",
            id="booting",
        ),
        pytest.param(machine(state="Ready"), "It stays on until Cluster Autoscaler finds it unneeded", id="ready"),
        pytest.param(machine("On", state="Ready"), "It stays on (powerPolicy On).", id="policy-on"),
        pytest.param(machine(state="ShuttingDown"), "Its Kubernetes Node is being drained", id="draining"),
        pytest.param(
            machine(state="ShuttingDown", operation=operation("shutdown", 1), operationTries=2),
            "Shutdown Job nas-1-shutdown-4 (try 2 of 3) is powering it off",
            id="powering-off",
        ),
        pytest.param(
            machine(state="BootFailed", consecutiveFailures=3), "Cluster Autoscaler sees a failed creation and "
            "removes the instance (DeleteNodes); then it is quarantined.", id="failed-third-time",
        ),
        pytest.param(machine(state="Quarantined", consecutiveFailures=3), "Nothing happens until the reset annotation",
                     id="quarantined"),
        pytest.param(machine("Maintenance", state="Maintenance"), "Nothing happens until its powerPolicy",
                     id="maintenance"),
    ],
)
def test_what_happens_next(node: Node, next_starts: str) -> None:
    explanation = explain(node, GROUP, [], [], [], NOW)
    assert explanation.next[0].startswith(next_starts), explanation.next[0]


EXERCISED = Group.model_validate(
    {"metadata": {"name": "rack", "namespace": "lab"}, "spec": {"maxSize": 3, "exercise": {"every": "168h"}}}
)


def test_an_exercise_is_explained_while_it_runs_and_after() -> None:
    running = {"started": ago(3), "outcome": "Running", "message": "booting"}
    booting = machine(state="StartingUp", operation=operation("startup", 3), operationTries=1, lastExercise=running)
    explanation = explain(booting, EXERCISED, [], [], [], NOW)
    assert any(sentence.startswith("It is being exercised") for sentence in explanation.why)
    assert explanation.next[0].endswith("the boot fails (bootTimeout 10m) and the exercise fails and it cools down.")

    done = {"started": ago(60), "outcome": "Succeeded", "finished": ago(57),
            "message": "Ready 2m after the power-on; powered off again"}
    spare = machine(state="Shutdown", lastExercise=done)
    explanation = explain(spare, EXERCISED, [], [], [], NOW)
    assert "Succeeded: Ready 2m after the power-on; powered off again." in explanation.why[-1]
    assert "or until it is exercised, from 2026-03-08 11:57:00 UTC (in 6d23h)." in explanation.next[0]


def test_why_names_the_state_its_reason_the_failures_and_how_to_release_a_quarantine() -> None:
    node = machine(state="Quarantined", consecutiveFailures=3, reason="Quarantined", message="quarantined after 3")
    why = explain(node, GROUP, [], [], [], NOW).why
    assert why[0] == "nas-1 has been Quarantined for 3m (Quarantined: quarantined after 3)."
    assert f"kubectl annotate hnode nas-1 {RESET_ANNOTATION}=$(date +%s) --overwrite" in why[1]


IPMI = {"ipmi": {"host": "10.0.0.5", "credentials": {"name": "bmc"}}}


def natively_powered(power: dict[str, Any], **status: Any) -> Node:
    return Node.model_validate({
        "metadata": {"name": "nas-2", "namespace": "lab", "labels": {GROUP_LABEL: "rack"}},
        "spec": {"power": power},
        "status": {"since": ago(3), **status},
    })


def test_a_natively_powered_machine_says_how_it_is_switched_and_what_was_read_back() -> None:
    readback = {"state": "On", "observedAt": ago(0.5), "driver": "ipmi"}
    failing = {"type": "PowerReadbackFailing", "status": "True", "reason": "TimedOut",
               "message": "ipmi could not read the power state (TimedOut)", "lastTransitionTime": ago(1)}
    node = natively_powered(IPMI, state="Ready", powerReadback=readback, conditions=[failing])
    why = explain(node, GROUP, [], [], [], NOW).why
    assert "It is powered natively: on by ipmi, off by ipmi." in why
    assert "ipmi last read it On, 30s ago." in why
    assert "Its power readback is failing (TimedOut): ipmi could not read the power state (TimedOut)." in why


@pytest.mark.parametrize(
    ("node", "next_starts"),
    [
        pytest.param(
            natively_powered(IPMI, state="StartingUp", operationTries=1,
                             operation={**operation("startup", 2), "driver": "ipmi"}),
            "Its power-on #4 was sent by ipmi 2m ago.",
            id="native-booting",
        ),
        pytest.param(
            natively_powered(IPMI, state="ShuttingDown", operationTries=1,
                             operation={**operation("shutdown", 1), "driver": "ipmi"}),
            "Power-off #4 by ipmi (try 1 of 3) is powering it off; it is off once ipmi reads it Off.",
            id="native-powering-off",
        ),
        pytest.param(
            natively_powered({"wakeOnLan": {"macAddress": "aa:bb:cc:dd:ee:ff"}, "ssh": {
                "host": "h", "user": "u", "privateKey": {"name": "k", "key": "id"}, "knownHosts": "h k"}},
                state="ShuttingDown", operationTries=1, operation={**operation("shutdown", 1), "driver": "ssh"}),
            "Power-off #4 by ssh (try 1 of 3) is powering it off; it is off once the command is done and its "
            "Kubernetes Node goes away.",
            id="ssh-powering-off",
        ),
    ],
)
def test_what_happens_next_to_a_natively_powered_machine(node: Node, next_starts: str) -> None:
    assert explain(node, GROUP, [], [], [], NOW).next[0].startswith(next_starts)


def test_unknown_energy_is_said_not_hidden() -> None:
    why = explain(machine(watts=None, state="Ready"), GROUP, [], [], [], NOW).why
    assert "Its energy is unknown: it declares no spec.pricing.powerWatts." in why


def test_jobs_and_events_newest_first_and_only_cas_requests_for_the_group() -> None:
    jobs = [
        {"metadata": {"name": f"nas-1-startup-{n}", "creationTimestamp": ago(60 - n),
                      "labels": {OPERATION_LABEL: "startup"}},
         "status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}}
        for n in range(1, 5)
    ]
    group_events = [
        {"reason": "ScaleUp", "type": "Normal", "message": "asked for 1", "lastTimestamp": "2026-03-01T11:50:00Z",
         "metadata": {"resourceVersion": "7"}},
        {"reason": "ScaleDown", "type": "Normal", "message": "deleted 1", "lastTimestamp": "2026-03-01T11:50:00Z",
         "metadata": {"resourceVersion": "9"}},
        {"reason": "SomethingElse", "type": "Normal", "message": "x", "lastTimestamp": "2026-03-01T11:59:00Z"},
    ]
    explanation = explain(machine(state="Shutdown"), GROUP, jobs, [], group_events, NOW)
    assert [job.name for job in explanation.jobs] == ["nas-1-startup-4", "nas-1-startup-3", "nas-1-startup-2"]
    assert explanation.jobs[0].outcome == "failed: BackoffLimitExceeded"
    assert [event.reason for event in explanation.autoscaler] == ["ScaleDown", "ScaleUp"]
    text = render_text(explanation, NOW)
    assert "What Cluster Autoscaler last asked of the group:\n  10m ago: Normal ScaleDown: deleted 1" in text


def test_operator_facts_come_from_its_metrics() -> None:
    metrics = parse_metrics(
        'homelab_autoscaler_node_state{group="lab/rack",node="nas-1",state="Ready"} 1.0\n'
        'homelab_autoscaler_group_target_size{group="lab/rack"} 2.0\n'
        'homelab_autoscaler_machine_power_draw_watts{group="lab/rack",node="nas-1"} 60.0\n'
        'homelab_autoscaler_machine_energy_used_joules_total{group="lab/rack",node="nas-1"} 3600000.0\n'
        'homelab_autoscaler_machine_energy_avoided_joules_total{group="lab/rack",node="nas-1"} 7200000.0\n'
    )
    facts = explain(machine(state="Ready"), GROUP, [], [], [], NOW, metrics).operator
    assert facts == (
        "The operator holds it as Ready.",
        "Group lab/rack has a target size of 2 machines.",
        "It draws 60 W now; 1.00 kWh used and 2.00 kWh avoided since accounting began.",
    )


def test_json_has_every_key_even_for_an_invalid_machine() -> None:
    good = to_document(explain(machine(state="Ready"), GROUP, [], [], [], NOW, None, "not asked"))
    bad = to_document(explain(InvalidResource("lab", "nas-9", "spec: Field required", "rack"), None, [], [], [], NOW))
    assert set(good) == set(bad) == {
        "namespace", "name", "group", "state", "since", "why", "next", "jobs", "events", "autoscaler", "operator",
    }
    assert good["operator"] == ["The operator's metrics were not read: not asked."]
    assert bad["state"] == "Invalid"
