"""`homelab-autoscaler demo`: the scenario reaches its outcome, as the API objects, the summary and the exit status
show.

The demo runs shortened (`--speed`) three ways: in-process, where the test reads the fake API's objects (and what the
natively powered machine's simulated NIC and BMC received) before the homelab is stopped; as the command in a
subprocess, the way a newcomer runs it; and with `--serve`, where kubectl and a gRPC client reach the running
homelab until SIGINT. Smaller cases check what a person reads when a step
misses its deadline, how the live view redraws, and the energy estimate's arithmetic.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from os import terminal_size
from pathlib import Path
from typing import Any, Final

import grpc
import pytest

from homelab_autoscaler.cli import main
from homelab_autoscaler.demo import scenario
from homelab_autoscaler.demo.display import LineDisplay, LiveDisplay
from homelab_autoscaler.demo.homelab import Timing, demo_homelab
from homelab_autoscaler.demo.observation import (
    Change,
    ChangeKind,
    Check,
    GroupSeen,
    History,
    InstanceSeen,
    Observation,
    StateEntry,
    StepStatus,
)
from homelab_autoscaler.demo.readers import Autoscaler
from homelab_autoscaler.demo.session import DemoSession
from homelab_autoscaler.demo.summary import energy_from_metrics, render_summary, summarize
from homelab_autoscaler.status_view import MachineRow, OperationRow, StatusView
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas import GROUP_VERSION
from tests.support.cli_process import CliProcess

ROOT: Final = Path(__file__).resolve().parents[3]
SPEED: Final = 10.0
"""Boots take a few tenths of a second: the whole scenario runs in a few seconds."""
NAMESPACE: Final = "homelab"
RUN_TIMEOUT: Final = 90.0
EXIT_TIMEOUT: Final = 20.0
ANSI: Final = re.compile(r"\x1b\[")


# --- the scenario, in-process --------------------------------------------------------------------------------


def test_the_scenario_reaches_its_outcome_and_the_api_objects_show_it() -> None:
    homelab = demo_homelab(SPEED)
    log = io.StringIO()
    children_before = _child_processes()
    with DemoSession(homelab) as session:
        result = scenario.play(homelab, session.grpc_target, session.api_client, LineDisplay(log))
        store = session.fake.store
        machines = {item["metadata"]["name"]: item for item in store.list(GROUP_VERSION, "nodes", NAMESPACE)}
        kube_nodes = {item["metadata"]["name"]: item for item in store.list("v1", "nodes")}
        jobs = {item["metadata"]["name"]: item for item in store.list("batch/v1", "jobs", NAMESPACE)}
        event_reasons = {
            (event["involvedObject"]["name"], event["reason"]) for event in store.list("v1", "events", NAMESPACE)
        }
        directory = session.temporary_directory
        exposition = session.metrics_text()
        native = session.native_power
        bmc_commands = list(native.bmcs[(NAMESPACE, "nuc-2")].commands)
        native_machine = session.simulator.machine("nuc-2")
        native_switches = (native_machine.boots, native_machine.shutdowns)
        secret = store.get("v1", "secrets", "simulated-bmc-credentials", NAMESPACE)
        events = [(event["involvedObject"]["name"], event["reason"], event["message"])
                  for event in store.list("v1", "events", NAMESPACE)]
        children_running = _child_processes() - children_before
    assert exposition is not None
    counted = energy_from_metrics(exposition)
    summary = summarize(
        result.history, homelab.power_watts(), reached=result.reached, outcome=result.message, counted=counted
    )

    assert result.exit_code == 0, result.message
    states = {name: item["status"]["state"] for name, item in machines.items()}
    assert states == {
        "nuc-1": "Ready",
        "elitedesk-1": "Shutdown",
        "nuc-2": "Shutdown",
        "nuc-3": "Shutdown",
        "gpu-1": "Ready",
        "gpu-2": "Shutdown",
    }
    # Booted machines registered with the ids CA was given: stated k3s ids kept, an empty one stamped.
    assert {name: node["spec"]["providerID"] for name, node in kube_nodes.items()} == {
        "nuc-1": "k3s://nuc-1",
        "gpu-1": "k3s://gpu-1",
    }
    assert machines["nuc-2"]["status"]["providerID"] == "homelab://homelab/nuc-2"
    # The machine that cannot boot: one failed startup Job, reported, then cooling down.
    failed = machines["elitedesk-1"]["status"]
    assert failed["consecutiveFailures"] == 1
    assert datetime.fromisoformat(failed["cooldownUntil"].replace("Z", "+00:00")) > datetime.now(UTC)
    assert ("elitedesk-1", "BootJobFailed") in event_reasons
    assert summary.machine("elitedesk-1").states == ("Shutdown", "StartingUp", "BootFailed", "Shutdown")
    assert _job_outcome(jobs["elitedesk-1-startup-1"]) == "Failed"
    # The machine switched natively, scaled down: booted by Wake-on-LAN and read back On by its BMC, cordoned,
    # powered off through IPMI (once, gracefully) and read back Off, then its Kubernetes Node deleted. No Job ran.
    assert not [name for name in jobs if name.startswith("nuc-2")]
    assert native_switches == (1, 1)
    assert bmc_commands == ["soft"]
    assert secret is not None, "the BMC credentials Secret its spec.power names"
    assert machines["nuc-2"]["spec"]["power"]["wakeOnLan"]["broadcastAddress"] == "127.0.0.1"
    assert "startupJob" not in machines["nuc-2"]["spec"]
    assert machines["nuc-2"]["status"]["powerReadback"]["state"] == "Off"
    assert machines["nuc-2"]["status"]["powerReadback"]["driver"] == "ipmi"
    assert machines["nuc-2"]["status"]["reason"] == "PoweredOff"
    assert any(name == "nuc-2" and reason == "PoweringOn" and "wakeOnLan" in message
               for name, reason, message in events)
    assert any(name == "nuc-2" and reason == "PoweredOff" and "ipmi" in message for name, reason, message in events)
    native_summary = summary.machine("nuc-2")
    assert native_summary.states == ("Shutdown", "StartingUp", "Ready", "ShuttingDown", "Shutdown")
    assert native_summary.drivers == {"startup": "wakeOnLan", "shutdown": "ipmi"}
    assert native_summary.readbacks[-2:] == ("On", "Off")
    assert native_summary.last_readback.startswith("Off ")
    output = log.getvalue()
    assert "nuc-2: Shutdown → StartingUp (startup #1 power-on by wakeOnLan)" in output
    assert "nuc-2: power read back On by ipmi" in output
    assert "nuc-2: Ready → ShuttingDown (shutdown #2 power-off by ipmi)" in output
    assert output.index("nuc-2: power read back Off by ipmi") < output.index("nuc-2: ShuttingDown → Shutdown")
    assert "nuc-2: cordoned" in output
    assert "nuc-2: on by wakeOnLan, off by ipmi; read back" in render_summary(summary)
    assert not [name for name in jobs if name.startswith(("nuc-3", "gpu-2"))]
    # The summary a person reads.
    assert summary.reached
    assert summary.boot_times is not None
    assert summary.boot_times.count == 3
    assert 0 < summary.boot_times.minimum <= summary.boot_times.average <= summary.boot_times.maximum < 10
    assert [failure.split(":")[0] for failure in summary.failures] == ["elitedesk-1"]
    # Energy as the operator counted it: most machines were off most of the run.
    assert summary.energy is not None
    assert 0.4 < summary.energy.saved_fraction < 0.95
    assert 0 < summary.energy.saved_kwh_per_day < summary.energy.always_on_kwh_per_day
    assert "Energy (the operator's counters)" in render_summary(summary)
    # Everything was stopped and cleaned up when the session ended, the BMCs' child process too.
    assert directory is not None
    assert not directory.exists()
    assert len(children_running) == 1, "the simulated BMCs ran in one child process"
    assert _child_processes() & children_running == set(), "the BMCs' child process ended with the demo"


def _child_processes() -> set[int]:
    """This process's live child processes (Linux: read from /proc)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            children.add(int(stat.parent.name))
    return children


