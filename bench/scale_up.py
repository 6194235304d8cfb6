"""Benchmark of a scale-up with the real Cluster Autoscaler: where the time from pending pod to bound pod goes.

Everything but the machines is real: a control plane from `HOMELAB_K8S_BIN` (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler), the operator as the `homelab-autoscaler run` process, and
`cluster-autoscaler` (externalgrpc build). The machine simulator plays the machines (each boots for
`--boot-seconds`, 60 s by default: a small homelab box from power button to a Ready kubelet) and the always-on
machine whose kubelet runs the power Jobs' pods. `--pods` pending pods that only the Group's template fits start the
scale-up from zero, one machine each. It prints, for the last pod to be bound, the phases:

| phase | from → to | whose time |
|---|---|---|
| CA decides | first pod pending → CA calls `NodeGroupIncreaseSize` (its log) | CA (scan interval) |
| IncreaseSize → Job | that call → the startup Job seen in the API (a watch) | the operator |
| Job → machine on | the Job → the simulated machine powered on (the Job controller runs its pod) | Kubernetes |
| boot | powered on → its kubelet registers the Node | the machine |
| Node → usable | Node registered → Group labels and taints on it, providerID stamped (last) | the operator |
| CA sees it | usable → CA logs the scale-up finished (every instance registered) | CA |
| bound | usable → the pod bound to the Node | the scheduler |
| (status Ready after) | usable → the Node resource's status says `Ready` (not in the total) | the operator |

and the operator's share of the total (goal: under 1 %, see docs/operations/reliability.md). Clocks: CA's klog
lines carry microseconds of the same system clock the watches here read. It asserts nothing.

Run from the repository root: `HOMELAB_K8S_BIN=../shared/k8s/bin .venv/bin/python -m bench.scale_up`
(`--boot-seconds 5` for a quick look).
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
import re
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from actors.watch_port import Listed, WatchOutput
from kubeapi.kube_client import KubeApi, new_api_client
from kubeapi.watch import ResourceWatch, collection
from schemas import GROUP_VERSION
from schemas import labels as label_names
from sim.controlplane import ControlPlane, find_binaries, free_ports
from sim.controlplane.autoscaler import ClusterAutoscaler, OperatorProcess, klog_time
from sim.machines import MachineFailures, MachineSimulator, SimulatedMachine
from sim.seed import install_crds

NAMESPACE = "homelab"
GROUP = "workers"
POOL_LABEL = "homelab.example/pool"
ALWAYS_ON = "always-on"
TAINT = {"key": "homelab.example/simulated", "value": "true", "effect": "NoSchedule"}
CAPACITY = {"cpu": "4", "memory": "8Gi", "pods": "110"}
CA_INCREASE = re.compile(r"gRPC call NodeGroupIncreaseSize")
CA_FINISHED = re.compile(r"Scale up in group homelab/workers finished successfully")


class FirstSeen:
    """The first wall-clock moment each object of a collection met a condition, from a watch."""

    def __init__(self, rest: KubeApi, path: str, condition: Callable[[dict[str, Any]], bool]) -> None:
        self.moments: dict[str, datetime] = {}
        self._condition = condition
        self._lock = threading.Lock()
        self._watch = ResourceWatch(f"bench-{path.rsplit('/', 1)[-1]}", *collection(rest, path), self._sink)

    def start(self) -> None:
        self._watch.start()
        self._watch.wait_synced(30.0)

    def stop(self) -> None:
        self._watch.stop()

    def _sink(self, output: WatchOutput) -> None:
        now = datetime.now(UTC)
        objects = list(output.items) if isinstance(output, Listed) else [output.object]
        with self._lock:
            for obj in objects:
                name = str((obj.get("metadata") or {}).get("name"))
                if name not in self.moments and self._condition(obj):
                    self.moments[name] = now


class PowerLog(logging.Handler):
    """When each simulated machine powered on and registered its Node, from the simulator's own log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.powered_on: dict[str, datetime] = {}
        self.registered: dict[str, datetime] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        machine = message.removeprefix("machine ").split(":", 1)[0]
        moment = datetime.fromtimestamp(record.created, UTC)
        if ": powered on" in message:
            self.powered_on.setdefault(machine, moment)
        elif ": registered Node" in message:
            self.registered.setdefault(machine, moment)


