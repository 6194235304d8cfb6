"""Every Prometheus metric the operator exports, declared in one place.

One module owns the names so that the exported surface is reviewable at a glance, stays consistently named
(prefix `homelab_autoscaler_`, base units such as seconds, counters declared without `_total` because
prometheus_client appends it) and so that no two modules register the same name twice.

The metrics live in a module-level `REGISTRY` rather than prometheus_client's global default registry: tests
and benchmarks may run several actor runtimes in one process, and a private registry keeps them from colliding
with anything else a library registers globally. The metrics HTTP endpoint serves `render()`.

Cardinality: at 5000 machines every per-node label multiplies series by 5000, and each series costs the operator
memory as well as Prometheus. Counters labelled per actor and the per-node state gauge are affordable (the state
gauge keeps one series per node: its current state, not a zero for every other state); histograms are not (each
one is ~20 series), so handler latency is labelled by actor kind only. Series of a node or group that goes away are
removed with `forget_node` / `forget_group` so that stale machines do not linger in dashboards.

Memory: prometheus_client keeps one child object per series (a lock, a value object, the label tuple: about a
kilobyte each). For the two metrics with a series per actor or per machine that is megabytes at 5000 machines,
so those two (`actor_messages_handled`, `node_state`) are `TableCounter` / `NodeStateGauge` below: custom
collectors whose series are plain numbers and strings in one dict, turned into metric families at scrape time,
with exposition byte for byte that of a plain labelled Counter / Gauge. Like the energy collector, they use only
prometheus_client's public collector API, so a new prometheus_client release cannot change them underneath.

prometheus_client metric objects are thread-safe; the small bookkeeping in the helpers below is guarded by a
lock because the pump thread and adapter threads may both call them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from actors.fsm import energy
from schemas.node import ExerciseOutcome, NodeStatus

PREFIX = "homelab_autoscaler_"
CONTENT_TYPE = CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

LABEL_NAMES: Final[dict[str, tuple[str, ...]]] = {}
"""Family name -> label names of every metric below, in declaration order, for the docs generator: prometheus_client
keeps a metric's label names to itself, and a family without series shows none."""

_Metric = TypeVar("_Metric", Counter, Gauge, Histogram)


def _declare(kind: type[_Metric], name: str, documentation: str, labels: Sequence[str] = (), **options: Any) -> _Metric:
    """A prometheus_client metric named PREFIX + `name` in `REGISTRY`, its label names noted in `LABEL_NAMES`."""
    LABEL_NAMES[PREFIX + name] = tuple(labels)
    return kind(PREFIX + name, documentation, labels, registry=REGISTRY, **options)

# Actor message handling is normally tens of microseconds; the upper buckets catch a handler that blocks.
_HANDLER_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
)
# gRPC calls from the Cluster Autoscaler: sub-millisecond for snapshot reads, up to seconds for writes.
_GRPC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
# Power operations of real machines: a smart plug and an SSD boot in tens of seconds, a server's firmware in
# minutes; the top buckets straddle CA's 15-minute max-node-provision-time.
_POWER_BUCKETS = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 450.0, 600.0, 900.0, 1800.0, 3600.0)

# --- metrics whose series are kept as plain data -----------------------------------------------------------


def created_series_enabled() -> bool:
    """Whether counters expose `_created` samples, as prometheus_client's own counters decide right now.

    prometheus_client reads PROMETHEUS_DISABLE_CREATED_SERIES at import and lets `disable_created_metrics()` /
    `enable_created_metrics()` change it later, but offers no way to read the switch; a throwaway unregistered
    Counter shows it through its public `collect()`.
    """
    (family,) = Counter("created_series_probe", "Probe.", registry=None).collect()
    return any(sample.name.endswith("_created") for sample in family.samples)


