"""The demo's homelab: which machines exist, how they behave, and every delay of the simulated world at a speed.

Pure data and pure functions, separate from the session that starts things and the scenario that drives them, so
the cast is decided in one place: the Group and Node resources written to the fake API and the simulated machines
that play them come from the same `DemoHomelab`, and the scenario reads its roles (which machine fails, which ones
CA's scale-up will choose) from it instead of repeating names.

Two groups, six machines: four small `minis` and two `gpu` boxes. Boot times are real boot times shortened to a few
seconds; kubelets mix k3s-style provider ids (`k3s://<node>`, stated in the Node resource as a k3s user would) and
empty ones (a plain kubelet; the operator stamps `homelab://<namespace>/<name>`). One mini has a dead power path:
every startup Job for it fails. Priorities make CA's first scale-up of three minis choose it. One mini has no power
Jobs at all: the operator switches it itself (`spec.power`: Wake-on-LAN on, its IPMI BMC off and read back), through
simulated NIC and BMC whose loopback ports are only known once they run, so its `spec.power` is given to
`node_manifests` by the session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from schemas import GROUP_VERSION
from schemas import labels as label_names
from schemas.group import FailurePolicy, GroupSpec, NodeTemplate, PowerReadbackPolicy
from schemas.node import NodeSpec, Pricing, default_provider_id
from schemas.power import PowerSpec
from sim.machines import MachineFailures, ProviderIdMode, SimulatedMachine
from sim.seed import placeholder_power_jobs

NAMESPACE: Final = "homelab"
OPERATOR_NAMESPACE: Final = "homelab-autoscaler"

JOB_SECONDS: Final = 0.8
"""How long a simulated power Job's pod runs (a Wake-on-LAN packet or an IPMI call, plus pod start-up)."""
SHUTDOWN_SECONDS: Final = 1.5
"""From a shutdown Job's success to power off."""
HEARTBEAT_SECONDS: Final = 2.0
TICK_SECONDS: Final = 0.2
"""How often the stand-in for CA polls (CA's own loop runs every 10 s; a demo wants to be watched)."""
PAUSE_SECONDS: Final = 1.5
"""How long the scenario lingers on a step's outcome before the next step, so a person can read it."""
BOOT_TIMEOUT_SECONDS: Final = 60.0
"""Generous against every boot here: a boot timeout is not part of the story (the failing machine fails fast)."""
MINIMUM_TIMEOUT_SECONDS: Final = 10.0
"""Timeouts the operator enforces are never shortened below this, whatever the speed: they are not delays of the
simulated world and the operator's own reaction time does not shrink with `--speed`."""
DEADLINE_MARGIN_SECONDS: Final = 10.0
"""Added to every scaled step deadline for the same reason."""
READBACK_SECONDS: Final = 0.5
"""How often a natively powered machine's BMC is read back while it is switched (the Group's transitionInterval)."""
STEADY_READBACK_SECONDS: Final = 5.0
"""And while it is on or off, so the readback's age in the live view keeps being renewed."""
MINIMUM_READBACK_SECONDS: Final = 0.2
NATIVE_POWER_TEXT: Final = "Wake-on-LAN on, IPMI off"
"""What `sim.machines.native_power` gives a native machine: a NIC that wakes it and a BMC that powers it off and
reads it back."""
COOLDOWN_BASE: Final = "2m"
"""Long enough that the machine whose boot failed is still cooling down when the scenario ends, at any speed."""


@dataclass(frozen=True)
class DemoGroup:
    """One Group of the demo."""

    name: str
    description: str
    capacity: Mapping[str, str]
    max_concurrent_boots: int | None = None


@dataclass(frozen=True)
class DemoMachine:
    """One machine of the demo; durations are at speed 1."""

    name: str
    group: str
    priority: int
    boot_seconds: float
    power_watts: int
    provider_id_mode: ProviderIdMode
    fails_to_boot: bool = False
    native: bool = False
    """Switched by the operator's own drivers (Wake-on-LAN on, IPMI off, readback) instead of power Jobs."""

    @property
    def stated_provider_id(self) -> str | None:
        """The providerID the Node resource states: a k3s user knows it in advance; otherwise none is stated."""
        return f"k3s://{self.name}" if self.provider_id_mode is ProviderIdMode.K3S else None

    def expected_provider_id(self, namespace: str) -> str:
        """The providerID its Kubernetes Node ends up with (stated, or stamped by the operator). Pure."""
        return self.stated_provider_id or default_provider_id(namespace, self.name)