def run(workload: int, boot_seconds: float, directory: Path) -> dict[str, float]:
    binaries = find_binaries()
    with ControlPlane(binaries, directory, controller_manager_args=ControlPlane.fast_node_lifecycle) as plane:
        api_client = new_api_client(plane.kubeconfig)
        rest = KubeApi(api_client)
        install_crds(api_client, timeout=60.0)
        rest.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        machines = [
            SimulatedMachine(name=ALWAYS_ON, namespace=NAMESPACE, boot_seconds=0.0, labels={"always-on": "true"},
                             capacity={"cpu": "8", "memory": "16Gi", "pods": "110"},
                             failures=MachineFailures(power_on_at=0.0)),
        ]
        _add_group(rest, workload)
        for number in range(1, workload + 1):
            name = f"m{number}"
            machines.append(SimulatedMachine(name=name, namespace=NAMESPACE, group=GROUP, boot_seconds=boot_seconds,
                                             capacity=CAPACITY, labels={TAINT["key"]: "true"}))
            _add_machine(rest, name)
        power_log = PowerLog()
        machine_logger = logging.getLogger("sim.machines.machine")
        machine_logger.addHandler(power_log)
        machine_logger.setLevel(logging.INFO)
        machine_logger.propagate = False  # read, not printed
        pods = f"/api/v1/namespaces/{NAMESPACE}/pods"
        pods_bound = FirstSeen(rest, pods, lambda pod: _workload(pod) and bool(pod["spec"].get("nodeName")))
        pods_seen = FirstSeen(rest, pods, _workload)
        jobs = FirstSeen(rest, f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", lambda job: True)
        stamped = FirstSeen(rest, "/api/v1/nodes", lambda node: bool(node["spec"].get("providerID")))
        ready = FirstSeen(rest, f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/nodes",
                          lambda machine: (machine.get("status") or {}).get("state") == "Ready")
        watches = (pods_bound, pods_seen, jobs, stamped, ready)
        grpc_port, metrics_port = free_ports(2)
        # CA must wait out a long boot rather than give up after the tests' 60 s.
        ca_args = ("--expander=least-waste", f"--max-node-provision-time={boot_seconds * 3 + 60:.0f}s")
        simulator = MachineSimulator(api_client, machines, namespaces=[NAMESPACE], run_pods=True,
                                     heartbeat_seconds=2.0, job_seconds=0.5)
        operator = OperatorProcess(plane.kubeconfig, directory, namespace=NAMESPACE, grpc_port=grpc_port,
                                   metrics_port=metrics_port)
        autoscaler = ClusterAutoscaler(binaries.require("cluster-autoscaler"), plane.kubeconfig, directory,
                                       grpc_port=grpc_port, args=ca_args)
        try:
            for watch in watches:
                watch.start()
            simulator.start(sync_timeout=30.0)
            operator.start()
            autoscaler.start()
            time.sleep(6.0)  # CA's first loops: it lists the group before there is anything to do
            _add_workload(rest, workload)
            deadline = time.monotonic() + boot_seconds * 3 + 120
            while len(pods_bound.moments) < workload or not autoscaler.lines(CA_FINISHED):
                if time.monotonic() > deadline:
                    raise SystemExit(f"scale-up not done: {len(pods_bound.moments)} of {workload} pods bound\n"
                                     f"{operator.process.tail()}\n{autoscaler.process.tail()}")
                time.sleep(0.2)
            return _phases(pods_seen, pods_bound, jobs, stamped, ready, power_log, autoscaler)
        finally:
            autoscaler.stop()
            operator.stop()
            simulator.stop()
            for watch in watches:
                watch.stop()
            machine_logger.removeHandler(power_log)
            machine_logger.propagate = True
            api_client.close()  # type: ignore[no-untyped-call]  # unannotated upstream


def _phases(
    pods_seen: FirstSeen, pods_bound: FirstSeen, jobs: FirstSeen, stamped: FirstSeen, ready: FirstSeen,
    power_log: PowerLog, autoscaler: ClusterAutoscaler,
) -> dict[str, float]:
    pending = min(pods_seen.moments.values())
    increase = min(_klog_moments(autoscaler, CA_INCREASE))
    ca_finished = min(_klog_moments(autoscaler, CA_FINISHED))
    last_bound = max(pods_bound.moments.values())
    # The machine that became usable last is the one the whole wait was for.
    booted = [name for name in power_log.registered if name != ALWAYS_ON]
    slowest = max(booted, key=lambda name: stamped.moments.get(name, pending))
    job = min(moment for name, moment in jobs.moments.items() if name.startswith(f"{slowest}-startup"))
    # The providerID is stamped last, once the Group's labels and taints are on the Node: from then on the
    # scheduler may bind the pod and CA counts the machine registered. The status write follows.
    usable = stamped.moments[slowest]
    phases = {
        "CA decides": (increase - pending),
        "IncreaseSize -> Job": (job - increase),
        "Job -> machine on": (power_log.powered_on[slowest] - job),
        "boot": (power_log.registered[slowest] - power_log.powered_on[slowest]),
        "Node -> usable": (usable - power_log.registered[slowest]),
        "CA sees it": (ca_finished - usable),
        "bound": (last_bound - usable),
        "(status Ready after)": (ready.moments[slowest] - usable),
    }
    seconds = {name: delta.total_seconds() for name, delta in phases.items()}
    seconds["total"] = (last_bound - pending).total_seconds()
    return seconds


def _workload(pod: dict[str, Any]) -> bool:
    """One of the pending pods the scale-up is for (not a power Job's pod)."""
    return bool(((pod.get("metadata") or {}).get("labels") or {}).get("app") == "build")


def _klog_moments(autoscaler: ClusterAutoscaler, pattern: re.Pattern[str]) -> list[datetime]:
    return [moment for line in autoscaler.lines(pattern) if (moment := klog_time(line)) is not None]


def _add_group(rest: KubeApi, pods: int) -> None:
    spec = {"maxSize": pods, "bootTimeout": "10m", "nodeLabels": {POOL_LABEL: GROUP}, "nodeTaints": [TAINT],
            "template": {"capacity": CAPACITY}}
    rest.post(f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/groups",
              {"apiVersion": GROUP_VERSION, "kind": "Group", "metadata": {"name": GROUP, "namespace": NAMESPACE},
               "spec": spec})


def _add_machine(rest: KubeApi, name: str) -> None:
    job = {"image": "busybox:1.36", "command": ["sh", "-c", "echo wake"], "backoffLimit": 0,
           "nodeSelector": {"always-on": "true"}}
    rest.post(f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/nodes",
              {"apiVersion": GROUP_VERSION, "kind": "Node",
               "metadata": {"name": name, "namespace": NAMESPACE, "labels": {label_names.GROUP_LABEL: GROUP}},
               "spec": {"startupJob": job, "shutdownJob": job}})


def _add_workload(rest: KubeApi, pods: int) -> None:
    pod_spec = {
        "nodeSelector": {POOL_LABEL: GROUP},
        "tolerations": [{"key": TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "infinity"],
                        "resources": {"requests": {"cpu": "3"}}}],
    }
    rest.post(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
              {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "build", "namespace": NAMESPACE},
               "spec": {"replicas": pods, "selector": {"matchLabels": {"app": "build"}},
                        "template": {"metadata": {"labels": {"app": "build"}}, "spec": pod_spec}}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pods", type=int, default=2, help="pending pods, one machine each (default 2)")
    parser.add_argument("--boot-seconds", type=float, default=60.0, help="how long a machine boots (default 60)")
    parser.add_argument("--runs", type=int, default=1, help="scale-ups from zero to measure (default 1)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON as well")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = []
    for number in range(options.runs):
        with tempfile.TemporaryDirectory(prefix="bench-scale-up-") as directory:
            results.append(run(options.pods, options.boot_seconds, Path(directory)))
        print(f"run {number + 1} of {options.runs} done", file=sys.stderr)
    print(f"scale-up from zero with the real Cluster Autoscaler: {options.pods} pods, "
          f"{options.boot_seconds:.0f} s boots, {options.runs} run(s); seconds, median over runs")
    print(f"{'phase':<22} {'seconds':>9} {'share':>8}")
    median = {name: sorted(result[name] for result in results)[len(results) // 2] for name in results[0]}
    for name, value in median.items():
        share = "" if name.startswith("(") else f"{value / median['total']:>8.2%}"
        print(f"{name:<22} {value:>9.3f} {share:>8}")
    ours = median["IncreaseSize -> Job"] + median["Node -> usable"]
    print(f"{'operator (ours)':<22} {ours:>9.3f} {ours / median['total']:>8.2%}   goal: under 1 %")
    if options.json:
        print(json.dumps({"runs": results, "median": median}, indent=2))


if __name__ == "__main__":
    main()
