"""Benchmark of the actor runtime with many small node-like actors; prints figures, asserts nothing.

For 1000 and 5000 actors (each a ShellActor holding a dict of state, answering a query with a reply):
actor creation time, RSS (VmRSS from /proc/self/status), ask throughput and p50/p99 latency from 1 and from 8
threads through `ActorRuntime.ask`, one-way events per second through `ActorRuntime.tell` (timed until a final
ask behind them is answered, so every event was processed), and idle CPU of the pump. The budget
(docs/architecture/overview.md, "Performance budget") is 5000 node actors within 150 MiB RSS. The whole run is
bounded to well under a minute.

The second section does the same with the REAL operator actors (Supervisor, GroupActors, NodeActors with their
state machines) and the recording `FakeEffectPort` of the actor tests: time for the Supervisor to derive and create
every machine from one `InventoryListed` (the cold-start path), RSS, IncreaseSize / DeleteNodes ask latency from 8
threads (each thread scales its own group up by one and back down, so machines stay available), and one-way
observation events per second (Kubernetes Node observations routed by the Supervisor to each NodeActor's `step`).

Run from the repository root: `.venv/bin/python -m bench.actors` (or `.venv/bin/python bench/actors.py`);
`--real-only` skips the first section.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as a file, this folder would come first on sys.path and this very module would shadow the `actors`
    # package it measures.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import statistics
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from actors import wiring
from actors.base import ShellActor
from actors.messages import (
    DeleteNodes,
    IncreaseSize,
    InventoryListed,
    KubeNodeObserved,
    MutationReply,
    NodeIdentity,
    Ping,
    Pong,
)
from actors.read_model import ReadModel
from actors.runtime import ActorRuntime
from actors.supervisor_actor import start_supervisor
from bench.figures import percentile, rss_mib
from schemas import labels
from schemas.common import Metadata
from schemas.group import Group, GroupSpec
from schemas.node import JobTemplate, Node, NodeSnapshot, NodeSpec, Pricing
from tests.support.actor_fakes import FakeEffectPort  # the actor tests' recording port stands in for the writer

SIZES = (1000, 5000)
ASK_THREADS = 8
ASKS_PER_THREAD = 2500
SINGLE_THREAD_ASKS = 3000
EVENTS = 50_000
PHASE_TIME_LIMIT = 6.0  # seconds; a phase stops early rather than overrun the total budget
RESULT_WAIT = 30.0


@dataclass(frozen=True)
class Observe:
    """A watcher-style fact: one field of the node changed."""

    field: str
    value: int


@dataclass(frozen=True)
class Query:
    request_id: str
    field: str


@dataclass(frozen=True)
class Answer:
    request_id: str
    node: str
    value: int | None
    observations: int


@dataclass(frozen=True)
class Configure:
    name: str


class NodeLike(ShellActor):
    """Stands in for a NodeActor: a dict of state, updated by facts and read by queries."""

    actor_kind = "bench-node"

    def __init__(self) -> None:
        super().__init__()
        self.state: dict[str, Any] = {"phase": "Shutdown", "labels": {}, "attempt": 0}
        self.observations = 0

    def receiveMsg_Configure(self, message: Configure, sender: Any) -> None:
        self.actor_name = message.name
        self.state["name"] = message.name

    def receiveMsg_Observe(self, message: Observe, sender: Any) -> None:
        self.state[message.field] = message.value
        self.observations += 1

    def receiveMsg_Query(self, message: Query, sender: Any) -> None:
        self.send(sender, Answer(message.request_id, self.state["name"], self.state.get(message.field),
                                 self.observations))






def run_asks(runtime: ActorRuntime, nodes: list[Any], threads: int, asks_per_thread: int) -> dict[str, float]:
    latencies: list[list[float]] = [[] for _ in range(threads)]
    wrong = [0] * threads
    start_together = threading.Barrier(threads + 1)

    def caller(index: int) -> None:
        start_together.wait()
        give_up_at = time.perf_counter() + PHASE_TIME_LIMIT
        for ask_index in range(asks_per_thread):
            node_index = (index * 7919 + ask_index * 104_729) % len(nodes)
            request_id = f"t{index}-{ask_index}"
            started = time.perf_counter()
            answer = runtime.ask(nodes[node_index], Query(request_id, "probe"), 5.0, Answer).result(RESULT_WAIT)
            latencies[index].append(time.perf_counter() - started)
            if answer.request_id != request_id or answer.node != f"node-{node_index}":
                wrong[index] += 1
            if started > give_up_at:
                break

    workers = [threading.Thread(target=caller, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    start_together.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    merged = [sample for per_thread in latencies for sample in per_thread]
    return {
        "asks": len(merged),
        "per_second": len(merged) / elapsed,
        "p50_ms": percentile(merged, 0.50) * 1000,
        "p99_ms": percentile(merged, 0.99) * 1000,
        "mean_ms": statistics.fmean(merged) * 1000,
        "wrong": sum(wrong),
    }


def run_tells(runtime: ActorRuntime, nodes: list[Any]) -> dict[str, float]:
    started = time.perf_counter()
    for event in range(EVENTS):
        runtime.tell(nodes[event % len(nodes)], Observe("probe", event))
    submitted = time.perf_counter()
    # The queue is FIFO and delivery synchronous: once this answer is back, every event was processed.
    last = len(nodes) - 1
    answer = runtime.ask(nodes[last], Query("after-events", "probe"), 30.0, Answer).result(RESULT_WAIT)
    finished = time.perf_counter()
    return {
        "events": EVENTS,
        "per_second": EVENTS / (finished - started),
        "submit_per_second": EVENTS / (submitted - started),
        "last_value_ok": float(answer.value == max(e for e in range(EVENTS) if e % len(nodes) == last)),
    }


def idle_cpu_percent(seconds: float = 1.0) -> float:
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    return 100 * (time.process_time() - cpu_before) / (time.perf_counter() - wall_before)


def bench_size(size: int) -> None:
    rss_before = rss_mib()
    runtime = ActorRuntime(name=f"bench-{size}")
    runtime.start()
    try:
        started = time.perf_counter()
        futures = [runtime.create_actor(NodeLike) for _ in range(size)]
        nodes = [future.result(RESULT_WAIT) for future in futures]
        for index, node in enumerate(nodes):
            runtime.tell(node, Configure(f"node-{index}"))
        runtime.ask(nodes[-1], Query("configured", "phase"), 30.0, Answer).result(RESULT_WAIT)
        created = time.perf_counter() - started
        rss_after_create = rss_mib()

        single = run_asks(runtime, nodes, 1, SINGLE_THREAD_ASKS)
        parallel = run_asks(runtime, nodes, ASK_THREADS, ASKS_PER_THREAD)
        events = run_tells(runtime, nodes)
        idle = idle_cpu_percent()
        rss_end = rss_mib()
    finally:
        runtime.stop(timeout=30.0)

    print(f"--- {size} node-like actors")
    print(f"create + configure: {created * 1000:8.1f} ms ({created / size * 1e6:.1f} us per actor)")
    print(f"RSS: {rss_before:.1f} MiB before, {rss_after_create:.1f} MiB after creating "
          f"(+{rss_after_create - rss_before:.1f}), {rss_end:.1f} MiB at the end  [budget 150 MiB at 5000]")
    print(f"asks, 1 thread : {single['per_second']:8.0f}/s  p50 {single['p50_ms']:.3f} ms  "
          f"p99 {single['p99_ms']:.3f} ms  ({single['asks']:.0f} asks, {single['wrong']:.0f} wrong replies)")
    print(f"asks, {ASK_THREADS} threads: {parallel['per_second']:8.0f}/s  p50 {parallel['p50_ms']:.3f} ms  "
          f"p99 {parallel['p99_ms']:.3f} ms  ({parallel['asks']:.0f} asks, {parallel['wrong']:.0f} wrong replies)")
    print(f"tells (1 thread): {events['per_second']:8.0f} events/s processed "
          f"(submitted at {events['submit_per_second']:.0f}/s; last value correct: "
          f"{bool(events['last_value_ok'])})")
    print(f"idle CPU with {size} actors and a 50 ms tick: {idle:.2f} %")


# --- the real actors ------------------------------------------------------------------------------------------

REAL_MUTATIONS_PER_THREAD = 300
REAL_EVENTS = 20_000
MACHINES_PER_GROUP = 100  # homelab groups are small; a mutation costs O(group size)


def _real_inventory(size: int) -> tuple[tuple[Group, ...], tuple[Node, ...]]:
    group_count = max(ASK_THREADS, size // MACHINES_PER_GROUP)
    template = JobTemplate(image="busybox:1.36")
    groups = tuple(
        Group(metadata=Metadata(name=f"group-{index}", namespace="bench"), spec=GroupSpec(max_size=size))
        for index in range(group_count)
    )
    machines = tuple(
        Node(
            metadata=Metadata(
                name=f"machine-{index:05d}", namespace="bench",
                labels={labels.GROUP_LABEL: f"group-{index % group_count}"},
            ),
            spec=NodeSpec(
                priority=index % 3, pricing=Pricing(hourly_price=f"0.{index % 90 + 10}", power_watts=60 + index % 40),
                startup_job=template, shutdown_job=template,
            ),
        )
        for index in range(size)
    )
    return groups, machines


def _real_mutations(runtime: ActorRuntime, supervisor: Any, read_model: ReadModel, groups: int) -> dict[str, Any]:
    increase_latencies: list[list[float]] = [[] for _ in range(ASK_THREADS)]
    delete_latencies: list[list[float]] = [[] for _ in range(ASK_THREADS)]
    refused = [0] * ASK_THREADS
    start_together = threading.Barrier(ASK_THREADS + 1)

    def gateway(index: int) -> None:
        group = f"bench/group-{index % groups}"
        start_together.wait()
        give_up_at = time.perf_counter() + PHASE_TIME_LIMIT
        for _ in range(REAL_MUTATIONS_PER_THREAD):
            started = time.perf_counter()
            reply = runtime.ask(supervisor, IncreaseSize(runtime.new_request_id(), group, 1), 5.0,
                                MutationReply).result(RESULT_WAIT)
            increase_latencies[index].append(time.perf_counter() - started)
            snapshot = read_model.group(group)
            booting = [m for m in snapshot.machines if m.instance is not None] if snapshot else []
            if reply.error is not None or not booting:
                refused[index] += 1
                continue
            stand_ins = tuple(NodeIdentity(m.provider_id, m.provider_id) for m in booting)
            started = time.perf_counter()
            reply = runtime.ask(supervisor, DeleteNodes(runtime.new_request_id(), group, stand_ins), 5.0,
                                MutationReply).result(RESULT_WAIT)
            delete_latencies[index].append(time.perf_counter() - started)
            refused[index] += reply.error is not None
            if started > give_up_at:
                break

    workers = [threading.Thread(target=gateway, args=(index,)) for index in range(ASK_THREADS)]
    for worker in workers:
        worker.start()
    start_together.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    increases = [sample for per_thread in increase_latencies for sample in per_thread]
    deletes = [sample for per_thread in delete_latencies for sample in per_thread]
    return {
        "per_second": (len(increases) + len(deletes)) / elapsed,
        "increase": (len(increases), percentile(increases, 0.5) * 1000, percentile(increases, 0.99) * 1000),
        "delete": (len(deletes), percentile(deletes, 0.5) * 1000, percentile(deletes, 0.99) * 1000),
        "refused": sum(refused),
    }


def _real_observations(runtime: ActorRuntime, supervisor: Any, machines: tuple[Node, ...]) -> float:
    # Alternating labels make every observation news to its machine (heartbeats would be filtered out).
    snapshots = [NodeSnapshot(labels={"bench": str(flip)}) for flip in range(2)]
    started = time.perf_counter()
    for event in range(REAL_EVENTS):
        machine = machines[event % len(machines)].metadata.name
        runtime.tell(supervisor, KubeNodeObserved(machine, False, "", snapshots[(event // len(machines)) % 2]))
    runtime.ask(supervisor, Ping(runtime.new_request_id()), 60.0, Pong).result(RESULT_WAIT)
    return REAL_EVENTS / (time.perf_counter() - started)


def bench_real_actors(size: int) -> None:
    groups, machines = _real_inventory(size)
    rss_before = rss_mib()
    runtime = ActorRuntime(name=f"bench-real-{size}")
    runtime.start()
    port = FakeEffectPort()
    port.runtime = runtime  # it tells the groups at once that each status is stored
    read_model = ReadModel()
    key = wiring.register(wiring.Wiring(read_model, port, lambda: datetime.now(UTC), runtime.ticker))
    try:
        supervisor = start_supervisor(runtime, key, timeout=RESULT_WAIT)
        started = time.perf_counter()
        runtime.tell(supervisor, InventoryListed(groups, machines, (), ()))
        pong = runtime.ask(supervisor, Ping(runtime.new_request_id()), 120.0, Pong).result(120.0)
        derived = time.perf_counter() - started
        listed = sum(len(group.machines) for group in read_model.groups())
        rss_after_create = rss_mib()
        mutations = _real_mutations(runtime, supervisor, read_model, len(groups))
        events_per_second = _real_observations(runtime, supervisor, machines)
        idle = idle_cpu_percent()
        rss_end = rss_mib()
    finally:
        runtime.stop(timeout=60.0)
        wiring.unregister(key)

    print(f"--- {size} machines in {len(groups)} groups: real Supervisor, GroupActors, NodeActors, fake effect port")
    print(f"InventoryListed -> every machine derived, created and published: {derived * 1000:8.1f} ms "
          f"({derived / size * 1e6:.0f} us per machine; {pong.machines} node actors, {listed} machines listed)")
    print(f"RSS: {rss_before:.1f} MiB before, {rss_after_create:.1f} MiB after creating "
          f"(+{rss_after_create - rss_before:.1f}), {rss_end:.1f} MiB at the end  [budget 150 MiB at 5000]")
    count, p50, p99 = mutations["increase"]
    print(f"IncreaseSize(1), {ASK_THREADS} threads: p50 {p50:.3f} ms  p99 {p99:.3f} ms  ({count} asks)")
    count, p50, p99 = mutations["delete"]
    print(f"DeleteNodes,     {ASK_THREADS} threads: p50 {p50:.3f} ms  p99 {p99:.3f} ms  ({count} asks; "
          f"{mutations['per_second']:.0f} mutations/s overall, {mutations['refused']} refused)")
    print(f"observations (1 thread, routed to NodeActors): {events_per_second:8.0f} events/s")
    print(f"idle CPU with {size} machines and a 50 ms tick: {idle:.2f} %")


def main() -> None:
    total_started = time.perf_counter()
    print(f"python {sys.version.split()[0]}, baseline RSS {rss_mib():.1f} MiB")
    if "--real-only" not in sys.argv[1:]:
        for size in SIZES:
            bench_size(size)
    for size in SIZES:
        bench_real_actors(size)
    print(f"total bench time {time.perf_counter() - total_started:.1f} s")


if __name__ == "__main__":
    main()
