"""`homelab-autoscaler sim` as a user runs it: it prints where its API is, kubectl works against it, machines
come up, and SIGTERM or SIGINT stops it cleanly with exit status 0."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from homelab_autoscaler.commands.sim import PROVIDER_ID_MODES
from sim.fakeapi import FakeApiServer
from sim.machines import ProviderIdMode
from sim.seed import seed_homelab
from tests.support.cli_process import CliProcess
from tests.support.polling import wait_for

KUBECTL = "/usr/bin/kubectl"
STARTUP_TIMEOUT = 20.0
EXIT_TIMEOUT = 15.0
FAST_MACHINES = ["--boot-seconds", "0.1", "--shutdown-seconds", "0.1", "--heartbeat-seconds", "0.2"]


class SimProcess(CliProcess):
    """`sim ARGUMENTS` in a subprocess (see tests/support/cli_process.py)."""

    def __init__(self, *arguments: str) -> None:
        super().__init__("sim", *arguments)

    def value_after(self, prefix: str, timeout: float = STARTUP_TIMEOUT) -> str:
        return super().value_after(prefix, timeout)


@pytest.fixture
def sim_processes() -> Iterator[list[SimProcess]]:
    started: list[SimProcess] = []
    yield started
    for process in started:
        process.kill()


def kubectl(kubeconfig: str, *arguments: str) -> str:
    result = subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, *arguments],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    "stop_signal",
    [pytest.param(signal.SIGTERM, id="sigterm"), pytest.param(signal.SIGINT, id="sigint")],
)
def test_the_sim_serves_a_homelab_kubectl_can_see_and_stops_cleanly(
    sim_processes: list[SimProcess], stop_signal: signal.Signals
) -> None:
    sim = SimProcess("--machines", "3", "--groups", "1", "--power-on-at", "machine-0002=0", *FAST_MACHINES)
    sim_processes.append(sim)

    url = sim.value_after("fake API server:")
    kubeconfig = sim.value_after("kubeconfig:")

    assert url.startswith("http://127.0.0.1:")
    assert Path(kubeconfig).is_file()
    wait_for(
        lambda: "node/machine-0002" in kubectl(kubeconfig, "get", "nodes", "-o", "name"),
        timeout=STARTUP_TIMEOUT,
        what="kubectl to list the machine that powered itself on",
    )
    # The kubeconfig's context is the simulated namespace: no `-n` needed, for kubectl or for `status`.
    node_resources = kubectl(kubeconfig, "get", "nodes.infra.homecluster.dev", "-o", "name")
    assert len(node_resources.split()) == 3
    status = subprocess.run(
        [sys.executable, "-m", "homelab_autoscaler.cli", "status", "--kubeconfig", kubeconfig],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert status.returncode == 0, status.stderr
    assert "machine-0002" in status.stdout
    exit_status, stderr = sim.stop(stop_signal)
    assert exit_status == 0, stderr
    assert not Path(kubeconfig).exists()  # the temporary kubeconfig is removed with the server


def test_an_unknown_machine_in_a_fault_flag_is_refused(sim_processes: list[SimProcess]) -> None:
    sim = SimProcess("--machines", "2", "--fail-boot", "machine-9999")
    sim_processes.append(sim)

    exit_status, stderr = sim.wait(EXIT_TIMEOUT)

    assert exit_status == 2
    assert "machine-9999" in stderr


def test_attached_to_an_existing_cluster_it_plays_the_machines_already_described(
    sim_processes: list[SimProcess], tmp_path: Path
) -> None:
    with FakeApiServer(host="127.0.0.1", port=0) as cluster:
        seed_homelab(cluster, "homelab", groups=1, machines=2)
        kubeconfig = tmp_path / "kubeconfig"
        cluster.write_kubeconfig(kubeconfig)
        sim = SimProcess("--kubeconfig", str(kubeconfig), "--power-on-at", "machine-0001=0", *FAST_MACHINES)
        sim_processes.append(sim)

        assert sim.value_after("attached to API server:") == cluster.url
        wait_for(
            lambda: cluster.store.list("v1", "nodes", label_selector="kubernetes.io/hostname=machine-0001"),
            timeout=STARTUP_TIMEOUT,
            what="the machine that powered itself on to register",
        )
        exit_status, stderr = sim.stop(signal.SIGTERM)

    assert exit_status == 0, stderr
    assert kubeconfig.exists()  # a kubeconfig the user gave is never removed


def test_the_command_offers_exactly_the_simulators_provider_id_modes() -> None:
    assert sorted(PROVIDER_ID_MODES) == sorted(mode.value for mode in ProviderIdMode)
