"""Benchmark of the operator's reaction times against a fake API over HTTP; prints figures, asserts nothing.

For 1000 and 5000 machines (groups of 50), the whole operator (`homelab_autoscaler.operator.Operator`: watches,
watcher, Supervisor, node and group actors, writer, gRPC gateway) runs in this process against our fake API server
in a child process, so the RSS printed is the operator's own (plus this script's gRPC client). It prints:

- cold start: from `Operator.start()` to gRPC health SERVING (list everything over HTTP, derive every machine,
  ready to serve). Measured on a restart, as after a crash or a leadership change: a first operator run writes
  every machine's status, stops, and a second one is timed (a first start ever also writes 1 status per machine;
  its time to drain those writes is printed too);
- IncreaseSize → startup Job POST: from just before the gRPC call to the moment the fake API receives the POST
  of the Job (its `on_request` hook timestamps it); sequential calls, one machine each, groups in turn (the
  seeded groups without a concurrent-boot limit);
- IncreaseSize answered: the same calls' gRPC round trip, what CA waits for (the group answers once the machine's
  Job is created and its StartingUp status is stored);
- Node Ready → Node resource status Ready: from just before this script POSTs the machine's Ready core Node (it
  plays the kubelet) to the moment the fake API receives the status PATCH that records Ready;
- RSS (VmRSS) after the cold start and at the end.

Timestamps of both processes are `time.monotonic()`, which on Linux is one system-wide clock. The budgets
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
import json
import logging
import multiprocessing
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubernetes import client as kube_client

from bench.figures import percentile, rss_mib
from homelab_autoscaler.operator import Operator
from homelab_autoscaler.settings import Settings
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from schemas import GROUP_VERSION
from schemas import labels as label_names

NAMESPACE = "homelab"
GROUP_SIZE = 50
SAMPLES = 200
WAIT_SECONDS = 30.0
QUIET_SECONDS = 2.0
"""The first run's status writes count as drained after this long without one."""


# --- the child process: the fake API server -------------------------------------------------------------------


