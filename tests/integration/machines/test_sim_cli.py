"""`homelab-autoscaler sim` as a user runs it: it prints where its API is, kubectl works against it, machines
come up, and SIGTERM or SIGINT stops it cleanly with exit status 0."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from homelab_autoscaler.commands.sim import PROVIDER_ID_MODES
from sim.fakeapi import FakeApiServer
from sim.machines import ProviderIdMode
from sim.seed import seed_homelab
from tests.support.polling import wait_for

KUBECTL = "/usr/bin/kubectl"
STARTUP_TIMEOUT = 20.0
EXIT_TIMEOUT = 15.0
FAST_MACHINES = ["--boot-seconds", "0.1", "--shutdown-seconds", "0.1", "--heartbeat-seconds", "0.2"]


class SimProcess:
    """The CLI in a subprocess, its stdout read line by line on a helper thread."""

    def __init__(self, *arguments: str) -> None:
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "homelab_autoscaler.cli", "sim", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))

    def value_after(self, prefix: str, timeout: float = STARTUP_TIMEOUT) -> str:
        """The rest of the first stdout line starting with `prefix`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.process.poll() is not None and self._lines.empty()):
                pytest.fail(f"no {prefix!r} line from the sim command (exit status {self.process.poll()})")
            try:
                line = self._lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def stop(self, signal_number: int) -> tuple[int, str]:
        self.process.send_signal(signal_number)
        try:
            _stdout, stderr = self.process.communicate(timeout=EXIT_TIMEOUT)
        finally:
            self.kill()
        self._reader.join(EXIT_TIMEOUT)
        assert not self._reader.is_alive(), "the simulator's output was still being read after it exited"
        return self.process.returncode, stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


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

    _stdout, stderr = sim.process.communicate(timeout=EXIT_TIMEOUT)

    assert sim.process.returncode == 2
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
