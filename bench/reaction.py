"""Benchmark of the operator's reaction times against a fake API over HTTP; prints figures, asserts nothing.

For 1000 and 5000 machines (groups of 50), the whole operator (`homelab_autoscaler.operator.Operator`: watches,
watcher, Supervisor, node and group actors, writer, gRPC gateway, and the native power drivers' executor as its
power port) runs in a child process against our fake API server in another, so the RSS printed is the operator's
own (plus this script's gRPC client). Odd groups are powered by Jobs; even groups natively (`spec.power`): two of
them by Redfish alone (power-on and readback, one fake system per machine on one sushy-tools BMC,
`bench.redfish_bmc`), the others by Wake-on-LAN with SSH for power-off, whose magic packets reach a loopback UDP
listener here. Only BMC machines are read back, so the readback load is what 100 BMC machines put on one BMC (at
the Group's default steady interval); 5000 BMC machines behind one emulator would be a load test of sushy-tools.
It prints:

- cold start: from `Operator.start()` to gRPC health SERVING (list everything over HTTP, derive every machine,
  ready to serve). Measured on a restart, as after a crash or a leadership change: a first operator run writes
  every machine's status, stops, and a second one is timed (a first start ever also writes 1 status per machine;
  its time to drain those writes is printed too);
- IncreaseSize → startup Job POST: from just before the gRPC call to the moment the fake API receives the POST
  of the Job (its `on_request` hook timestamps it); sequential calls, one machine each, Job groups in turn;
- IncreaseSize answered: the same calls' gRPC round trip, what CA waits for (the group answers once the machine's
  Job is created and its StartingUp status is stored);
- Node Ready → Node resource status Ready: from just before this script POSTs the machine's Ready core Node (it
  plays the kubelet) to the moment the fake API receives the status PATCH that records Ready;
- IncreaseSize → power command sent, per native driver: from just before the gRPC call to the arrival of the
  machine's magic packet at the UDP listener (Wake-on-LAN) or of its reset POST at the BMC (Redfish; the driver's
  discovery GETs come first); sequential calls, and each machine then "boots" (this script registers its Ready
  Node), so no machine is left being read back at the transition interval;
- the power metrics of /metrics after those calls: operations, failures and try latency per driver, and the
  readback age of each BMC machine (summarised);
- RSS (VmRSS) after the cold start and at the end.

Timestamps of all processes are `time.monotonic()`, which on Linux is one system-wide clock. The budgets
(docs/architecture/overview.md, "Performance budget"): p99 ≤ 50 ms for IncreaseSize → Job POST with 5000 node
actors, cold start ≤ 10 s, RSS ≤ 150 MiB.

Run from the repository root: `.venv/bin/python -m bench.reaction` (or `.venv/bin/python bench/reaction.py`);
`--sizes 1000` limits the sizes.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as a file, this folder would come first on sys.path; the packages live one level up.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import base64
import json
import logging
import multiprocessing
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Final

import asyncssh
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubernetes import client as kube_client

from bench.figures import percentile, rss_mib
from bench.redfish_bmc import TimestampingRedfish
from homelab_autoscaler.native_power import native_power_port
from homelab_autoscaler.operator import Operator
from homelab_autoscaler.settings import Settings
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas import GROUP_VERSION
from schemas import labels as label_names
from sim.machines.emulators import WakeOnLanListener
from sim.machines.native_power import simulated_mac
from sim.seed import plan_homelab

NAMESPACE = "homelab"
GROUP_SIZE = 50
SAMPLES = 200
WAIT_SECONDS = 30.0
QUIET_SECONDS = 2.0
"""The first run's status writes count as drained after this long without one."""
REDFISH_GROUPS: Final = 2
READBACK_WAIT_SECONDS: Final = 3.0
LOOPBACK: Final = "127.0.0.1"
BMC_USER: Final = "bench"
BMC_PASSWORD: Final = "bench-bmc-password"
BMC_SECRET: Final = "bench-bmc-credentials"
BMC_CA_SECRET: Final = "bench-bmc-ca"
SSH_SECRET: Final = "bench-ssh-key"
POWER_METRIC_PREFIXES: Final = ("homelab_autoscaler_power_operations_total", "homelab_autoscaler_power_failures_total",
                                "homelab_autoscaler_power_operation_seconds_count",
                                "homelab_autoscaler_power_operation_seconds_sum")