def serve_fake_api(size: int, directory: str, events: Any, commands: Any) -> None:
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
        seed_homelab(fake, NAMESPACE, groups=size // GROUP_SIZE, machines=size)
        fake.store.create("v1", "namespaces", {"metadata": {"name": "homelab-autoscaler"}})
        kubeconfig = Path(directory) / "kubeconfig"
        fake.write_kubeconfig(kubeconfig)
        fake.on_request.append(hook)
        commands.send((str(kubeconfig), fake.url))
        commands.recv()  # until the parent says stop


# --- the parent: the operator and the measurements ------------------------------------------------------------


@dataclass
class Arrivals:
    """What the fake API received, consumed from the child's queue on a thread of its own."""

    events: Any
    jobs: list[tuple[str, str, float]] = field(default_factory=list)
    statuses: list[tuple[str, str, float]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def run(self) -> None:
        while (item := self.events.get()) is not None:
            kind, machine, detail, moment = item
            with self.changed:
                (self.jobs if kind == "job" else self.statuses).append((machine, detail, moment))
                self.changed.notify_all()

    def wait(self, predicate: Any, timeout: float = WAIT_SECONDS) -> Any:
        with self.changed:
            found = self.changed.wait_for(predicate, timeout)
        if not found:
            raise TimeoutError("the expected request did not reach the fake API in time")
        return found






def start_operator(kubeconfig: str) -> tuple[Operator, float]:
    settings = Settings.from_flags(
        kubeconfig=Path(kubeconfig),
        watch_namespace=NAMESPACE,
        grpc_address="127.0.0.1:0",
        metrics_address="127.0.0.1:0",
        webhook_address="",
    )
    operator = Operator(settings)
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


def measure_increase(stub: Any, arrivals: Arrivals, groups: list[str]) -> tuple[list[float], list[float], list[str]]:
    """(IncreaseSize → Job POST, IncreaseSize answered, machines started), one sequential call per sample."""
    to_post: list[float] = []
    answered: list[float] = []
    machines: list[str] = []
    for index in range(SAMPLES):
        group = groups[index % len(groups)]
        with arrivals.changed:
            seen = len(arrivals.jobs)
        asked = time.monotonic()
        stub.NodeGroupIncreaseSize(externalgrpc.NodeGroupIncreaseSizeRequest(id=f"{NAMESPACE}/{group}", delta=1))
        answered.append(time.monotonic() - asked)
        arrivals.wait(lambda seen=seen: len(arrivals.jobs) > seen)
        machine, _group, posted = arrivals.jobs[seen]
        to_post.append(posted - asked)
        machines.append(machine)
    return to_post, answered, machines


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


def measure_ready(url: str, arrivals: Arrivals, machines: list[str]) -> list[float]:
    configuration = kube_client.Configuration()
    configuration.host = url
    latencies: list[float] = []
    with kube_client.ApiClient(configuration) as api_client:
        for machine in machines:
            registered = time.monotonic()
            api_client.call_api(*api_client.param_serialize(
                method="POST", resource_path="/api/v1/nodes", body=ready_node(machine),
                header_params={"Content-Type": "application/json", "Accept": "application/json"},
            )).read()
            arrivals.wait(lambda machine=machine, registered=registered: any(
                name == machine and state == "Ready" and moment >= registered
                for name, state, moment in arrivals.statuses
            ))
            recorded = next(moment for name, state, moment in arrivals.statuses
                            if name == machine and state == "Ready" and moment >= registered)
            latencies.append(recorded - registered)
    return latencies


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
    with grpc.insecure_channel(f"127.0.0.1:{operator.grpc_port}") as channel:
        stub = externalgrpc_grpc.CloudProviderStub(channel)
        # Odd groups: the seeded even ones allow only 2 concurrent boots, which would queue the rest.
        groups = [f"group-{number}" for number in range(1, size // GROUP_SIZE + 1, 2)]
        increase, answered, machines = measure_increase(stub, arrivals, groups)
    print(f"IncreaseSize -> startup Job POST ({len(increase)} calls): p50 {percentile(increase, 0.5) * 1e3:.1f} ms"
          f"  p99 {percentile(increase, 0.99) * 1e3:.1f} ms  max {max(increase) * 1e3:.1f} ms (budget p99 50 ms)",
          flush=True)
    print(f"IncreaseSize answered (status stored): p50 {percentile(answered, 0.5) * 1e3:.1f} ms"
          f"  p99 {percentile(answered, 0.99) * 1e3:.1f} ms  max {max(answered) * 1e3:.1f} ms", flush=True)
    ready = measure_ready(url, arrivals, machines)
    print(f"Node Ready -> status Ready ({len(ready)} machines): p50 {percentile(ready, 0.5) * 1e3:.1f} ms"
          f"  p99 {percentile(ready, 0.99) * 1e3:.1f} ms  max {max(ready) * 1e3:.1f} ms", flush=True)
    print(f"RSS at the end: {rss_mib():.1f} MiB", flush=True)
    operator.stop()
    events.put(None)
    reader.join(10)


def bench_size(size: int) -> None:
    print(f"\n== {size} machines in {size // GROUP_SIZE} groups of {GROUP_SIZE} ==", flush=True)
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    parent_end, child_end = context.Pipe()
    with tempfile.TemporaryDirectory(prefix="bench-reaction-") as directory:
        fake = context.Process(target=serve_fake_api, args=(size, directory, events, child_end), daemon=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description="reaction times of the whole operator against the fake API")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000], help="machine counts (default both)")
    arguments = parser.parse_args()
    print(f"python {sys.version.split()[0]}; the operator runs in a fresh process per measurement", flush=True)
    for size in arguments.sizes:
        bench_size(size)


if __name__ == "__main__":
    main()