def _job_outcome(job: dict[str, Any]) -> str:
    conditions = job.get("status", {}).get("conditions") or []
    return next((c["type"] for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"), "")


# --- the command ---------------------------------------------------------------------------------------------


def test_the_command_in_a_subprocess_exits_0_and_prints_the_story_and_the_summary() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "homelab_autoscaler.cli", "demo", "--speed", str(SPEED)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=RUN_TIMEOUT,
        check=False,
    )

    assert finished.returncode == 0, finished.stdout + finished.stderr
    output = finished.stdout
    assert "Summary of the demo" in output
    assert "Outcome reached: every step reached its outcome." in output
    assert "CA → NodeGroupIncreaseSize id=homelab/minis delta=3" in output
    assert "CA sees homelab://homelab/elitedesk-1: creating → creating + error BootFailed" in output
    assert "nuc-2: Kubernetes Node deleted" in output
    assert "nuc-2: power read back Off by ipmi" in output
    assert "Native power (no power Jobs):" in output
    assert not ANSI.search(output), "a pipe gets plain lines, never cursor movement"
    assert "Traceback" not in finished.stderr


def test_quiet_prints_only_the_summary() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "homelab_autoscaler.cli", "demo", "--speed", str(SPEED * 2), "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=RUN_TIMEOUT,
        check=False,
    )

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert finished.stdout.startswith("Summary of the demo")
    assert "CA →" not in finished.stdout


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        pytest.param(["--speed", "0"], "not between 0", id="zero-speed"),
        pytest.param(["--speed", "fast"], "not a number", id="speed-not-a-number"),
        pytest.param(["--grpc-address", "50051"], "--grpc-address '50051' is not HOST:PORT", id="address-no-host"),
    ],
)
def test_bad_flags_are_refused_with_exit_status_2(
    arguments: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main(["demo", *arguments])
    except SystemExit as stopped:  # argparse refuses the value itself
        status = int(stopped.code or 0)

    assert status == 2
    assert complaint in capsys.readouterr().err


class DemoProcess(CliProcess):
    """`demo ARGUMENTS` in a subprocess (see tests/support/cli_process.py)."""

    def __init__(self, *arguments: str) -> None:
        super().__init__("demo", *arguments, cwd=ROOT)

    def value_after(self, prefix: str, timeout: float = RUN_TIMEOUT) -> str:
        return super().value_after(prefix, timeout)

    def interrupt(self) -> tuple[int, str]:
        return self.stop(signal.SIGINT, EXIT_TIMEOUT)


@pytest.fixture
def demo_processes() -> Iterator[list[DemoProcess]]:
    started: list[DemoProcess] = []
    yield started
    for process in started:
        process.kill()


BAD_MANIFESTS = {
    "group-min-above-max": textwrap.dedent("""\
        apiVersion: infra.homecluster.dev/v1alpha1
        kind: Group
        metadata: {name: backwards}
        spec: {minSize: 5, maxSize: 2}
        """),
    "node-without-group": textwrap.dedent("""\
        apiVersion: infra.homecluster.dev/v1alpha1
        kind: Node
        metadata: {name: stray}
        spec: {startupJob: {image: wol}, shutdownJob: {image: ssh}}
        """),
}


def test_serve_keeps_the_homelab_up_for_kubectl_and_a_real_ca_until_ctrl_c(
    demo_processes: list[DemoProcess],
) -> None:
    demo = DemoProcess("--speed", str(SPEED), "--serve", "--quiet")
    demo_processes.append(demo)

    kubeconfig = demo.value_after("kubeconfig:")
    grpc_address = demo.value_after("gRPC address:")
    metrics_url = demo.value_after("metrics:")
    cloud_config = demo.value_after("  address:")
    listed = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "get", "nodes.infra.homecluster.dev", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT,
        check=False,
    )
    # What a real cluster refuses, the demo's API refuses too: the CRD's CEL rule, and the operator's webhook.
    refused = {name: subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "apply", "-f", "-"], input=manifest, capture_output=True, text=True,
        timeout=EXIT_TIMEOUT, check=False) for name, manifest in BAD_MANIFESTS.items()}
    with grpc.insecure_channel(grpc_address) as channel:
        groups = externalgrpc_grpc.CloudProviderStub(channel).NodeGroups(externalgrpc.NodeGroupsRequest(), timeout=5)
    status, stderr = demo.interrupt()

    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == [
        f"node.infra.homecluster.dev/{name}" for name in ("elitedesk-1", "gpu-1", "gpu-2", "nuc-1", "nuc-2", "nuc-3")
    ]
    assert sorted(group.id for group in groups.nodeGroups) == ["homelab/gpu", "homelab/minis"]
    assert refused["group-min-above-max"].returncode == 1
    assert refused["group-min-above-max"].stderr.strip() == (
        'The Group "backwards" is invalid: spec.minSize: Invalid value: minSize must not be greater than maxSize')
    assert refused["node-without-group"].returncode == 1
    # kubectl prints the webhook's causes (after its warnings), as it does for a real cluster's webhook.
    assert refused["node-without-group"].stderr.splitlines()[-1] == (
        "The request is invalid: metadata.labels: labels must include infra.homecluster.dev/group naming the "
        "machine's Group (a Group in the same namespace)")
    assert cloud_config == grpc_address
    assert re.fullmatch(r"127\.0\.0\.1:\d+", grpc_address)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", metrics_url)
    assert status == 0, stderr
    assert "Traceback" not in stderr
    assert not Path(kubeconfig).exists(), "the temporary kubeconfig is removed on exit"


