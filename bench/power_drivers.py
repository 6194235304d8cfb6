"""Benchmark of the native power drivers against their loopback emulators; prints figures, asserts nothing.

For each driver and action: the latency of one request through `PowerExecutor` (submit to outcome: queueing, reading
the credentials, the protocol exchange) over N sequential requests, p50 and p99 and max. Then the throughput of one
BMC under concurrent requests for different machines behind it (serialised by design, so this is the per-BMC
ceiling) and of many BMCs at once (bounded by the worker count). The emulators are those of the tests: pyghmi's BMC
class in a child process (`sim.machines.bmc_host`), sushy-tools over HTTPS in a subprocess, an asyncssh server and a
magic-packet listener. Loopback hides network latency; real BMCs add their own (tens to hundreds of ms).

Run from the repository root: `.venv/bin/python -m bench.power_drivers [--requests N]`.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncssh

from actors.power_port import PowerAction, PowerOutcome, PowerRequest
from power_drivers.executor import PowerExecutor
from power_drivers.secrets import InMemorySecretReader
from schemas.power import PowerSpec
from sim.machines.bmc_host import BmcHost
from sim.machines.emulators import WakeOnLanListener
from tests.support.redfish_emulator import RedfishEmulator
from tests.support.ssh_server import SshTestServer

NAMESPACE = "bench"
USER = "bench"
PASSWORD = "bench-password"


class Switch:
    powered_on = False

    def command_power_on(self, source: str) -> None:
        self.powered_on = True

    def command_shutdown(self, source: str) -> None:
        self.powered_on = False

    def command_power_cut(self) -> None:
        self.powered_on = False


def measure(executor: PowerExecutor, power: dict[str, Any], action: PowerAction, count: int) -> list[float]:
    spec = PowerSpec.model_validate(power)
    seconds = []
    for attempt in range(count):
        answers: queue.Queue[PowerOutcome] = queue.Queue()
        started = time.perf_counter()
        executor.submit(PowerRequest(f"{NAMESPACE}/box", action, attempt, spec, 30.0, answers))
        outcome = answers.get(timeout=60)
        seconds.append(time.perf_counter() - started)
        if not outcome.succeeded:
            raise RuntimeError(f"{action} failed: {outcome.message}")
    return seconds


def concurrent(executor: PowerExecutor, powers: list[dict[str, Any]], action: PowerAction) -> float:
    """Seconds to answer one request per machine, all submitted at once."""
    started = time.perf_counter()
    waiting = []
    for index, power in enumerate(powers):
        answers: queue.Queue[PowerOutcome] = queue.Queue()
        executor.submit(
            PowerRequest(f"{NAMESPACE}/box-{index}", action, 1, PowerSpec.model_validate(power), 60.0, answers)
        )
        waiting.append(answers)
    for answers in waiting:
        answers.get(timeout=120)
    return time.perf_counter() - started


def report(label: str, seconds: list[float]) -> None:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"  {label:<34} n={len(seconds):<4} p50 {statistics.median(ordered) * 1000:7.2f} ms   "
        f"p99 {p99 * 1000:7.2f} ms   max {ordered[-1] * 1000:7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="sequential requests per driver and action")
    options = parser.parse_args()
    count: int = options.requests
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    secrets = InMemorySecretReader()
    secrets.secrets[(NAMESPACE, "bmc")] = {"username": USER.encode(), "password": PASSWORD.encode()}
    secrets.secrets[(NAMESPACE, "ssh")] = {"key": client_key.export_private_key()}
    executor = PowerExecutor(lambda reply_to, outcome: reply_to.put(outcome), secrets, workers=4)
    with (
        tempfile.TemporaryDirectory() as folder,
        WakeOnLanListener() as listener,
        BmcHost() as bmc_host,
        RedfishEmulator(Path(folder) / "redfish", USER, PASSWORD, systems=8) as redfish,
        SshTestServer(client_key) as ssh_server,
    ):
        assert redfish.certificate is not None
        secrets.secrets[(NAMESPACE, "ca")] = {"ca.crt": redfish.certificate.pem}
        wake = {"macAddress": "02:00:00:00:00:01", "broadcastAddress": "127.0.0.1", "port": listener.port}
        ssh = {
            "host": "127.0.0.1",
            "port": ssh_server.port,
            "user": "power",
            "privateKey": {"name": "ssh", "key": "key"},
            "knownHosts": ssh_server.known_hosts_line,
        }
        bmc = bmc_host.add(Switch(), USER, PASSWORD)
        ipmi = {"ipmi": {"host": "127.0.0.1", "port": bmc.port, "credentials": {"name": "bmc"}}}

        def redfish_power(system: int) -> dict[str, Any]:
            return {
                "redfish": {
                    "endpoint": redfish.endpoint,
                    "systemId": redfish.system_ids[system],
                    "credentials": {"name": "bmc"},
                    "caBundle": {"secretKeyRef": {"name": "ca", "key": "ca.crt"}},
                }
            }

        cases: list[tuple[str, dict[str, Any], PowerAction, int]] = [
            ("wakeOnLan power-on", {"wakeOnLan": wake, "ssh": ssh}, PowerAction.POWER_ON, count),
            ("ipmi read-power-state", ipmi, PowerAction.READ_POWER_STATE, count),
            ("ipmi power-on", ipmi, PowerAction.POWER_ON, count),
            ("redfish read-power-state", redfish_power(0), PowerAction.READ_POWER_STATE, count),
            ("redfish power-on", redfish_power(0), PowerAction.POWER_ON, count),
            ("ssh power-off", {"wakeOnLan": wake, "ssh": ssh}, PowerAction.POWER_OFF, max(10, count // 4)),
        ]
        print(f"latency of one request through PowerExecutor (sequential, {count} per row unless noted)")
        for label, power, action, requests in cases:
            report(label, measure(executor, power, action, requests))
        print("one Redfish BMC with 8 systems, 8 power-on requests at once (one at a time per BMC by design)")
        elapsed = concurrent(executor, [redfish_power(index) for index in range(8)], PowerAction.POWER_ON)
        print(f"  answered all 8 in {elapsed * 1000:.1f} ms ({elapsed / 8 * 1000:.1f} ms each)")
        run_many_bmcs(executor, bmc_host)
    executor.close()


def run_many_bmcs(executor: PowerExecutor, bmc_host: BmcHost) -> None:
    bmcs = [bmc_host.add(Switch(), USER, PASSWORD) for _ in range(16)]
    powers = [{"ipmi": {"host": "127.0.0.1", "port": bmc.port, "credentials": {"name": "bmc"}}} for bmc in bmcs]
    elapsed = concurrent(executor, powers, PowerAction.READ_POWER_STATE)
    print(
        f"16 IPMI BMCs, one readback each, submitted at once (4 workers, one IPMI exchange at a time per process): "
        f"{elapsed * 1000:.1f} ms ({16 / elapsed:.0f} readbacks/s)"
    )


if __name__ == "__main__":
    main()