READBACK_AGE_METRIC: Final = "homelab_autoscaler_machine_power_readback_age_seconds"


@dataclass(frozen=True)
class Layout:
    """Which groups are powered how: odd ones by Jobs, even ones natively (the last two of those by Redfish)."""

    jobs: list[str]
    wake_on_lan: list[str]
    redfish: list[str]


def group_count(size: int) -> int:
    return max(1, size // GROUP_SIZE)


def layout(groups: int) -> Layout:
    odd = [f"group-{number}" for number in range(1, groups + 1, 2)]
    even = [f"group-{number}" for number in range(2, groups + 1, 2)]
    split = len(even) - min(REDFISH_GROUPS, len(even) // 2)
    return Layout(odd, even[:split], even[split:])


@dataclass(frozen=True)
class NativeSeed:
    """What the fake API adds to the seeded homelab: each native machine's spec.power and the Secrets they name."""

    groups: list[str]
    powers: dict[str, dict[str, Any]]
    secrets: list[dict[str, Any]]


def secret(name: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


# --- the child process: the fake API server -------------------------------------------------------------------


def serve_fake_api(size: int, directory: str, events: Any, commands: Any, native: NativeSeed) -> None:
    """Runs in the child: a seeded fake API whose hook reports Job POSTs and status PATCHes to `events`."""
    from sim.fakeapi import FakeApiServer
    from sim.seed import seed_homelab

    status_prefix = f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/nodes/"
    jobs_path = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"

    def hook(method: str, target: str, body: bytes) -> None:
        now = time.monotonic()
        if method == "POST" and target.split("?")[0] == jobs_path:
            labels = json.loads(body)["metadata"]["labels"]
            events.put(("job", labels[label_names.MACHINE_LABEL], labels[label_names.GROUP_LABEL], now))
        elif method == "PATCH" and target.startswith(status_prefix) and target.split("?")[0].endswith("/status"):
            patch = json.loads(body)
            value = patch[0].get("value", {}) if isinstance(patch, list) and patch else {}
            machine = target[len(status_prefix):].split("/")[0]
            events.put(("status", machine, str(value.get("state", "")), now))

    with FakeApiServer(history_limit=100_000, watch_queue_limit=100_000, bookmark_interval=5.0) as fake:
        seed_homelab(fake, NAMESPACE, groups=group_count(size), machines=size)
        fake.store.create("v1", "namespaces", {"metadata": {"name": "homelab-autoscaler"}})
        for body in native.secrets:
            fake.store.create("v1", "secrets", body, NAMESPACE)
        for group in native.groups:
            # Like the Job groups measured, no concurrent-boot limit: it would queue the sequential calls.
            resource = fake.store.get(GROUP_VERSION, "groups", group, NAMESPACE)
            resource["spec"].pop("maxConcurrentBoots", None)
            fake.store.update(GROUP_VERSION, "groups", resource, NAMESPACE)
        for machine, power in native.powers.items():
            resource = fake.store.get(GROUP_VERSION, "nodes", machine, NAMESPACE)
            resource["spec"].pop("startupJob", None)
            resource["spec"].pop("shutdownJob", None)
            resource["spec"]["power"] = power
            fake.store.update(GROUP_VERSION, "nodes", resource, NAMESPACE)
        kubeconfig = Path(directory) / "kubeconfig"
        fake.write_kubeconfig(kubeconfig)
        fake.on_request.append(hook)
        commands.send((str(kubeconfig), fake.url))
        commands.recv()  # until the parent says stop


# --- the parent: the operator and the measurements ------------------------------------------------------------


@dataclass
class Arrivals:
    """What the fake API and the power receivers received, consumed from the queue on a thread of its own."""

    events: Any
    jobs: list[tuple[str, str, float]] = field(default_factory=list)
    statuses: list[tuple[str, str, float]] = field(default_factory=list)
    powers: list[tuple[str, str, float]] = field(default_factory=list)
    """(machine, driver, moment) of each magic packet or Redfish reset command received."""
    reads: list[tuple[str, str, float]] = field(default_factory=list)
    """(machine, driver, moment) of each Redfish GET of a system answered."""
    changed: threading.Condition = field(default_factory=threading.Condition)

    def run(self) -> None:
        while (item := self.events.get()) is not None:
            kind, machine, detail, moment = item
            with self.changed:
                received = {"job": self.jobs, "status": self.statuses, "power": self.powers, "read": self.reads}[kind]
                received.append((machine, detail, moment))
                self.changed.notify_all()

    def wait(self, predicate: Any, timeout: float = WAIT_SECONDS) -> Any:
        with self.changed:
            found = self.changed.wait_for(predicate, timeout)
        if not found:
            raise TimeoutError("the expected request did not arrive in time")
        return found


def start_operator(kubeconfig: str) -> tuple[Operator, float]:
    settings = Settings.from_flags(
        kubeconfig=Path(kubeconfig),
        watch_namespace=NAMESPACE,
        grpc_address="127.0.0.1:0",
        metrics_address="127.0.0.1:0",
        webhook_address="",
    )
    operator = Operator(settings, power=native_power_port)
    started = time.monotonic()
    operator.start()
    if not operator.wait_acting(WAIT_SECONDS * 4):
        raise TimeoutError("the operator did not start acting")
    channel = grpc.insecure_channel(f"127.0.0.1:{operator.grpc_port}")
    health = health_pb2_grpc.HealthStub(channel)
    while health.Check(health_pb2.HealthCheckRequest()).status != health_pb2.HealthCheckResponse.SERVING:
        time.sleep(0.005)
    elapsed = time.monotonic() - started
    channel.close()
    return operator, elapsed


def wait_quiet(arrivals: Arrivals, expected: int) -> float:
    """Seconds until `expected` status writes arrived (or none for QUIET_SECONDS); from the first one."""
    deadline = time.monotonic() + WAIT_SECONDS * 4
    while time.monotonic() < deadline:
        with arrivals.changed:
            count = len(arrivals.statuses)
            last = arrivals.statuses[-1][2] if arrivals.statuses else time.monotonic()
            first = arrivals.statuses[0][2] if arrivals.statuses else last
        if count >= expected or time.monotonic() - last > QUIET_SECONDS:
            return last - first
        time.sleep(0.05)
    raise TimeoutError("status writes did not drain")


def measure_increase(
    stub: Any, arrivals: Arrivals, groups: list[str], received: list[tuple[str, str, float]], samples: int,
    booted: Any = None,
) -> tuple[list[float], list[float], list[str]]:
    """(IncreaseSize → arrival in `received`, IncreaseSize answered, machines started), one sequential call per
    sample; `booted(machine, arrived)`, when given, is called after each arrival (outside the timing)."""
    to_arrival: list[float] = []
    answered: list[float] = []
    machines: list[str] = []
    for index in range(samples):
        group = groups[index % len(groups)]
        with arrivals.changed:
            seen = len(received)
        asked = time.monotonic()
        stub.NodeGroupIncreaseSize(externalgrpc.NodeGroupIncreaseSizeRequest(id=f"{NAMESPACE}/{group}", delta=1))
        answered.append(time.monotonic() - asked)
        arrivals.wait(lambda seen=seen: len(received) > seen)
        machine, _detail, moment = received[seen]
        to_arrival.append(moment - asked)
        machines.append(machine)
        if booted is not None:
            booted(machine, moment)
    return to_arrival, answered, machines


def wait_read_back(arrivals: Arrivals, machine: str, since: float) -> None:
    """Until a Redfish readback of `machine` answered after `since` (none for a Wake-on-LAN machine: no wait)."""
    if not any(name == machine for name, _driver, _moment in arrivals.reads):
        return
    try:
        arrivals.wait(lambda: any(name == machine and moment > since for name, _driver, moment in arrivals.reads),
                      READBACK_WAIT_SECONDS)
    except TimeoutError:
        print(f"note: no readback of {machine} within {READBACK_WAIT_SECONDS:.0f} s of its power-on", flush=True)


def ready_node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }


def post_ready_node(api_client: kube_client.ApiClient, machine: str) -> None:
    """Play the kubelet of `machine`: register its Ready core Node."""
    api_client.call_api(*api_client.param_serialize(
        method="POST", resource_path="/api/v1/nodes", body=ready_node(machine),
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
    )).read()  # type: ignore[no-untyped-call]  # the response's read() is unannotated


def kubelet_client(url: str) -> kube_client.ApiClient:
    configuration = kube_client.Configuration()
    configuration.host = url
    return kube_client.ApiClient(configuration)


def wait_ready(arrivals: Arrivals, machine: str, registered: float) -> float:
    """The moment the fake API received the status PATCH recording `machine` Ready, after `registered`."""
    arrivals.wait(lambda: any(
        name == machine and state == "Ready" and moment >= registered for name, state, moment in arrivals.statuses
    ))
    return next(moment for name, state, moment in arrivals.statuses
                if name == machine and state == "Ready" and moment >= registered)


def measure_ready(url: str, arrivals: Arrivals, machines: list[str]) -> list[float]:
    latencies: list[float] = []
    with kubelet_client(url) as api_client:
        for machine in machines:
            registered = time.monotonic()
            post_ready_node(api_client, machine)
            latencies.append(wait_ready(arrivals, machine, registered) - registered)
    return latencies


def print_latencies(label: str, seconds: list[float], budget: str = "") -> None:
    print(f"{label} ({len(seconds)} calls): p50 {percentile(seconds, 0.5) * 1e3:.1f} ms"
          f"  p99 {percentile(seconds, 0.99) * 1e3:.1f} ms  max {max(seconds) * 1e3:.1f} ms{budget}", flush=True)


def print_power_metrics(metrics_port: int) -> None:
    """The power drivers' counters and try latency, and the readback ages summarised, as /metrics shows them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    print("/metrics, power drivers:", flush=True)
    totals: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith(POWER_METRIC_PREFIXES):
            print(f"  {line}")
            series, value = line.rsplit(" ", 1)
            name, labels = series.split("{", 1)
            totals[(name.rsplit("_", 1)[1], labels)] = float(value)
    for (kind, labels), count in totals.items():
        if kind == "count" and count:
            print(f"  mean try {{{labels}: {totals.get(('sum', labels), 0.0) / count * 1e3:.1f} ms")
    ages = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(READBACK_AGE_METRIC + "{")]
    if ages:
        example = next(line for line in text.splitlines() if line.startswith(READBACK_AGE_METRIC + "{"))
        print(f"  {READBACK_AGE_METRIC}: {len(ages)} machines, age min {min(ages):.0f} s  median "
              f"{percentile(ages, 0.5):.0f} s  max {max(ages):.0f} s (e.g. {example})", flush=True)
    else:
        print(f"  {READBACK_AGE_METRIC}: no series", flush=True)


def first_run(kubeconfig: str, size: int, events: Any) -> None:
    """Runs in a child: the first start ever, which writes every machine's status; returns once they drained."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    arrivals = Arrivals(events)
    reader = threading.Thread(target=arrivals.run, name="bench-arrivals", daemon=True)
    reader.start()
    operator, started = start_operator(kubeconfig)
    drained = wait_quiet(arrivals, size)
    print(f"first start ever: serving after {started:.2f} s; its {len(arrivals.statuses)} initial status writes "
          f"drained {drained:.2f} s after the first", flush=True)
    operator.stop()
    events.put(None)
    reader.join(10)


def measured_run(kubeconfig: str, url: str, size: int, events: Any) -> None:
    """Runs in a fresh child, so its RSS is one operator's: the restart, then the reaction times."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    arrivals = Arrivals(events)
    reader = threading.Thread(target=arrivals.run, name="bench-arrivals", daemon=True)
    reader.start()
    rss_before = rss_mib()
    operator, cold_start = start_operator(kubeconfig)
    print(f"cold start (restart): list + derive + serving in {cold_start:.2f} s (budget 10 s); "
          f"RSS {rss_mib():.1f} MiB ({rss_before:.1f} MiB with everything imported, before the operator "
          f"started; budget 150 MiB)", flush=True)
    wait_quiet(arrivals, 0)
    groups = layout(group_count(size))
    with grpc.insecure_channel(f"127.0.0.1:{operator.grpc_port}") as channel:
        stub = externalgrpc_grpc.CloudProviderStub(channel)
        # Job groups are odd: the seeded even ones allow only 2 concurrent boots, which would queue the rest.
        samples = min(SAMPLES, len(groups.jobs) * GROUP_SIZE)
        increase, answered, machines = measure_increase(stub, arrivals, groups.jobs, arrivals.jobs, samples)
        print_latencies("IncreaseSize -> startup Job POST", increase, " (budget p99 50 ms)")
        print_latencies("IncreaseSize answered (status stored)", answered)
        ready = measure_ready(url, arrivals, machines)
        print_latencies("Node Ready -> status Ready", ready)
        with kubelet_client(url) as api_client:

            def booted(machine: str, arrived: float) -> None:
                # Each call starts from a quiet operator, as the Job calls do: the machine's own readback (due at
                # once when it starts up; all Redfish machines share one emulated BMC, on which the executor runs
                # one operation at a time, unlike real hardware with a BMC per machine) and its boot are over.
                wait_read_back(arrivals, machine, arrived)
                registered = time.monotonic()
                post_ready_node(api_client, machine)
                wait_ready(arrivals, machine, registered)

            for driver, native_groups in (("Wake-on-LAN", groups.wake_on_lan), ("Redfish", groups.redfish)):
                if not native_groups:
                    continue
                samples = min(SAMPLES, len(native_groups) * GROUP_SIZE)
                sent, answered, _machines = measure_increase(
                    stub, arrivals, native_groups, arrivals.powers, samples, booted=booted
                )
                print_latencies(f"IncreaseSize -> {driver} power command received", sent)
                print_latencies(f"IncreaseSize answered ({driver}, status stored)", answered)
    print_power_metrics(operator.metrics_port)
    print(f"RSS at the end: {rss_mib():.1f} MiB", flush=True)
    operator.stop()
    events.put(None)
    reader.join(10)


def machines_by_group(size: int) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for machine in plan_homelab(NAMESPACE, group_count(size), size).machines:
        members.setdefault(machine.group, []).append(machine.name)
    return members


def ssh_key() -> tuple[bytes, str]:
    """A private key for the SSH power-off Secret and a known_hosts line (never used: nothing is powered off)."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    algorithm, public_key = key.export_public_key().decode().split()[:2]
    return key.export_private_key(), f"{LOOPBACK} {algorithm} {public_key}"


def bench_size(size: int) -> None:
    groups = layout(group_count(size))
    members = machines_by_group(size)
    wake_machines = [machine for group in groups.wake_on_lan for machine in members[group]]
    redfish_machines = [machine for group in groups.redfish for machine in members[group]]
    print(f"\n== {size} machines in {group_count(size)} groups of up to {GROUP_SIZE}: {len(groups.jobs)} groups "
          f"powered by Jobs, {len(groups.wake_on_lan)} by Wake-on-LAN + SSH ({len(wake_machines)} machines), "
          f"{len(groups.redfish)} by Redfish ({len(redfish_machines)} machines, one BMC) ==", flush=True)
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    parent_end, child_end = context.Pipe()
    by_system: dict[str, str] = {}

    def redfish_request(kind: str, system: str, moment: float) -> None:
        if (machine := by_system.get(system)) is not None:
            events.put(("power" if kind == "RESET" else "read", machine, "redfish", moment))

    with tempfile.TemporaryDirectory(prefix="bench-reaction-") as directory, WakeOnLanListener(LOOPBACK) as listener:
        bmc = TimestampingRedfish(Path(directory) / "redfish", len(redfish_machines), BMC_USER, BMC_PASSWORD,
                                  redfish_request)
        by_system.update(zip(bmc.system_ids, redfish_machines, strict=True))
        with bmc:
            native = native_seed(groups, wake_machines, redfish_machines, listener, bmc)
            for machine in wake_machines:
                listener.add(simulated_mac(NAMESPACE, machine), packet_arrival(events, machine))
            fake = context.Process(target=serve_fake_api, args=(size, directory, events, child_end, native),
                                   daemon=True)
            fake.start()
            try:
                kubeconfig, url = parent_end.recv()
                for target, arguments in ((first_run, (kubeconfig, size, events)),
                                          (measured_run, (kubeconfig, url, size, events))):
                    run = context.Process(target=target, args=arguments)
                    run.start()
                    run.join()
                    if run.exitcode != 0:
                        raise RuntimeError(f"{target.__name__} failed with exit status {run.exitcode}")
            finally:
                parent_end.send("stop")
                fake.join(30)


def packet_arrival(events: Any, machine: str) -> Any:
    """What the UDP listener calls when `machine`'s magic packet arrives: report the moment."""

    def arrived() -> None:
        events.put(("power", machine, "wakeOnLan", time.monotonic()))

    return arrived


def native_seed(groups: Layout, wake_machines: list[str], redfish_machines: list[str], listener: WakeOnLanListener,
                bmc: TimestampingRedfish) -> NativeSeed:
    """spec.power of every native machine, pointed at the loopback receivers, and the Secrets they name."""
    assert bmc.certificate is not None
    private_key, known_hosts = ssh_key()
    powers: dict[str, dict[str, Any]] = {}
    for machine in wake_machines:
        powers[machine] = {
            "wakeOnLan": {"macAddress": simulated_mac(NAMESPACE, machine), "broadcastAddress": LOOPBACK,
                          "port": listener.port},
            "ssh": {"host": LOOPBACK, "user": "power", "privateKey": {"name": SSH_SECRET, "key": "key"},
                    "knownHosts": known_hosts},
        }
    for system_id, machine in zip(bmc.system_ids, redfish_machines, strict=True):
        powers[machine] = {
            "redfish": {"endpoint": bmc.endpoint, "systemId": system_id, "credentials": {"name": BMC_SECRET},
                        "caBundle": {"secretKeyRef": {"name": BMC_CA_SECRET, "key": "ca.crt"}}},
        }
    secrets = [
        secret(BMC_SECRET, {"username": BMC_USER.encode(), "password": BMC_PASSWORD.encode()}),
        secret(BMC_CA_SECRET, {"ca.crt": bmc.certificate.pem}),
        secret(SSH_SECRET, {"key": private_key}),
    ]
    return NativeSeed(groups.wake_on_lan + groups.redfish, powers, secrets)


def main() -> None:
    parser = argparse.ArgumentParser(description="reaction times of the whole operator against the fake API")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000], help="machine counts (default both)")
    arguments = parser.parse_args()
    print(f"python {sys.version.split()[0]}; the operator runs in a fresh process per measurement", flush=True)
    for size in arguments.sizes:
        bench_size(size)


if __name__ == "__main__":
    main()