# --- a step that misses its deadline -------------------------------------------------------------------------


class StandInAutoscaler:
    """Answers CA's loop with one empty group; records mutating calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def loop(self) -> tuple[GroupSeen, ...]:
        return (GroupSeen("homelab/minis", 0, 4, 0),)

    def group_for_node(self, name: str, provider_id: str) -> str:
        return ""

    def increase_size(self, group_id: str, delta: int) -> None:
        self.calls.append(f"increase {group_id} {delta}")

    def delete_nodes(self, group_id: str, nodes: Sequence[tuple[str, str]]) -> None:
        self.calls.append(f"delete {group_id} {nodes}")


class EmptyCluster:
    def read(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        return [], [], [], []


class SteppingClock:
    """Monotonic time that moves one second every time it is read, so deadlines pass without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_step_that_misses_its_deadline_ends_the_run_with_exit_1_naming_what_is_missing() -> None:
    ca = StandInAutoscaler()

    def scale_up(autoscaler: Autoscaler, seen: Observation) -> str:
        autoscaler.increase_size("homelab/minis", 1)
        return "NodeGroupIncreaseSize id=homelab/minis delta=1"

    steps = [
        scenario.Step(
            "Scale up",
            "CA asks for one machine.",
            lambda seen, history: (Check("target 1", True), Check("a machine boots", False)),
            world_seconds=1.0,
            act=scale_up,
        ),
        scenario.Step("Never played", "", lambda seen, history: (), world_seconds=1.0),
    ]
    log = io.StringIO()
    driver = scenario.Driver(ca, EmptyCluster(), LineDisplay(log), Timing(1000.0), clock=SteppingClock())

    result = driver.play(steps)

    assert result.exit_code == 1
    assert result.failed_step == "Scale up"
    assert result.missing == ("a machine boots",)
    assert "step 1 (Scale up) did not reach its outcome" in result.message
    assert "still missing: a machine boots" in result.message
    assert ca.calls == ["increase homelab/minis 1"]
    assert "Never played" not in log.getvalue()


