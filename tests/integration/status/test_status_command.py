"""`homelab-autoscaler status` against a seeded fake API: the rows a user reads, the JSON a script reads, and the
exit status monitoring reads (3 while a machine is quarantined, 1 when the API cannot be read, 2 for bad usage)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from homelab_autoscaler.cli import build_parser, main
from homelab_autoscaler.commands.status import run
from schemas import GROUP_VERSION
from schemas.crds import NODE_CRD_NAME
from schemas.labels import CONDITION_OPERATION_FAILED, GROUP_LABEL
from sim.fakeapi import FakeApiServer
from sim.fakeapi.kubeconfig import write_kubeconfig
from sim.seed import seed_homelab
from tests.support.crds import looser_crd

NAMESPACE = "homelab"
AGE = re.compile(r"^(\d+[dhms])+$")
ANSI = re.compile(r"\x1b\[")
SUBPROCESS_TIMEOUT = 60.0


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def patch_status(server: FakeApiServer, name: str, fields: dict[str, Any]) -> None:
    server.store.patch(GROUP_VERSION, "nodes", name, {"status": fields}, NAMESPACE, subresource="status")


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeApiServer]:
    """The seeded homelab (group-1: machines 1-3, group-2: machines 4-6) with statuses written by hand."""
    with FakeApiServer(host="127.0.0.1", port=0) as server:
        seed_homelab(server, NAMESPACE)
        now = datetime.now(UTC)
        patch_status(
            server,
            "machine-0001",
            {
                "state": "Ready",
                "since": stamp(now - timedelta(hours=2)),
                "providerID": f"homelab://{NAMESPACE}/machine-0001",
            },
        )
        patch_status(
            server,
            "machine-0002",
            {
                "state": "StartingUp",
                "since": stamp(now - timedelta(minutes=3)),
                "attempts": 3,
                "operationTries": 1,
                "operation": {
                    "kind": "startup",
                    "attempt": 3,
                    "jobName": "machine-0002-startup-3",
                    "started": stamp(now - timedelta(minutes=3)),
                },
            },
        )
        patch_status(
            server,
            "machine-0004",
            {
                "state": "Quarantined",
                "since": stamp(now - timedelta(minutes=30)),
                "consecutiveFailures": 3,
                "reason": "Quarantined",
                "message": "quarantined after 3 consecutive failed boots",
            },
        )
        patch_status(
            server,
            "machine-0005",
            {
                "state": "Shutdown",
                "since": stamp(now - timedelta(minutes=1)),
                "consecutiveFailures": 1,
                "cooldownUntil": stamp(now + timedelta(hours=1)),
                "reason": "CoolingDown",
                "message": "released after a failed boot",
                "conditions": [
                    {
                        "type": CONDITION_OPERATION_FAILED,
                        "status": "True",
                        "reason": "BootTimeout",
                        "message": "machine-0005 not Ready within 10m",
                    }
                ],
            },
        )
        # A Node CR our schemas refuse. The CRD refuses it too, as a real API server would, so it is stored the
        # one way such an object reaches a cluster: under an older, looser CRD, before the current one.
        with looser_crd(server, NODE_CRD_NAME):
            server.store.create(
                GROUP_VERSION,
                "nodes",
                {
                    "apiVersion": GROUP_VERSION,
                    "kind": "Node",
                    "metadata": {"name": "machine-broken", "labels": {GROUP_LABEL: "group-2"}},
                    "spec": {"priority": "high"},
                },
                NAMESPACE,
            )
        yield server


@pytest.fixture(scope="module")
def kubeconfig(fake_api: FakeApiServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig whose context namespace is the homelab's, as `kubectl config set-context` would leave it."""
    return fake_api.write_kubeconfig(tmp_path_factory.mktemp("status") / "kubeconfig", namespace=NAMESPACE)




