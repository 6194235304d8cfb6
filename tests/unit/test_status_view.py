"""What `homelab-autoscaler status` shows for given resources at a given moment: ages, the operation and error
columns, cooldowns, group counts, invalid resources, the exit status rule, the text tables and the JSON shape."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from homelab_autoscaler.status_view import (
    INVALID,
    STATE_NAMES,
    UNMANAGED,
    InvalidResource,
    MachineRow,
    StatusView,
    build_view,
    exit_code,
    human_age,
    last_error,
    machine_row,
    operation_text,
    parse_group,
    parse_node,
    readback_text,
    render_text,
    to_document,
)
from schemas import GROUP_VERSION
from schemas.group import Group
from schemas.labels import CONDITION_OPERATION_FAILED, CONDITION_WRITE_FAILED, GROUP_LABEL
from schemas.node import Node, NodeStatus

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
JOB = {"image": "busybox:1.36", "nodeSelector": {"node-role.kubernetes.io/control-plane": ""}}
"""A power Job pinned to a machine that stays on, as the examples pin theirs."""


def stamp(seconds_before_now: float) -> str:
    return (NOW - timedelta(seconds=seconds_before_now)).isoformat().replace("+00:00", "Z")


def raw_node(
    name: str, group: str | None = "rack", namespace: str = "lab", spec: dict[str, Any] | None = None, **status: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if group is not None:
        metadata["labels"] = {GROUP_LABEL: group}
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Node",
        "metadata": metadata,
        "spec": {"startupJob": JOB, "shutdownJob": JOB, **(spec or {})},
        "status": status,
    }


def node(name: str, group: str | None = "rack", namespace: str = "lab", **status: Any) -> Node:
    return Node.model_validate(raw_node(name, group, namespace, **status))


def group(name: str = "rack", namespace: str = "lab", min_size: int = 0, max_size: int = 4) -> Group:
    return Group.model_validate(
        {"metadata": {"name": name, "namespace": namespace}, "spec": {"minSize": min_size, "maxSize": max_size}}
    )


def status(**fields: Any) -> NodeStatus:
    return NodeStatus.model_validate(fields)


def failed_condition(state: str, message: str = "startup Job nas-1-startup-3 failed") -> dict[str, Any]:
    return {"type": CONDITION_OPERATION_FAILED, "status": state, "reason": "BootFailed", "message": message}


def write_failed_condition(
    state: str, message: str = "Cordon was permanently refused by the Kubernetes API: forbidden"
) -> dict[str, Any]:
    return {"type": CONDITION_WRITE_FAILED, "status": state, "reason": "Cordon", "message": message}


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param(0, "0s", id="zero"),
        pytest.param(0.9, "0s", id="under-a-second"),
        pytest.param(59, "59s", id="seconds"),
        pytest.param(60, "1m", id="one-minute"),
        pytest.param(192, "3m12s", id="minutes-and-seconds"),
        pytest.param(3599, "59m59s", id="just-under-an-hour"),
        pytest.param(3600, "1h", id="one-hour"),
        pytest.param(3725, "1h2m", id="hours-drop-seconds"),
        pytest.param(86399, "23h59m", id="just-under-a-day"),
        pytest.param(86400 + 4 * 3600 + 5, "1d4h", id="days-and-hours"),
        pytest.param(30 * 86400, "30d", id="whole-days"),
        pytest.param(-5, "0s", id="clock-skew"),
    ],
)
def test_ages_read_like_kubectl(seconds: float, expected: str) -> None:
    assert human_age(seconds) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"state": "Shutdown"}, "", id="idle"),
        pytest.param(
            {
                "state": "StartingUp",
                "operationTries": 1,
                "operation": {"kind": "startup", "attempt": 3, "jobName": "nas-1-startup-3", "started": stamp(10)},
            },
            "startup #3 job nas-1-startup-3",
            id="boot",
        ),
        pytest.param(
            {
                "state": "ShuttingDown",
                "operationTries": 2,
                "operation": {"kind": "shutdown", "attempt": 5, "jobName": "nas-1-shutdown-5", "started": stamp(10)},
            },
            "shutdown #5 job nas-1-shutdown-5 (try 2)",
            id="retried-shutdown",
        ),
        pytest.param({"state": "ShuttingDown", "reason": "Draining"}, "draining", id="drain-before-job"),
        pytest.param(
            {
                "state": "StartingUp",
                "operationTries": 2,
                "operation": {"kind": "startup", "attempt": 4, "jobName": "nas-1-startup-4", "started": stamp(10),
                              "driver": "ipmi"},
            },
            "startup #4 power-on by ipmi (try 2)",
            id="native-power-on",
        ),
    ],
)
def test_operation_column(fields: dict[str, Any], expected: str) -> None:
    assert operation_text(machine_row(node("nas-1", **fields), NOW)) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"state": "Ready", "message": "registered"}, "", id="healthy"),
        pytest.param(
            {"state": "BootFailed", "reason": "BootTimeout", "message": "not Ready within 10m"},
            "not Ready within 10m",
            id="boot-failed-shows-message",
        ),
        pytest.param({"state": "BootFailed", "reason": "JobFailed"}, "JobFailed", id="boot-failed-without-message"),
        pytest.param(
            {"state": "Quarantined", "message": "quarantined after 3 consecutive failed boots"},
            "quarantined after 3 consecutive failed boots",
            id="quarantined",
        ),
        pytest.param(
            {
                "state": "Shutdown",
                "reason": "CoolingDown",
                "message": "released after a failed boot",
                "conditions": [failed_condition("True")],
            },
            "startup Job nas-1-startup-3 failed",
            id="cooling-down-keeps-the-failure",
        ),
        pytest.param(
            {"state": "Ready", "conditions": [failed_condition("True", "shutdown gave up; stays on")]},
            "shutdown gave up; stays on",
            id="failed-shutdown-back-in-ready",
        ),
        pytest.param(
            {"state": "Ready", "conditions": [failed_condition("False", "old news")]}, "", id="condition-cleared"
        ),
        pytest.param(
            {"state": "ShuttingDown", "conditions": [write_failed_condition("True")]},
            "Cordon was permanently refused by the Kubernetes API: forbidden",
            id="failed-write",
        ),
        pytest.param(
            {"state": "Shutdown", "conditions": [write_failed_condition("False", "cleared on entering Shutdown")]},
            "",
            id="failed-write-cleared",
        ),
        pytest.param(
            {
                "state": "Ready",
                "conditions": [write_failed_condition("True"), failed_condition("True", "shutdown gave up; stays on")],
            },
            "shutdown gave up; stays on",
            id="a-failed-operation-outranks-a-failed-write",
        ),
        pytest.param(
            {
                "state": "Ready",
                "conditions": [{"type": "PowerReadbackFailing", "status": "True", "reason": "CredentialsRejected",
                                "message": "ipmi could not read the power state (CredentialsRejected)"}],
            },
            "ipmi could not read the power state (CredentialsRejected)",
            id="failing-readback",
        ),
    ],
)
def test_last_error_column(fields: dict[str, Any], expected: str) -> None:
    assert last_error(status(**fields)) == expected


@pytest.mark.parametrize(
    ("cooldown_until", "seconds", "text"),
    [
        pytest.param(None, None, "-", id="none"),
        pytest.param(stamp(-45), 45, "45s", id="running"),
        pytest.param(stamp(-0.2), 1, "1s", id="rounded-up"),
        pytest.param(stamp(30), None, "-", id="over"),
    ],
)
def test_cooldown_column_shows_time_left(cooldown_until: str | None, seconds: int | None, text: str) -> None:
    fields: dict[str, Any] = {"state": "Shutdown"}
    if cooldown_until is not None:
        fields["cooldownUntil"] = cooldown_until
    view = build_view([], [node("nas-1", **fields)], NOW)
    assert view.machines[0].cooldown_seconds == seconds
    assert table_rows(render_text(view))[0]["COOLDOWN"] == text


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        pytest.param([], 0, id="nothing"),
        pytest.param(["Ready", "Shutdown", "StartingUp"], 0, id="healthy"),
        pytest.param(["BootFailed", "Maintenance"], 0, id="failures-that-heal"),
        pytest.param(["Ready", "Quarantined"], 3, id="one-quarantined"),
        pytest.param([INVALID], 0, id="invalid-resource"),
    ],
)
def test_exit_code_is_3_only_when_a_machine_is_quarantined(states: list[str], expected: int) -> None:
    machines = tuple(MachineRow("lab", f"m{index}", "rack", state) for index, state in enumerate(states))
    assert exit_code(StatusView((), machines)) == expected


def test_group_counts_come_from_its_listed_machines() -> None:
    machines = [
        node("a", state="Ready"),
        node("b", state="StartingUp"),
        node("c", state="BootFailed"),
        node("d", state="Shutdown"),
        node("e", state="Quarantined"),
        node("x", group="other", state="Ready"),
        node("y", namespace="elsewhere", state="Ready"),
    ]
    (row,) = build_view([group(min_size=1, max_size=5)], machines, NOW).groups
    # The target is what CA is told: starting, Ready, and failed boots CA has not let go of yet.
    assert (row.min_size, row.max_size, row.target, row.ready) == (1, 5, 3, 1)
    assert row.machines["Quarantined"] == 1
    assert set(row.machines) == set(STATE_NAMES)


def test_a_machine_being_exercised_is_no_target_and_says_so() -> None:
    exercise = {"started": stamp(60), "outcome": "Running"}
    machines = [node("a", state="Ready"), node("b", state="StartingUp", lastExercise=exercise)]
    view = build_view([group()], machines, NOW)
    assert (view.groups[0].target, view.groups[0].ready) == (1, 1)
    assert [machine.activity for machine in view.machines] == ["", "exercise"]
    booting = node("c", state="StartingUp", lastExercise=exercise, attempts=4, operation={
        "kind": "startup", "attempt": 4, "jobName": "c-startup-4", "started": stamp(60)})
    (row,) = build_view([group()], [booting], NOW).machines
    assert operation_text(row) == "startup #4 job c-startup-4 (exercise)"


def test_min_and_max_are_the_active_windows() -> None:
    window = {"name": "quiet", "days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "start": "00:00",
              "end": "23:59", "maxSize": 1}
    scheduled = Group.model_validate(
        {"metadata": {"name": "rack", "namespace": "lab"}, "spec": {"maxSize": 4, "schedules": [window]}}
    )
    view = build_view([scheduled, group("other")], [], NOW.replace(hour=12))
    assert [(row.name, row.min_size, row.max_size, row.schedule) for row in view.groups] == [
        ("other", 0, 4, None), ("rack", 0, 1, "quiet"),
    ]
    assert render_text(view).splitlines()[0].split() == ["GROUP", "MIN", "MAX", "TARGET", "READY", "WINDOW"]


def test_rows_are_sorted_by_group_then_machine_with_ungrouped_last() -> None:
    machines = [
        node("m2", group="b"),
        node("m9", group=None),
        node("m3", group="a"),
        node("m1", group="b"),
        node("m0", namespace="a-first", group="z"),
    ]
    groups = [group("b"), group("a"), group("z", namespace="a-first")]
    view = build_view(groups, machines, NOW)
    assert [(row.namespace, row.name) for row in view.groups] == [("a-first", "z"), ("lab", "a"), ("lab", "b")]
    assert [row.name for row in view.machines] == ["m0", "m3", "m1", "m2", "m9"]


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        pytest.param(raw_node("broken", spec={"priority": "high"}), "spec.priority", id="wrong-type"),
        pytest.param(
            {"metadata": {"name": "bare", "namespace": "lab", "labels": {GROUP_LABEL: "rack"}}},
            "spec",
            id="no-spec",
        ),
        pytest.param(raw_node("late", state="Sleeping"), "status.state", id="unknown-state"),
    ],
)
def test_malformed_node_is_an_invalid_row_with_the_reason(raw: dict[str, Any], reason_part: str) -> None:
    parsed = parse_node(raw)
    assert isinstance(parsed, InvalidResource)
    (row,) = build_view([], [parsed], NOW).machines
    assert (row.namespace, row.group, row.state) == ("lab", "rack", INVALID)
    assert reason_part in row.last_error


def test_malformed_metadata_still_gives_a_row() -> None:
    parsed = parse_node({"metadata": "nonsense", "spec": {}})
    assert isinstance(parsed, InvalidResource)
    assert build_view([], [parsed], NOW).machines[0].state == INVALID


def test_malformed_group_is_listed_with_its_error() -> None:
    parsed = parse_group({"metadata": {"name": "rack", "namespace": "lab"}, "spec": {"minSize": -1}})
    assert isinstance(parsed, InvalidResource)
    view = build_view([parsed], [node("a", state="Ready")], NOW)
    (row,) = view.groups
    assert (row.min_size, row.max_size, row.ready) == (None, None, 1)
    (line,) = table_rows(render_text(view).split("\n\n")[0])
    assert line["MIN"] == "-"
    assert line["ERROR"].startswith("Invalid: ")


def test_since_and_powered_on_time_count_the_current_ready_stretch() -> None:
    ready = node("a", state="Ready", since=stamp(192), poweredOnSeconds=3600)
    (row,) = build_view([], [ready], NOW).machines
    assert (row.age_seconds, row.powered_on_seconds) == (192, 3600 + 192)
    (line,) = table_rows(render_text(build_view([], [ready], NOW), wide=True))
    assert (line["SINCE"], line["POWERED-ON"]) == ("3m12s", "1h3m")


def table_rows(text: str) -> list[dict[str, str]]:
    """The data lines of one text table as header → cell (cells are separated by at least three spaces)."""
    lines = ANSI.sub("", text).strip("\n").splitlines()
    headers = re.split(r" {3,}", lines[0])
    return [dict(zip(headers, re.split(r" {3,}", line), strict=True)) for line in lines[1:]]


def sample_view() -> StatusView:
    booting = node(
        "nas-1",
        state="StartingUp",
        since=stamp(75),
        operationTries=1,
        operation={"kind": "startup", "attempt": 3, "jobName": "nas-1-startup-3", "started": stamp(75)},
    )
    stuck = node("nas-2", state="Quarantined", since=stamp(600), message="quarantined " + "after failures " * 10)
    return build_view([group()], [booting, stuck], NOW)


def test_text_output_has_a_group_table_and_a_machine_table() -> None:
    group_table, machine_table, _energy = render_text(sample_view()).split("\n\n")
    assert table_rows(group_table) == [{"GROUP": "rack", "MIN": "0", "MAX": "4", "TARGET": "1", "READY": "0"}]
    booting, stuck = table_rows(machine_table)
    assert booting == {
        "MACHINE": "nas-1",
        "GROUP": "rack",
        "STATE": "StartingUp",
        "SINCE": "1m15s",
        "OPERATION": "startup #3 job nas-1-startup-3",
        "LAST ERROR": "-",
        "COOLDOWN": "-",
        "POLICY": "Auto",
    }
    assert stuck["STATE"] == "Quarantined"
    assert stuck["LAST ERROR"].endswith("...")
    assert len(stuck["LAST ERROR"]) == 60


def test_wide_output_adds_state_counts_provider_ids_and_the_whole_error() -> None:
    group_table, machine_table, _energy = render_text(sample_view(), wide=True).split("\n\n")
    (group_line,) = table_rows(group_table)
    assert (group_line["STARTINGUP"], group_line["QUARANTINED"], group_line["INVALID"]) == ("1", "1", "0")
    _booting, stuck = table_rows(machine_table)
    assert stuck["LAST ERROR"].endswith("after failures")
    assert {"PROVIDER-ID", "POWERED-ON", "READBACK"} <= set(stuck)


def test_namespace_column_only_when_asked() -> None:
    plain = render_text(sample_view())
    across = render_text(sample_view(), show_namespace=True)
    assert "NAMESPACE" not in plain
    assert all(row["NAMESPACE"] == "lab" for row in table_rows(across.split("\n\n")[1]))


def test_colour_only_when_asked_and_never_breaks_alignment() -> None:
    plain = render_text(sample_view())
    coloured = render_text(sample_view(), colour=True)
    assert ANSI.search(plain) is None
    assert ANSI.search(coloured) is not None
    assert ANSI.sub("", coloured) == plain


def test_nothing_to_show_renders_nothing() -> None:
    assert render_text(StatusView()) == ""


def test_json_document_has_stable_keys_and_rfc3339_times() -> None:
    document = json.loads(json.dumps(to_document(sample_view())))
    assert set(document) == {"groups", "machines", "power", "energy"}
    (group_entry,) = document["groups"]
    assert group_entry == {
        "namespace": "lab",
        "name": "rack",
        "minSize": 0,
        "maxSize": 4,
        "schedule": None,
        "targetSize": 1,
        "readyCount": 0,
        "machines": {state: {"StartingUp": 1, "Quarantined": 1}.get(state, 0) for state in STATE_NAMES},
        "error": None,
    }
    booting, stuck = document["machines"]
    assert booting == {
        "namespace": "lab",
        "name": "nas-1",
        "group": "rack",
        "state": "StartingUp",
        "since": "2026-03-01T11:58:45Z",
        "ageSeconds": 75,
        "operation": {
            "kind": "startup",
            "attempt": 3,
            "jobName": "nas-1-startup-3",
            "started": "2026-03-01T11:58:45Z",
            "tries": 1,
            "driver": None,
        },
        "operationText": "startup #3 job nas-1-startup-3",
        "lastError": None,
        "cooldownUntil": None,
        "cooldownSeconds": None,
        "powerPolicy": "Auto",
        "providerID": None,
        "poweredOnSeconds": 75,  # booting since its startup Job was created counts as powered on
        "consecutiveFailures": 0,
        "warnings": [],
        "powerReadback": None,
    }
    assert set(stuck) == set(booting)
    assert stuck["lastError"].startswith("quarantined after failures")


def test_the_last_readback_shows_in_the_wide_table_and_the_json() -> None:
    read = node("nas-2", state="Ready", powerReadback={"state": "On", "observedAt": stamp(12), "driver": "redfish"})
    row = machine_row(read, NOW)
    assert readback_text(row) == "On 12s ago (redfish)"
    (line,) = table_rows(render_text(StatusView((), (row,)), wide=True))
    assert line["READBACK"] == "On 12s ago (redfish)"
    (entry,) = to_document(StatusView((), (row,)))["machines"]
    assert entry["powerReadback"] == {
        "state": "On", "driver": "redfish", "observedAt": "2026-03-01T11:59:48Z", "ageSeconds": 12
    }


def test_json_of_an_invalid_machine_keeps_every_key() -> None:
    invalid = machine_row(InvalidResource("lab", "broken", "spec: Field required", "rack"), NOW)
    (entry,) = to_document(StatusView((), (invalid,)))["machines"]
    assert entry["state"] == INVALID
    assert entry["lastError"] == "spec: Field required"
    assert set(entry) == set(to_document(sample_view())["machines"][0])


# --- machines no Group claims --------------------------------------------------------------------------------

NO_LABEL_REASON = (
    f"no {GROUP_LABEL} label, so the operator does not manage it; label it with the name of its Group"
)
MISSING_GROUP_REASON = (
    f"its {GROUP_LABEL} label names Group 'attic', which does not exist in namespace lab; "
    "create that Group or fix the label"
)


@pytest.mark.parametrize(
    ("machine_group", "groups", "state", "reason"),
    [
        pytest.param("rack", ["rack"], "Shutdown", "", id="member-of-an-existing-group"),
        pytest.param(None, ["rack"], UNMANAGED, NO_LABEL_REASON, id="no-group-label"),
        pytest.param("attic", ["rack"], UNMANAGED, MISSING_GROUP_REASON, id="label-names-a-missing-group"),
        pytest.param("attic", [], UNMANAGED, MISSING_GROUP_REASON, id="no-group-at-all"),
    ],
)
def test_a_machine_no_group_claims_is_unmanaged_not_a_healthy_spare(
    machine_group: str | None, groups: list[str], state: str, reason: str
) -> None:
    view = build_view([group(name) for name in groups], [node("nas-1", machine_group, state="Shutdown")], NOW)

    (machine,) = view.machines
    assert (machine.state, machine.last_error) == (state, reason)
    machine_table = next(block for block in render_text(view, wide=True).split("\n\n") if "STATE" in block)
    (row,) = table_rows(machine_table)
    assert row["STATE"] == state
    assert row["LAST ERROR"] == (reason or "-")
    assert to_document(view)["machines"][0]["state"] == state
    assert sum(count for group_row in view.groups for count in group_row.machines.values()) == (0 if reason else 1)


def test_a_power_job_that_may_run_on_a_powered_off_machine_is_a_warning() -> None:
    unpinned = Node.model_validate({
        "metadata": {"name": "nuc-1", "namespace": "lab", "labels": {GROUP_LABEL: "rack"}},
        "spec": {"startupJob": {"image": "busybox:1.36"}, "shutdownJob": JOB},
    })

    view = build_view([], [unpinned, node("nuc-2")], NOW)

    (warned,) = [machine for machine in view.machines if machine.warnings]
    assert warned.name == "nuc-1"
    (warning,) = warned.warnings
    assert warning.startswith("spec.startupJob has no nodeSelector")
    assert "Cluster Autoscaler may scale a group up to run it" in warning
    text = render_text(view)
    assert text.split("\n\n")[-1].splitlines() == ["WARNINGS", f"nuc-1: {warning}"]
    assert to_document(view)["machines"][0]["warnings"] == [warning]


# --- boot and power-off durations per group --------------------------------------------------------------------


def test_power_table_shows_boot_and_shutdown_percentiles_per_group_over_every_member() -> None:
    # Ten boots over two machines: nearest-rank p50 is the 5th (60 s), p90 the 9th (300 s), max the slowest.
    first = node("nas-1", state="Ready", recentBootSeconds=[30, 40, 50, 55, 60], recentShutdownSeconds=[20])
    second = node("nas-2", state="Shutdown", recentBootSeconds=[70, 80, 90, 300, 900.5], recentShutdownSeconds=[40])
    quiet = node("pi-1", group="edge", state="Shutdown")
    learning = Group.model_validate({
        "metadata": {"name": "rack", "namespace": "lab"},
        "spec": {"maxSize": 4, "autoscalingOptions": {"maxNodeProvisionTime": "auto"}},
    })
    view = build_view((g for g in [learning, group("edge")]), [first, second, quiet], NOW)

    _groups, _machines, power, _energy = render_text(view).split("\n\n")

    # The edge group never booted a machine: no line of dashes for it. CA is told the slowest boot (900.5 s, the
    # p99 of ten) times 1.5, capped at one hour.
    assert _power_lines(power) == [
        ["rack", "10", "1m", "5m", "15m", "2", "20s", "40s", "40s", "22m30s (auto)"],
    ]
    (entry,) = to_document(view)["power"]
    assert entry["bootSeconds"] == {"count": 10, "p50Seconds": 60.0, "p90Seconds": 300.0, "maxSeconds": 900.5}
    assert entry["shutdownSeconds"] == {"count": 2, "p50Seconds": 20.0, "p90Seconds": 40.0, "maxSeconds": 40.0}
    assert (entry["learnedProvisionSeconds"], entry["maxNodeProvisionTimeAuto"]) == (1350.75, True)


def _power_lines(text: str) -> list[list[str]]:
    # The power table repeats the P90 and MAX headers (boot, then shutdown), so read it by position.
    return [re.split(r" {3,}", line) for line in text.strip("\n").splitlines()[1:]]


def test_no_power_table_before_any_boot() -> None:
    assert "BOOT P50" not in render_text(sample_view())
    assert to_document(sample_view())["power"] == []


# --- energy used and avoided per group -------------------------------------------------------------------------


def test_energy_table_shows_used_avoided_and_cost_and_unknown_never_as_zero() -> None:
    priced = Group.model_validate(
        {"metadata": {"name": "rack", "namespace": "lab"}, "spec": {"maxSize": 4, "energyPrice": "0.50"}}
    )
    pricing = {"pricing": {"powerWatts": 100, "standbyWatts": 10}}
    # On for the last 2 hours of the 4 it has been accounted: 2 h at 100 W plus 2 h at 10 W, 2 h at 90 W avoided.
    on = Node.model_validate(
        raw_node("nas-1", spec=pricing, state="Ready", since=stamp(2 * 3600), accountingSince=stamp(4 * 3600))
    )
    undeclared = node("nas-2", state="Shutdown", since=stamp(3600))
    unknown_only = node("pi-1", group="edge", state="Ready", since=stamp(60))
    view = build_view([priced, group("edge")], [on, undeclared, unknown_only], NOW)

    energy_table = render_text(view).split("\n\n")[-1]

    assert table_rows(energy_table) == [
        {
            "GROUP": "edge", "DRAW": "unknown", "KWH 24H": "unknown", "AVOIDED 24H": "unknown", "COST 24H": "-",
            "KWH TOTAL": "unknown", "AVOIDED TOTAL": "unknown", "COST TOTAL": "-", "UNKNOWN": "1 of 1",
        },
        {
            "GROUP": "rack", "DRAW": "100W", "KWH 24H": "0.22", "AVOIDED 24H": "0.18", "COST 24H": "0.11",
            "KWH TOTAL": "0.22", "AVOIDED TOTAL": "0.18", "COST TOTAL": "0.11", "UNKNOWN": "1 of 2",
        },
    ]
    edge, rack = to_document(view)["energy"]
    assert rack["lastDay"] == {"usedKWh": 0.22, "avoidedKWh": 0.18, "cost": "0.11"}
    assert (edge["drawWatts"], edge["lastDay"]["usedKWh"], edge["unknownMachines"]) == (None, None, 1)