def test_an_interrupted_run_says_so_with_exit_130() -> None:
    stop = threading.Event()
    stop.set()
    steps = [scenario.Step("Wait", "", lambda seen, history: (Check("never", False),), world_seconds=1.0)]
    driver = scenario.Driver(StandInAutoscaler(), EmptyCluster(), LineDisplay(io.StringIO()), Timing(), stop=stop)

    result = driver.play(steps)

    assert result.exit_code == 130
    assert "interrupted" in result.message


# --- the live view -------------------------------------------------------------------------------------------


def _observation(elapsed: float, state: str) -> Observation:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    machine = MachineRow(
        namespace=NAMESPACE,
        name="nuc-1",
        group="minis",
        state=state,
        since=now - timedelta(seconds=1),
        age_seconds=1,
        last_error="startup Job nuc-1-startup-1 failed: Job has reached the specified backoff limit " * 2,
    )
    group = GroupSeen("homelab/minis", 0, 4, 1, (InstanceSeen("k3s://nuc-1", "creating"),))
    return Observation(elapsed, now, (group,), StatusView(machines=(machine,)), {}, ())


def test_the_live_view_redraws_in_place_and_never_wraps() -> None:
    screen = io.StringIO()
    display = LiveDisplay(screen, {"nuc-1": 2.0}, colour=True, terminal=lambda: terminal_size((60, 40)))
    step = StepStatus(2, 6, "Scale up minis by 3", "Pods are pending, so CA asks for 3 more minis " * 3, 0.0,
                      (Check("nuc-1 Ready", False),))
    change = Change(1.0, ChangeKind.STATE, "nuc-1", "Shutdown → StartingUp")

    display.show(_observation(1.0, "StartingUp"), [change], step)
    first = screen.getvalue()
    display.show(_observation(1.5, "StartingUp"), [], step)
    second = screen.getvalue()[len(first):]
    display.close()

    first_lines = first.rstrip("\n").split("\n")
    assert second.startswith(f"\x1b[{len(first_lines)}F\x1b[J"), "the second frame is drawn over the first"
    visible = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line) for line in first_lines]
    assert all(len(line) < 60 for line in visible)
    assert any("nuc-1" in line and "[" in line and "of ~2.0 s" in line for line in visible), "a boot progress bar"
    assert any("homelab/minis" in line and "target 1" in line for line in visible)
    assert screen.getvalue().endswith("\x1b[?25h"), "the cursor is given back"


