"""Benchmark of the actor runtime with many small node-like actors; prints figures, asserts nothing.

For 1000 and 5000 actors (each a ShellActor holding a dict of state, answering a query with a reply):
actor creation time, RSS (VmRSS from /proc/self/status), ask throughput and p50/p99 latency from 1 and from 8
threads through `ActorRuntime.ask`, one-way events per second through `ActorRuntime.tell` (timed until a final
ask behind them is answered, so every event was processed), and idle CPU of the pump. The budget in DESIGN.md
is 5000 node actors within 150 MiB RSS. The whole run is bounded to well under a minute.

Run from the repository root: `.venv/bin/python -m bench.actors` (or `.venv/bin/python bench/actors.py`).
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
from typing import Any

from actors.base import ShellActor
from actors.runtime import ActorRuntime

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


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


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


def main() -> None:
    total_started = time.perf_counter()
    print(f"python {sys.version.split()[0]}, baseline RSS {rss_mib():.1f} MiB")
    for size in SIZES:
        bench_size(size)
    print(f"total bench time {time.perf_counter() - total_started:.1f} s")


if __name__ == "__main__":
    main()
