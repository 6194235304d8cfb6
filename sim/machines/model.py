"""What a simulated machine is: its fixed description and its power states.

Pure data, separate from the threads that play the machines, so the seeder can build the machine list
that matches the resources it created, the CLI can build it from flags, and tests can write one in a
line, all without a running simulator. Every duration is a float of seconds so tests can shrink a boot
to a tenth of a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from schemas.node import default_provider_id

DEFAULT_CAPACITY: Final[Mapping[str, str]] = MappingProxyType(
    {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}
)
"""A small homelab box; `pods` is always present because a template without it fits nothing."""


class ProviderIdMode(StrEnum):
    """What the machine's kubelet writes into the Kubernetes Node's `spec.providerID`."""

    EMPTY = "empty"
    """Nothing, like a kubeadm or bare kubelet: the operator is expected to stamp one."""
    PRESET = "preset"
    """`homelab://<namespace>/<Node CR name>`, as if the user configured the kubelet with our scheme."""
    K3S = "k3s"
    """`k3s://<Kubernetes Node name>`, what k3s agents register with."""


class PowerState(StrEnum):
    """Where a simulated machine is in its power cycle."""

    OFF = "Off"
    BOOTING = "Booting"
    """Powered on, kubelet not yet registered."""
    HUNG = "Hung"
    """Powered on but stuck in boot: it never registers until it is powered off."""
    RUNNING = "Running"
    """Booted: its kubelet registers the Node (retrying until the API accepts it) and heartbeats."""
    SHUTTING_DOWN = "ShuttingDown"
    """Told to power off; still heartbeating until shutdown_seconds have passed."""


@dataclass(frozen=True)
class MachineFailures:
    """Standing faults of one machine (runtime one-shot faults live on the machine's handle instead).

    `fail_boot` and `fail_shutdown` make the simulator, when it plays the Job controller, fail every
    startup or shutdown Job of this machine, like a dead BMC. `hang_boot` lets the startup Job succeed but
    the machine never registers. `power_on_at` / `power_off_at` are seconds after the simulator starts at
    which the machine powers itself on or off without any Job.
    """

    fail_boot: bool = False
    hang_boot: bool = False
    fail_shutdown: bool = False
    power_on_at: float | None = None
    power_off_at: float | None = None


@dataclass(frozen=True)
class SimulatedMachine:
    """One physical machine as the simulator plays it.

    `name` and `namespace` are those of the machine's Node custom resource: power Jobs name the machine
    by that name (label `infra.homecluster.dev/node`) and live in that namespace. `kubernetes_node_name`
    is the core/v1 Node the machine's kubelet registers as (defaults to `name`).
    """

    name: str
    namespace: str = "homelab"
    group: str = ""
    kubernetes_node_name: str = ""
    boot_seconds: float = 30.0
    shutdown_seconds: float = 10.0
    provider_id_mode: ProviderIdMode = ProviderIdMode.EMPTY
    capacity: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CAPACITY))
    labels: Mapping[str, str] = field(default_factory=dict)
    failures: MachineFailures = field(default_factory=MachineFailures)

    def __post_init__(self) -> None:
        if not self.kubernetes_node_name:
            object.__setattr__(self, "kubernetes_node_name", self.name)
        if self.boot_seconds < 0 or self.shutdown_seconds < 0:
            raise ValueError(f"machine {self.name}: boot and shutdown times are never negative")

    @property
    def provider_id(self) -> str:
        """The providerID the kubelet registers with ("" in EMPTY mode). Pure."""
        if self.provider_id_mode is ProviderIdMode.PRESET:
            return default_provider_id(self.namespace, self.name)
        if self.provider_id_mode is ProviderIdMode.K3S:
            return f"k3s://{self.kubernetes_node_name}"
        return ""