def status(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    """The command in-process, as the CLI would dispatch it: exit status, stdout, stderr."""
    args = build_parser().parse_args(["status", *arguments])
    code = run(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tables(text: str) -> list[list[dict[str, str]]]:
    """Each text table as a list of header → cell rows (cells are separated by at least three spaces)."""
    parsed = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.splitlines()
        headers = re.split(r" {3,}", lines[0])
        parsed.append([dict(zip(headers, re.split(r" {3,}", line), strict=True)) for line in lines[1:]])
    return parsed


def by_name(rows: list[dict[str, str]], column: str) -> dict[str, dict[str, str]]:
    return {row[column]: row for row in rows}


def test_text_tables_show_groups_and_machines_and_exit_3_for_quarantine(
    capsys: pytest.CaptureFixture[str], kubeconfig: Path
) -> None:
    code, out, err = status(capsys, "--kubeconfig", str(kubeconfig))
    assert (code, err) == (3, "")
    group_rows, machine_rows, energy_rows = tables(out)
    assert [row["GROUP"] for row in energy_rows] == ["group-1", "group-2"]
    assert group_rows == [
        {"GROUP": "group-1", "MIN": "0", "MAX": "3", "TARGET": "2", "READY": "1"},
        {"GROUP": "group-2", "MIN": "0", "MAX": "3", "TARGET": "0", "READY": "0"},
    ]
    assert [row["MACHINE"] for row in machine_rows] == [
        "machine-0001",
        "machine-0002",
        "machine-0003",
        "machine-0004",
        "machine-0005",
        "machine-0006",
        "machine-broken",
    ]
    machines = by_name(machine_rows, "MACHINE")
    assert machines["machine-0001"]["STATE"] == "Ready"
    assert machines["machine-0001"]["SINCE"].startswith("2h")
    assert machines["machine-0002"]["STATE"] == "StartingUp"
    assert machines["machine-0002"]["OPERATION"] == "startup #3 job machine-0002-startup-3"
    assert AGE.match(machines["machine-0002"]["SINCE"])
    assert machines["machine-0004"]["STATE"] == "Quarantined"
    assert machines["machine-0004"]["LAST ERROR"] == "quarantined after 3 consecutive failed boots"
    assert machines["machine-0005"]["LAST ERROR"] == "machine-0005 not Ready within 10m"
    assert re.match(r"^(1h|[0-5]?\dm\d+s|59m)", machines["machine-0005"]["COOLDOWN"])
    assert machines["machine-0003"]["SINCE"] == "-"
    assert machines["machine-broken"]["STATE"] == "Invalid"
    assert machines["machine-broken"]["LAST ERROR"].startswith("spec.priority")
    assert ANSI.search(out) is None, "colours although stdout is not a terminal"


def test_json_document_for_scripts(capsys: pytest.CaptureFixture[str], kubeconfig: Path) -> None:
    code, out, _err = status(capsys, "--kubeconfig", str(kubeconfig), "-o", "json")
    assert code == 3
    document = json.loads(out)
    groups = {group["name"]: group for group in document["groups"]}
    assert (groups["group-2"]["machines"]["Quarantined"], groups["group-2"]["machines"]["Invalid"]) == (1, 1)
    machines = {machine["name"]: machine for machine in document["machines"]}
    assert machines["machine-0001"]["providerID"] == f"homelab://{NAMESPACE}/machine-0001"
    assert machines["machine-0001"]["ageSeconds"] >= 2 * 3600
    assert machines["machine-0002"]["operation"]["jobName"] == "machine-0002-startup-3"
    assert 0 < machines["machine-0005"]["cooldownSeconds"] <= 3600
    assert machines["machine-0004"]["state"] == "Quarantined"


def test_one_group_without_quarantine_exits_0(capsys: pytest.CaptureFixture[str], kubeconfig: Path) -> None:
    code, out, _err = status(capsys, "--kubeconfig", str(kubeconfig), "--group", "group-1", "-o", "wide")
    assert code == 0
    group_rows, machine_rows, *_energy = tables(out)
    assert [row["GROUP"] for row in group_rows] == ["group-1"]
    assert (group_rows[0]["STARTINGUP"], group_rows[0]["SHUTDOWN"]) == ("1", "1")
    assert {row["GROUP"] for row in machine_rows} == {"group-1"}
    assert by_name(machine_rows, "MACHINE")["machine-0001"]["PROVIDER-ID"] == f"homelab://{NAMESPACE}/machine-0001"


def test_all_namespaces_adds_the_namespace_column(capsys: pytest.CaptureFixture[str], kubeconfig: Path) -> None:
    code, out, _err = status(capsys, "--kubeconfig", str(kubeconfig), "-A")
    assert code == 3
    group_rows, machine_rows, *_energy = tables(out)
    assert {row["NAMESPACE"] for row in group_rows + machine_rows} == {NAMESPACE}


def test_empty_namespace_says_so_on_stderr(capsys: pytest.CaptureFixture[str], kubeconfig: Path) -> None:
    code, out, err = status(capsys, "--kubeconfig", str(kubeconfig), "--namespace", "nothing-here")
    assert (code, out) == (0, "")
    assert "No Group or Node resources found in namespace nothing-here" in err


def test_unknown_group_is_an_error(capsys: pytest.CaptureFixture[str], kubeconfig: Path) -> None:
    code, out, err = status(capsys, "--kubeconfig", str(kubeconfig), "--group", "no-such-group")
    assert (code, out) == (1, "")
    assert "no-such-group" in err


def test_cluster_without_our_crds_names_the_cause(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with FakeApiServer(host="127.0.0.1", port=0) as bare:
        code, out, err = status(capsys, "--kubeconfig", str(bare.write_kubeconfig(tmp_path / "kubeconfig")))
    assert (code, out) == (1, "")
    assert "CRDs installed" in err


def _free_port() -> int:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _unreachable(tmp_path: Path) -> tuple[Path, str]:
    port = _free_port()
    path = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    return path, (
        f"list Group resources: cannot reach the API server http://127.0.0.1:{port}: connection refused "
        "(is the API server running, and is this the right address?)"
    )


def _malformed(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "kubeconfig"
    path.write_text('apiVersion: v1\nclusters:\n- cluster: {server: "x"\n  name: [\n')
    return path, f"kubeconfig {path} is not valid YAML: expected ',' or '}}', but got '<scalar>' at line 4, column 3"


def _absent(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / "absent", f"kubeconfig {tmp_path / 'absent'} does not exist"


@pytest.mark.parametrize("case", [_absent, _malformed, _unreachable], ids=["missing", "malformed", "unreachable"])
def test_an_unusable_cluster_is_one_line_naming_the_file_or_the_server(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: Any
) -> None:
    path, why = case(tmp_path)

    code, out, err = status(capsys, "--kubeconfig", str(path))

    assert (code, out) == (1, "")
    assert err == f"homelab-autoscaler status: {why}\n"


def test_no_kubeconfig_at_all_says_where_it_looked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    code, out, err = status(capsys)

    assert (code, out) == (1, "")
    assert err == (
        "homelab-autoscaler status: no kubeconfig: ~/.kube/config does not exist and KUBECONFIG is not set; "
        "pass --kubeconfig FILE\n"
    )


def test_a_context_the_kubeconfig_lacks_is_named(capsys: pytest.CaptureFixture[str], kubeconfig: Path) -> None:
    code, _out, err = status(capsys, "--kubeconfig", str(kubeconfig), "--context", "nope")

    assert code == 1
    assert err == f"homelab-autoscaler status: kubeconfig {kubeconfig} has no context 'nope'\n"


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["-n", "homelab", "-A"], id="namespace-and-all"),
        pytest.param(["-o", "yaml"], id="unknown-output"),
        pytest.param(["--no-such-flag"], id="unknown-flag"),
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], arguments: list[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["status", *arguments])
    assert stopped.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_as_a_subprocess(kubeconfig: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "homelab_autoscaler.cli", "status", "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert finished.returncode == 3, finished.stderr
    assert finished.stderr == ""
    _group_rows, machine_rows, *_energy = tables(finished.stdout)
    states = {row["MACHINE"]: row["STATE"] for row in machine_rows}
    assert (states["machine-0001"], states["machine-0002"], states["machine-0004"]) == (
        "Ready",
        "StartingUp",
        "Quarantined",
    )
    assert ANSI.search(finished.stdout) is None