DEMO_GROUPS: Final = (
    DemoGroup(
        "minis",
        "small mini PCs for everyday workloads",
        MappingProxyType({"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "200Gi"}),
    ),
    DemoGroup(
        "gpu",
        "power-hungry GPU boxes, only on when a job needs one",
        MappingProxyType({"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "1Ti"}),
        max_concurrent_boots=1,
    ),
)

DEMO_MACHINES: Final = (
    DemoMachine("nuc-1", "minis", priority=30, boot_seconds=2.5, power_watts=25, provider_id_mode=ProviderIdMode.K3S),
    DemoMachine(
        "elitedesk-1", "minis", priority=25, boot_seconds=3.0, power_watts=35, provider_id_mode=ProviderIdMode.EMPTY,
        fails_to_boot=True,
    ),
    DemoMachine(
        "nuc-2", "minis", priority=20, boot_seconds=3.0, power_watts=25, provider_id_mode=ProviderIdMode.EMPTY,
        native=True,
    ),
    DemoMachine("nuc-3", "minis", priority=10, boot_seconds=2.0, power_watts=25, provider_id_mode=ProviderIdMode.K3S),
    DemoMachine("gpu-1", "gpu", priority=20, boot_seconds=4.0, power_watts=180, provider_id_mode=ProviderIdMode.K3S),
    DemoMachine("gpu-2", "gpu", priority=10, boot_seconds=3.5, power_watts=220, provider_id_mode=ProviderIdMode.EMPTY),
)


@dataclass(frozen=True)
class Timing:
    """Every delay of the demo at a speed: the simulated world's delays shrink by `speed`, safety margins do not."""

    speed: float = 1.0

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"the speed factor must be positive, not {self.speed}")

    def scaled(self, seconds: float) -> float:
        return seconds / self.speed

    @property
    def job_seconds(self) -> float:
        return self.scaled(JOB_SECONDS)

    @property
    def shutdown_seconds(self) -> float:
        return self.scaled(SHUTDOWN_SECONDS)

    @property
    def heartbeat_seconds(self) -> float:
        return self.scaled(HEARTBEAT_SECONDS)

    @property
    def tick_seconds(self) -> float:
        return max(0.02, self.scaled(TICK_SECONDS))

    @property
    def pause_seconds(self) -> float:
        return self.scaled(PAUSE_SECONDS)

    @property
    def readback_seconds(self) -> float:
        return max(MINIMUM_READBACK_SECONDS, self.scaled(READBACK_SECONDS))

    @property
    def steady_readback_seconds(self) -> float:
        return max(MINIMUM_READBACK_SECONDS, self.scaled(STEADY_READBACK_SECONDS))

    @property
    def timeout_seconds(self) -> float:
        """The Groups' boot and shutdown timeouts."""
        return max(MINIMUM_TIMEOUT_SECONDS, self.scaled(BOOT_TIMEOUT_SECONDS))

    def deadline(self, seconds: float) -> float:
        """A step's deadline: `seconds` of the simulated world, plus a margin for the operator's own reactions."""
        return self.scaled(seconds) + DEADLINE_MARGIN_SECONDS


@dataclass(frozen=True)
class DemoHomelab:
    """The whole cast at one speed. Pure: every method is a function of the fields."""

    timing: Timing
    groups: tuple[DemoGroup, ...] = DEMO_GROUPS
    machines: tuple[DemoMachine, ...] = DEMO_MACHINES
    namespace: str = NAMESPACE

    def group_id(self, group: str) -> str:
        """The id CA knows a group by (`<namespace>/<name>`, as the gateway names it)."""
        return f"{self.namespace}/{group}"

    def machine(self, name: str) -> DemoMachine:
        for machine in self.machines:
            if machine.name == name:
                return machine
        raise KeyError(f"no machine {name!r} in the demo homelab")

    def members(self, group: str) -> tuple[DemoMachine, ...]:
        """The group's machines, in the order the operator powers them on (highest priority first)."""
        return tuple(sorted((m for m in self.machines if m.group == group), key=lambda m: (-m.priority, m.name)))

    def native_machines(self) -> tuple[DemoMachine, ...]:
        """The machines the operator switches itself (`spec.power`), in the order of `machines`."""
        return tuple(machine for machine in self.machines if machine.native)

    def native_power_texts(self) -> dict[str, str]:
        """How each native machine is switched, by name, for a person (the simulator gives every one the same)."""
        return {machine.name: NATIVE_POWER_TEXT for machine in self.native_machines()}

    def power_watts(self) -> dict[str, int]:
        return {machine.name: machine.power_watts for machine in self.machines}

    def expected_boot_seconds(self) -> dict[str, float]:
        """Per machine, how long a boot takes from the power-on (a startup Job's creation, or the magic packet of a
        native machine, which takes no time) to a Ready Node (for progress bars)."""
        return {
            machine.name: (0.0 if machine.native else self.timing.job_seconds)
            + self.timing.scaled(machine.boot_seconds)
            for machine in self.machines
        }

    # --- what is written to the API --------------------------------------------------------------------------

    def namespace_manifests(self) -> list[dict[str, Any]]:
        return [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            for name in (self.namespace, OPERATOR_NAMESPACE)
        ]

    def group_manifests(self) -> list[dict[str, Any]]:
        timeout = _duration(self.timing.timeout_seconds)
        manifests = []
        for group in self.groups:
            native = any(machine.native for machine in self.members(group.name))
            readback = PowerReadbackPolicy(
                transition_interval=_duration(self.timing.readback_seconds),
                steady_interval=_duration(self.timing.steady_readback_seconds),
            )
            spec = GroupSpec(
                min_size=0,
                max_size=len(self.members(group.name)),
                max_concurrent_boots=group.max_concurrent_boots,
                boot_timeout=timeout,
                shutdown_timeout=timeout,
                failure_policy=FailurePolicy(cooldown_base=COOLDOWN_BASE),
                template=NodeTemplate(
                    capacity=dict(group.capacity),
                    labels={"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
                ),
                node_labels={"homelab.example/pool": group.name},
            )
            if native:
                spec = spec.model_copy(update={"power_readback": readback})
            manifests.append(
                {
                    "apiVersion": GROUP_VERSION,
                    "kind": "Group",
                    "metadata": {
                        "name": group.name,
                        "namespace": self.namespace,
                        "annotations": {"homelab.example/description": group.description},
                    },
                    "spec": spec.model_dump(by_alias=True, exclude_defaults=True, mode="json"),
                }
            )
        return manifests

    def node_manifests(self, power: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The Node resources; `power` gives each native machine's `spec.power` block (camelCase) by name."""
        power = power or {}
        missing = [machine.name for machine in self.native_machines() if machine.name not in power]
        if missing:
            raise ValueError(f"no spec.power given for the natively powered {', '.join(missing)}")
        manifests = []
        for number, machine in enumerate(self.machines, start=1):
            spec = NodeSpec(priority=machine.priority, pricing=Pricing(power_watts=machine.power_watts))
            if machine.native:
                spec = spec.model_copy(update={"power": PowerSpec.model_validate(power[machine.name])})
            else:
                startup, shutdown = placeholder_power_jobs(machine.name, machine.name, f"02:00:00:00:00:{number:02x}")
                spec = spec.model_copy(update={"startup_job": startup, "shutdown_job": shutdown})
            if machine.stated_provider_id is not None:
                spec = spec.model_copy(update={"provider_id": machine.stated_provider_id})
            manifests.append(
                {
                    "apiVersion": GROUP_VERSION,
                    "kind": "Node",
                    "metadata": {
                        "name": machine.name,
                        "namespace": self.namespace,
                        "labels": {label_names.GROUP_LABEL: machine.group},
                    },
                    # powerPolicy is written out although it is the default: it is the first knob a person turns.
                    "spec": {
                        "powerPolicy": spec.power_policy.value,
                        **spec.model_dump(by_alias=True, exclude_defaults=True, mode="json"),
                    },
                }
            )
        return manifests

    def simulated_machines(self) -> list[SimulatedMachine]:
        """The machines the simulator plays, matching `node_manifests` one to one."""
        groups = {group.name: group for group in self.groups}
        return [
            SimulatedMachine(
                name=machine.name,
                namespace=self.namespace,
                group=machine.group,
                boot_seconds=self.timing.scaled(machine.boot_seconds),
                shutdown_seconds=self.timing.shutdown_seconds,
                provider_id_mode=machine.provider_id_mode,
                capacity=dict(groups[machine.group].capacity),
                failures=MachineFailures(fail_boot=machine.fails_to_boot),
            )
            for machine in self.machines
        ]


def demo_homelab(speed: float = 1.0) -> DemoHomelab:
    """The demo's homelab at `speed` (2 runs twice as fast). Pure."""
    return DemoHomelab(Timing(speed))


def _duration(seconds: float) -> str:
    """A Go duration string for `seconds`, to the millisecond. Pure."""
    return f"{max(1, round(seconds * 1000))}ms"