BACKOFF_ERROR: Final = "startup Job elitedesk-1-startup-1 failed: Job has reached the specified backoff limit"
ALL_COLUMNS: Final = ("MACHINE", "GROUP", "STATE", "SINCE", "OPERATION", "LAST ERROR", "COOLDOWN", "POLICY")


def _cooldown_observation() -> Observation:
    """The homelab during step 3: elitedesk-1 cools down after its failed boot, gpu-1 boots, nuc-2 shuts down."""
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def machine(name: str, group: str, state: str, **fields: Any) -> MachineRow:
        return MachineRow(NAMESPACE, name, group, state, since=now - timedelta(seconds=5), age_seconds=5,
                          power_policy="Auto", **fields)

    machines = (
        machine("gpu-1", "gpu", "StartingUp", operation=OperationRow("startup", 1, "gpu-1-startup-1", now, 1)),
        machine("gpu-2", "gpu", "Shutdown"),
        machine("elitedesk-1", "minis", "Shutdown", last_error=BACKOFF_ERROR, cooldown_seconds=116),
        machine("nuc-1", "minis", "Ready"),
        machine("nuc-2", "minis", "ShuttingDown", operation=OperationRow("shutdown", 2, "nuc-2-shutdown-2", now, 1)),
    )
    group = GroupSeen("homelab/minis", 0, 4, 2, (InstanceSeen("k3s://nuc-1", "running"),))
    return Observation(7.0, now, (group,), StatusView(machines=machines), {}, ())