class TableCounter:
    """A labelled counter whose series live in one dict (label values -> [count, created]): a custom collector.

    About 150 bytes per series instead of the kilobyte of a prometheus_client child. Exposition is what a plain
    labelled `Counter` prints: the `_total` sample and, unless `_created` series are disabled, the `_created` one,
    in first-seen order.

    Thread safety: the pump thread increments, the metrics HTTP thread collects; both hold `_table_lock`, and
    `collect` copies the rows under it, so a scrape never sees a half-made series nor holds the lock while
    formatting.
    """

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        # Set up before registering: the registry may collect as soon as the collector is registered.
        self._table_lock = threading.Lock()
        self._table: dict[tuple[str, ...], list[float]] = {}
        registry.register(self)

    def increment(self, label_values: tuple[str, ...], amount: float = 1.0) -> None:
        """Add `amount` to the series of `label_values` (one value per label name, in order), creating it at 0."""
        with self._table_lock:
            row = self._table.get(label_values)
            if row is None:
                self._table[label_values] = [amount, time.time()]
            else:
                row[0] += amount

    def remove(self, *labelvalues: object) -> None:
        with self._table_lock:
            self._table.pop(tuple(str(value) for value in labelvalues), None)

    def clear(self) -> None:
        with self._table_lock:
            self._table.clear()

    def describe(self) -> Iterable[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        with self._table_lock:
            rows = [(label_values, row[0], row[1]) for label_values, row in self._table.items()]
        with_created = created_series_enabled()
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for label_values, count, created in rows:
            family.add_metric(label_values, count, created=created if with_created else None)
        return [family]


class NodeStateGauge:
    """`node_state`: one series per machine, labelled with its current state, value 1; a custom collector.

    The table maps (group, node) to the state string, which is all the series holds. Exposition order is that of a
    plain `Gauge` whose previous-state series is removed on every change: a machine whose state changed moves to
    the end. Thread safety as in `TableCounter`: writes and the copy in `collect` hold `_table_lock`.
    """

    labelnames = ("group", "node", "state")

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self._table_lock = threading.Lock()
        self._table: dict[tuple[str, str], str] = {}
        registry.register(self)

    def set_state(self, group: str, node: str, state: str) -> None:
        key = (group, node)
        with self._table_lock:
            if self._table.get(key) != state:
                self._table.pop(key, None)
                self._table[key] = state

    def forget(self, group: str, node: str) -> None:
        with self._table_lock:
            self._table.pop((group, node), None)

    def clear(self) -> None:
        with self._table_lock:
            self._table.clear()

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        with self._table_lock:
            rows = list(self._table.items())
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for (group, node), state in rows:
            family.add_metric((group, node, state), 1.0)
        return [family]


@dataclass(frozen=True)
class EnergyBasis:
    """What one machine's energy counters are computed from at scrape time: its durable status and declared draw.

    Reduced from the status once per change of status (`of`), so that a scrape does a few float operations per
    machine rather than re-reading statuses (bench/energy.py has the figures).
    """

    power_watts: int | None
    """The known draw when on; None when unknown."""
    standby_watts: int
    price_per_kwh: Decimal | None
    clock: Callable[[], datetime]
    """The operator's clock (tests and the demo pass their own), read once per scrape."""
    on_seconds: float = 0.0
    """Powered-on seconds up to the status's last change of state."""
    drawing_since: datetime | None = None
    """Start of the current powered-on stretch; None while the machine counts as off."""
    accounting_start: datetime | None = None

    @classmethod
    def of(
        cls,
        status: NodeStatus,
        power_watts: int | None,
        standby_watts: int | None,
        price_per_kwh: Decimal | None,
        clock: Callable[[], datetime],
    ) -> EnergyBasis:
        watts = energy.known_watts(power_watts)
        return cls(
            power_watts=watts,
            standby_watts=min(standby_watts or 0, watts or 0),
            price_per_kwh=price_per_kwh,
            clock=clock,
            on_seconds=status.powered_on_seconds,
            drawing_since=energy.drawing_since(status),
            accounting_start=status.accounting_since or status.since,
        )


class EnergyCollector:
    """Energy counters and draw gauges per machine and per group, computed at scrape time from `EnergyBasis` rows.

    Counters that are functions of the durable status (`actors.fsm.energy`), not sums kept in memory: after an
    operator restart they resume from where they stood, and their rate follows the machine's state (its power
    draw while powered on, its standby draw while off). A machine whose draw is unknown has no series; its
    group counts it in `group_energy_unknown_machines`. Thread safety as in `TableCounter`.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._table_lock = threading.Lock()
        self._table: dict[tuple[str, str], EnergyBasis] = {}
        self.labels_by_name: Mapping[str, tuple[str, ...]] = {
            PREFIX + "machine_energy_used_joules": ("group", "node"),
            PREFIX + "machine_energy_avoided_joules": ("group", "node"),
            PREFIX + "machine_power_draw_watts": ("group", "node"),
            PREFIX + "group_energy_used_joules": ("group",),
            PREFIX + "group_energy_avoided_joules": ("group",),
            PREFIX + "group_power_draw_watts": ("group",),
            PREFIX + "group_energy_cost": ("group",),
            PREFIX + "group_energy_unknown_machines": ("group",),
        }
        registry.register(self)

    def set_machine(self, group: str, node: str, basis: EnergyBasis) -> None:
        with self._table_lock:
            self._table[(group, node)] = basis

    def forget(self, group: str, node: str) -> None:
        with self._table_lock:
            self._table.pop((group, node), None)

    def clear(self) -> None:
        with self._table_lock:
            self._table.clear()

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        with self._table_lock:
            rows = list(self._table.items())
        families = self._families()
        used, avoided, draw, group_used, group_avoided, group_draw, cost, unknown = families
        groups: dict[str, list[float]] = {}
        prices: dict[str, Decimal | None] = {}
        clocks: dict[int, datetime] = {}  # one reading per clock per scrape: every row sees the same moment
        for (group, node), basis in rows:
            totals = groups.setdefault(group, [0.0, 0.0, 0.0, 0.0, 0.0])
            prices.setdefault(group, basis.price_per_kwh)
            watts = basis.power_watts
            if watts is None:
                totals[4] += 1
                continue
            now = clocks.get(id(basis.clock)) or clocks.setdefault(id(basis.clock), basis.clock())
            # The arithmetic of actors.fsm.energy (`powered_on_seconds`, `energy`, `draw_watts`), inlined on the
            # reduced basis: the energy tests pin the functions, the operator test pins this against them.
            since = basis.drawing_since
            on = basis.on_seconds + (max(0.0, (now - since).total_seconds()) if since is not None else 0.0)
            start = basis.accounting_start or now
            off = max(0.0, (now - start).total_seconds() - on)
            joules_used = (watts * on + basis.standby_watts * off)
            joules_avoided = (watts - basis.standby_watts) * off
            watts_now = watts if since is not None else basis.standby_watts
            used.add_metric((group, node), joules_used)
            avoided.add_metric((group, node), joules_avoided)
            draw.add_metric((group, node), watts_now)
            totals[0] += joules_used
            totals[1] += joules_avoided
            totals[2] += watts_now
            totals[3] += 1
        for group, (joules_used, joules_avoided, group_watts, known, missing) in groups.items():
            unknown.add_metric((group,), missing)
            if not known:
                continue  # no figure rather than a zero that would read as "nothing used, nothing saved"
            group_used.add_metric((group,), joules_used)
            group_avoided.add_metric((group,), joules_avoided)
            group_draw.add_metric((group,), group_watts)
            price = prices.get(group)
            if price is not None:
                cost.add_metric((group,), float(Decimal(repr(joules_used)) / Decimal(energy.JOULES_PER_KWH) * price))
        return list(families)

    def _families(
        self,
    ) -> tuple[
        CounterMetricFamily, CounterMetricFamily, GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily,
        GaugeMetricFamily, CounterMetricFamily, GaugeMetricFamily,
    ]:
        def counter(name: str, text: str) -> CounterMetricFamily:
            return CounterMetricFamily(PREFIX + name, text, labels=self.labels_by_name[PREFIX + name])

        def gauge(name: str, text: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(PREFIX + name, text, labels=self.labels_by_name[PREFIX + name])

        return (
            counter(
                "machine_energy_used_joules",
                "Energy a machine used since accounting began: its power draw while powered on (booting, Ready, "
                "shutting down), its standby draw while off. From the durable status, so restarts do not reset it.",
            ),
            counter(
                "machine_energy_avoided_joules",
                "Energy a machine did not use compared with always on: (power draw - standby draw) while off.",
            ),
            gauge("machine_power_draw_watts", "What a machine draws now by its state (declared watts)."),
            counter("group_energy_used_joules", "Energy used by a group's machines whose draw is known."),
            counter("group_energy_avoided_joules", "Energy a group's machines avoided compared with always on."),
            gauge("group_power_draw_watts", "What a group's machines whose draw is known draw now."),
            counter(
                "group_energy_cost",
                "What the energy a group used cost, in the currency of its spec.energyPrice (only when set).",
            ),
            gauge(
                "group_energy_unknown_machines",
                "Machines of a group that declare no powerWatts: their energy is unknown, not zero.",
            ),
        )


# --- actor runtime -----------------------------------------------------------------------------------------

ACTOR_MESSAGES_HANDLED = TableCounter(
    PREFIX + "actor_messages_handled",
    "Messages delivered to an actor handler (including deliveries whose handler raised).",
    ["actor_kind", "actor"],
    registry=REGISTRY,
)
LABEL_NAMES[ACTOR_MESSAGES_HANDLED.name] = ACTOR_MESSAGES_HANDLED.labelnames
ACTOR_HANDLER_SECONDS = _declare(
    Histogram,
    "actor_handler_seconds",
    "Time an actor handler took per message. Labelled by kind only: a per-actor histogram would be "
    "about twenty series per node.",
    ["actor_kind"],
    buckets=_HANDLER_BUCKETS,
)
PUMP_QUEUE_DEPTH = _declare(
    Gauge,
    "pump_queue_depth",
    "Work items waiting for the actor pump thread.",
)
PUMP_WAIT_SECONDS = _declare(
    Histogram,
    "pump_wait_seconds",
    "Time a work item (ask, tell, actor creation) waited in the pump queue before the pump took it.",
    buckets=_HANDLER_BUCKETS,
)
ASKS = _declare(
    Counter,
    "asks",
    "Asks made into the actor system from other threads, by outcome "
    "(ok, timeout, failed, stopped, cancelled, rejected).",
    ["outcome"],
)
PENDING_TIMERS = _declare(
    Gauge,
    "pending_timers",
    "Timers armed in the ticker and not yet fired or cancelled.",
)
LEADER = _declare(
    Gauge,
    "leader",
    "1 while this replica is the acting leader (it runs the actors and answers the Cluster Autoscaler), else 0.",
)

# --- machines and groups -----------------------------------------------------------------------------------

NODE_STATE = NodeStateGauge(
    PREFIX + "node_state",
    "Power state of each machine: one series per machine, labelled with its current state, value 1.",
    registry=REGISTRY,
)
LABEL_NAMES[NODE_STATE.name] = NODE_STATE.labelnames
NODE_TRANSITIONS = _declare(
    Counter,
    "node_transitions",
    "Power state transitions of machines.",
    ["group", "from_state", "to_state"],
)
GROUP_TARGET_SIZE = _declare(
    Gauge,
    "group_target_size",
    "Number of machines the group should have running, as last set by the Cluster Autoscaler.",
    ["group"],
)
GROUP_MACHINES = _declare(
    Gauge,
    "group_machines",
    "Machines of a group in each power state.",
    ["group", "state"],
)
BOOT_FAILURES = _declare(
    Counter,
    "boot_failures",
    "Boots that failed or timed out.",
    ["group"],
)
EXERCISES = _declare(
    Counter,
    "exercises",
    "Exercise boots that ended, by outcome: Succeeded, Failed (a failed boot is also in boot_failures_total), "
    "TakenOver (Cluster Autoscaler asked for the machine meanwhile) or Interrupted.",
    ["group", "outcome"],
)
BOOT_SECONDS = _declare(
    Histogram,
    "boot_seconds",
    "Boots that succeeded, from the startup Job's creation (the power command) to the Kubernetes Node Ready. "
    "Labelled by group only (a histogram per machine is about twenty series each).",
    ["group"],
    buckets=_POWER_BUCKETS,
)
SHUTDOWN_SECONDS = _declare(
    Histogram,
    "shutdown_seconds",
    "Power-offs confirmed, from the shutdown Job's creation (the power-off command) to the machine confirmed off.",
    ["group"],
    buckets=_POWER_BUCKETS,
)
ENERGY = EnergyCollector(REGISTRY)
LABEL_NAMES.update(ENERGY.labels_by_name)
LEARNED_PROVISION_SECONDS = _declare(
    Gauge,
    "group_learned_provision_seconds",
    "The provisioning time learned for a group, which maxNodeProvisionTime: auto tells Cluster Autoscaler: the p99 "
    "of its members' recorded boots times 1.5, between 2 and 60 minutes. Absent until 5 boots were recorded.",
    ["group"],
)
QUARANTINED_MACHINES = _declare(
    Gauge,
    "quarantined_machines",
    "Machines taken out of service after repeated failures, until a person resets them.",
    ["group"],
)
MUTATIONS_NOT_STORED = _declare(
    Counter,
    "mutations_not_stored",
    "Size changes whose machines' new statuses the API did not store in time (it was too slow or refused the "
    "writes): the Cluster Autoscaler got DEADLINE_EXCEEDED, the change is under way, and an operator restart "
    "before the writes land could forget it.",
    ["group"],
)

# --- edges: gRPC and Kubernetes ----------------------------------------------------------------------------

GRPC_REQUESTS = _declare(
    Counter,
    "grpc_requests",
    "gRPC calls served to the Cluster Autoscaler, by method and status code.",
    ["method", "code"],
)
GRPC_REQUEST_SECONDS = _declare(
    Histogram,
    "grpc_request_seconds",
    "Time to serve a gRPC call, by method.",
    ["method"],
    buckets=_GRPC_BUCKETS,
)
KUBE_WRITES = _declare(
    Counter,
    "kube_writes",
    "Writes to the Kubernetes API, by verb, resource and outcome.",
    ["verb", "resource", "outcome"],
)
WATCH_RESTARTS = _declare(
    Counter,
    "watch_restarts",
    "Kubernetes watch streams re-established, by resource.",
    ["resource"],
)
API_REACHABLE = _declare(
    Gauge,
    "api_reachable",
    "1 while the Kubernetes API server answers this replica's calls; 0 from the first call that found it missing "
    "(connection refused or reset, a timeout, or 503 while it starts) until the next call it answers.",
)
API_OUTAGES = _declare(
    Counter,
    "api_outages",
    "Times the Kubernetes API server stopped answering this replica (each outage once, however many calls failed).",
)
WATCH_OBJECTS_SKIPPED = _declare(
    Counter,
    "watch_objects_skipped",
    "Watched objects that could not be read (a malformed Group or Node resource, a power Job without its "
    "labels) and were skipped, by resource.",
    ["resource"],
)


def render() -> bytes:
    """The exposition text of every operator metric (serve it with `CONTENT_TYPE`)."""
    return generate_latest(REGISTRY)


# --- helpers for "one of N states" gauges ------------------------------------------------------------------

_bookkeeping_lock = threading.Lock()
_known_node_states: set[str] = set()
_states_by_group: dict[str, set[str]] = {}


def declare_node_states(states: Iterable[str]) -> None:
    """Make every listed state appear (as 0) in each group's `group_machines`, so queries can rely on those series."""
    with _bookkeeping_lock:
        _known_node_states.update(states)


def set_node_state(group: str, node: str, state: str) -> None:
    """Export `state` as the node's one `node_state` series (value 1), removing the series of its previous state.

    One series per machine rather than one per state: at 5000 machines the zeroed series of the other six states
    cost the operator tens of MiB and tell nothing that `sum by (state)` or `== 1` need.
    """
    with _bookkeeping_lock:
        _known_node_states.add(state)
    NODE_STATE.set_state(group, node, state)


def record_transition(group: str, node: str, from_state: str, to_state: str) -> None:
    """Count a transition and move the node's state gauge along with it."""
    NODE_TRANSITIONS.labels(group, from_state, to_state).inc()
    set_node_state(group, node, to_state)


def forget_node(group: str, node: str) -> None:
    """Drop every series of a node that no longer exists."""
    NODE_STATE.forget(group, node)
    ENERGY.forget(group, node)


def set_group_machines(group: str, counts: Mapping[str, int]) -> None:
    """Publish how many machines of a group are in each state; states missing from `counts` become 0."""
    with _bookkeeping_lock:
        exported = _states_by_group.setdefault(group, set())
        exported.update(counts)
        exported.update(_known_node_states)
        for state in exported:
            GROUP_MACHINES.labels(group, state).set(counts.get(state, 0))


def forget_learned_provision_time(group: str) -> None:
    """Drop a group's learned provisioning time (too few boots recorded now, e.g. after members left)."""
    _remove_quietly(LEARNED_PROVISION_SECONDS, group)


def forget_group(group: str) -> None:
    """Drop every per-group series of a group that no longer exists (its nodes are forgotten separately)."""
    with _bookkeeping_lock:
        for state in _states_by_group.pop(group, set()):
            _remove_quietly(GROUP_MACHINES, group, state)
    for metric in (
        GROUP_TARGET_SIZE, QUARANTINED_MACHINES, MUTATIONS_NOT_STORED, BOOT_SECONDS, SHUTDOWN_SECONDS,
        LEARNED_PROVISION_SECONDS,
    ):
        _remove_quietly(metric, group)
    for outcome in ExerciseOutcome:
        _remove_quietly(EXERCISES, group, outcome.value)


def _remove_quietly(metric: Gauge | Counter | Histogram, *label_values: str) -> None:
    # prometheus_client raises KeyError for a series that was never created; forgetting is idempotent.
    with contextlib.suppress(KeyError):
        metric.remove(*label_values)