def _scenario_step(number: int) -> StepStatus:
    """The real scenario's step `number` (1-based) as the live view is given it."""
    step = scenario.scenario_steps(scenario.cast_of(demo_homelab(SPEED)))[number - 1]
    return StepStatus(number, 6, step.title, step.explanation, 0.0, (Check("nuc-1 Ready", True),), step.columns)


def _live_screen(width: int, step: StepStatus, terminal: bool = True) -> list[str]:
    """One frame of the live view on a terminal `width` columns wide, as lines with their colour codes."""
    screen = io.StringIO()
    size = (lambda: terminal_size((width, 40))) if terminal else None
    display = LiveDisplay(screen, {}, colour=True, **({"terminal": size} if size else {}))
    display.show(_cooldown_observation(), [Change(7.0, ChangeKind.STATE, "elitedesk-1", "BootFailed → Shutdown")], step)
    display.close()
    frame = screen.getvalue().removeprefix("\x1b[?25l\x1b[J").removesuffix("\x1b[?25h")
    return frame.rstrip("\n").split("\n")


def _visible(line: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line)


def _machine_table(lines: Sequence[str]) -> dict[str, dict[str, str]]:
    """The machine table on screen: its rows by machine, each cell by its column's header."""
    visible = [_visible(line) for line in lines]
    top = next(index for index, line in enumerate(visible) if line.startswith("MACHINE "))
    header = visible[top]
    starts = [match.start() for match in re.finditer(r"\S+(?: \S+)*", header)]
    headers = [header[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
    rows = {}
    for line in visible[top + 1:]:
        if not line:
            break
        cells = [line[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
        rows[cells[0]] = dict(zip(headers, cells, strict=True))
    return rows


@pytest.mark.parametrize(
    ("width", "columns"),
    [
        pytest.param(80, ("MACHINE", "STATE", "LAST ERROR", "COOLDOWN"), id="80"),
        pytest.param(100, ("MACHINE", "STATE", "LAST ERROR", "COOLDOWN"), id="100"),
        pytest.param(120, ("MACHINE", "STATE", "LAST ERROR", "COOLDOWN", "POLICY"), id="120"),
        pytest.param(160, ALL_COLUMNS, id="160"),
    ],
)
def test_the_live_view_fits_the_terminal_keeping_the_cooldown_step_3_is_about(
    width: int, columns: tuple[str, ...]
) -> None:
    lines = _live_screen(width, _scenario_step(3))

    assert all(len(_visible(line)) < width for line in lines), "no line reaches the terminal's edge"
    table = _machine_table(lines)
    assert tuple(table["elitedesk-1"]) == columns
    assert table["elitedesk-1"]["COOLDOWN"] == "1m56s", "the cooldown time left is shown whole"
    error = table["elitedesk-1"]["LAST ERROR"]
    assert error.startswith("startup Job elitedesk-1"), "the error, shortened"
    assert error.endswith("…")


@pytest.mark.parametrize(
    ("step", "machine", "column", "text", "given_up"),
    [
        pytest.param(2, "nuc-2", "OPERATION", "shutdown #2 job nuc-2-shutdown-2", "LAST ERROR",
                     id="step-2-is-about-the-power-jobs"),
        pytest.param(3, "elitedesk-1", "LAST ERROR", "startup Job elitedesk-1-startup-1 fail…", "OPERATION",
                     id="step-3-is-about-the-failed-boot"),
    ],
)
def test_at_80_columns_the_live_view_keeps_the_columns_the_step_is_about(
    step: int, machine: str, column: str, text: str, given_up: str
) -> None:
    table = _machine_table(_live_screen(80, _scenario_step(step)))

    assert table[machine][column] == text
    assert given_up not in table[machine], "a column the step is not about gives way"
    assert table["elitedesk-1"]["COOLDOWN"] == "1m56s"


def test_a_narrow_live_view_keeps_its_colours_without_counting_them_as_width() -> None:
    lines = _live_screen(80, _scenario_step(3))

    (ready,) = [line for line in lines if _visible(line).startswith("nuc-1 ")]
    assert "\x1b[32mReady\x1b[0m" in ready, "the state keeps its colour"
    assert len(_visible(ready)) < 80
    row = {"MACHINE": "nuc-1", "STATE": "Ready", "LAST ERROR": "-", "COOLDOWN": "-"}
    assert _machine_table(lines)["nuc-1"] == row, "the colour codes take no room: cells line up under their headers"


def test_the_live_view_reads_the_width_from_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "40")

    lines = _live_screen(0, _scenario_step(3), terminal=False)

    assert all(len(_visible(line)) < 80 for line in lines)
    assert _machine_table(lines)["elitedesk-1"]["COOLDOWN"] == "1m56s"


def test_the_live_view_shows_how_a_native_machine_is_switched_and_its_last_readback() -> None:
    base = _cooldown_observation()
    rows = tuple(
        replace(row, operation=OperationRow("shutdown", 2, "nuc-2-shutdown-2", base.now, 1, driver="ipmi"),
                readback_state="On", readback_driver="ipmi", readback_age_seconds=2)
        if row.name == "nuc-2" else row
        for row in base.view.machines
    )
    observation = replace(base, view=StatusView(machines=rows))
    screen = io.StringIO()
    display = LiveDisplay(screen, {}, colour=False, terminal=lambda: terminal_size((80, 40)),
                          native={"nuc-2": "Wake-on-LAN on, IPMI off"})

    display.show(observation, [], _scenario_step(5))
    display.close()

    lines = [_visible(line) for line in screen.getvalue().split("\n")]
    assert all(len(line) < 80 for line in lines), "no line reaches the terminal's edge"
    assert "  nuc-2   Wake-on-LAN on, IPMI off · read back: On 2s ago (ipmi)" in lines
    assert _machine_table(lines)["nuc-2"]["OPERATION"] == "shutdown #2 power-off by ipmi"


def _native_row(state: str, readback: str | None, driver: str | None = None, age: int = 0) -> MachineRow:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    operation = (
        OperationRow("startup" if state == "StartingUp" else "shutdown", 1, "nuc-2-op", now, 1, driver=driver)
        if driver else None
    )
    return MachineRow(NAMESPACE, "nuc-2", "minis", state, since=now, age_seconds=age, operation=operation,
                      readback_state=readback, readback_driver="ipmi" if readback else None,
                      readback_age_seconds=age if readback else None)


def test_a_readback_that_changes_is_told_once_and_the_summary_says_how_the_machine_was_switched() -> None:
    rows = [
        _native_row("Shutdown", "Off"),
        _native_row("StartingUp", "Off", driver="wakeOnLan"),
        _native_row("StartingUp", "On", driver="wakeOnLan"),
        _native_row("Ready", "On", age=3),  # read again: no news
        _native_row("ShuttingDown", "On", driver="ipmi"),
        _native_row("ShuttingDown", "Off", driver="ipmi"),
        _native_row("Shutdown", "Off", age=1),
    ]
    history = History()
    base = _observation(0.0, "Shutdown")
    told = []
    for number, row in enumerate(rows):
        observation = replace(base, elapsed=float(number), view=StatusView(machines=(row,)))
        told += [change.text for change in history.record(observation) if change.kind is ChangeKind.READBACK]

    assert told == ["power read back On by ipmi", "power read back Off by ipmi"]
    assert history.drivers == {"nuc-2": {"startup": "wakeOnLan", "shutdown": "ipmi"}}
    assert history.readbacks == {"nuc-2": ["Off", "On", "Off"]}
    summary = summarize(history, {"nuc-2": 25}, reached=True, outcome="done")
    assert "    nuc-2: on by wakeOnLan, off by ipmi; read back Off → On → Off (last: Off 1s ago (ipmi))" in (
        render_summary(summary).splitlines()
    )


def test_a_pipe_gets_one_line_per_change() -> None:
    log = io.StringIO()
    changes = [
        Change(1.0, ChangeKind.CALL, "CA", "NodeGroupIncreaseSize id=homelab/minis delta=3"),
        Change(1.2, ChangeKind.INSTANCE, "k3s://nuc-1", "creating → running"),
    ]

    LineDisplay(log).show(_observation(1.2, "Ready"), changes, None)

    assert log.getvalue().splitlines() == [
        "[   1.0s] CA → NodeGroupIncreaseSize id=homelab/minis delta=3",
        "[   1.2s] CA sees k3s://nuc-1: creating → running",
    ]


# --- energy, from the operator's counters ---------------------------------------------------------------------


EXPOSITION = """\
# HELP homelab_autoscaler_group_energy_used_joules Energy used by a group's machines whose draw is known.
# TYPE homelab_autoscaler_group_energy_used_joules counter
homelab_autoscaler_group_energy_used_joules_total{group="homelab/minis"} 3600.0
homelab_autoscaler_group_energy_used_joules_total{group="homelab/gpu"} 7200.0
# HELP homelab_autoscaler_group_energy_avoided_joules Energy a group's machines avoided compared with always on.
# TYPE homelab_autoscaler_group_energy_avoided_joules counter
homelab_autoscaler_group_energy_avoided_joules_total{group="homelab/minis"} 32400.0
homelab_autoscaler_group_energy_avoided_joules_total{group="homelab/gpu"} 0.0
"""


def _history(entries: list[tuple[str, float]], end: float) -> History:
    """A run of one machine ("box", 100 W) seen in each (state, at) of `entries`, ending at `end`."""
    history = History()
    history.timelines["box"] = [StateEntry(state, None, at) for state, at in entries]
    history.first = _observation(0.0, entries[0][0])
    history.last = _observation(end, entries[-1][0])
    return history


def test_the_energy_line_sums_the_operators_group_counters() -> None:
    assert energy_from_metrics(EXPOSITION) == (3.0, 9.0)
    history = _history([("Shutdown", 0.0)], end=10.0)

    summary = summarize(history, {"box": 100}, reached=True, outcome="done", counted=(3.0, 9.0))

    assert summary.energy is not None
    assert summary.energy.saved_fraction == pytest.approx(0.75)
    assert summary.energy.always_on_kwh_per_day == pytest.approx(2.4)
    assert summary.energy.saved_kwh_per_day == pytest.approx(1.8)
    assert "3.00 Wh used, 9.00 Wh avoided compared with always on (75%)" in render_summary(summary)


def test_without_counters_the_summary_says_so_instead_of_guessing() -> None:
    assert energy_from_metrics("# nothing here\n") is None
    summary = summarize(_history([("Shutdown", 0.0)], end=10.0), {"box": 100}, reached=True, outcome="done")
    assert summary.energy is None
    assert "counters could not be read" in render_summary(summary)



@pytest.mark.parametrize("height", [24, 30, 40])
def test_the_live_view_fits_the_terminal_height_keeping_the_newest_changes(height: int) -> None:
    changes = [Change(float(second), ChangeKind.STATE, f"m{second}", "Shutdown → StartingUp") for second in range(8)]
    screen = io.StringIO()
    display = LiveDisplay(screen, {}, colour=False, terminal=lambda: terminal_size((80, height)))

    display.show(_cooldown_observation(), changes, _scenario_step(3))
    display.close()

    lines = [_visible(line) for line in _visible(screen.getvalue()).rstrip("\n").split("\n")]
    assert len(lines) < height, "the frame never scrolls, or redrawing it would break"
    recent = lines[lines.index("Recent") + 1:]
    assert recent, "some recent changes are shown"
    assert "m7" in recent[-1], "the newest change is kept"
    shown = [int(re.search(r"m(\d)", line).group(1)) for line in recent]  # type: ignore[union-attr]
    assert shown == list(range(8 - len(shown), 8)), "the newest ones, oldest first"
