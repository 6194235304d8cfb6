"""The Node custom resource: one physical machine the operator powers on and off.

The spec says how to power the machine (a startup and a shutdown Job template, a safe subset of a pod
spec, or `power`: the operator's own drivers, which also read the power state back), which Kubernetes Node it
becomes, and how the autoscaler may use it (power policy, priority, price). The status is the durable record of
the machine: after a restart the operator rebuilds each machine's state machine from it, the machine's Jobs and
its Kubernetes Node, so every field the state machine needs lives here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final

from pydantic import Field

from schemas.common import (
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    Condition,
    Metadata,
    Model,
    Quantity,
    StatusModel,
    Taint,
    Toleration,
)
from schemas.power import DriverName, PowerSpec, PowerState

RECENT_DURATIONS: Final = 10
"""How many boot and shutdown durations a Node's status keeps: enough for percentiles over a group, small
enough that the status stays a few hundred bytes and the CRD's list bound stays cheap."""


MAX_WATTS: Final = 20_000
"""The largest power draw a machine may declare: a rack of GPUs is a few kilowatts; 20 kW is a typo."""
ENERGY_HOURS: Final = 25
"""Hours of powered-on time a Node's status keeps hour by hour, for "the last 24 hours" of energy accounting: the
current hour and the 24 before it, the oldest of which is partly inside the window."""


class NodeState(StrEnum):
    """Power states of a machine. The first four are the original design's names, verbatim."""

    SHUTDOWN = "Shutdown"
    """Powered off and available (possibly cooling down after a failed boot)."""
    STARTING_UP = "StartingUp"
    """Startup Job running or machine booting; not yet a Ready Kubernetes Node."""
    READY = "Ready"
    """Powered on and a Ready Kubernetes Node."""
    SHUTTING_DOWN = "ShuttingDown"
    """Being drained or powered off; waiting for the shutdown Job and the Node to go away."""
    BOOT_FAILED = "BootFailed"
    """The last boot failed or timed out; reported to CA as a failed creation until CA lets it go."""
    QUARANTINED = "Quarantined"
    """Too many consecutive failed boots; never chosen again until a person resets it."""
    MAINTENANCE = "Maintenance"
    """Taken out of the autoscaler's hands by a person (powerPolicy Maintenance)."""


class PowerPolicy(StrEnum):
    AUTO = "Auto"
    """The autoscaler powers the machine on and off as CA asks."""
    ON = "On"
    """Keep powered on; never powered off by the autoscaler."""
    OFF = "Off"
    """Keep powered off; never chosen for a scale-up."""
    MAINTENANCE = "Maintenance"
    """Leave the machine alone: no power operations, whatever its state."""


class OperationKind(StrEnum):
    STARTUP = "startup"
    SHUTDOWN = "shutdown"


class EnvVarSource(Model):
    """Where an environment variable's value comes from (exactly one of the two)."""

    secret_key_ref: SecretKeyRef | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: ConfigMapKeyRef | None = Field(default=None, description="A key of a ConfigMap.")


class SecretKeyRef(Model):
    name: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, description="Secret name, in the Node's namespace.")
    key: str = Field(min_length=1, description="Key within the Secret.")
    optional: bool = Field(default=False, description="Start the Job even if the Secret or key is missing.")


class ConfigMapKeyRef(Model):
    name: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, description="ConfigMap name, in the Node's namespace.")
    key: str = Field(min_length=1, description="Key within the ConfigMap.")
    optional: bool = Field(default=False, description="Start the Job even if the ConfigMap or key is missing.")


class EnvVar(Model):
    """An environment variable of the power container: a literal value or a Secret/ConfigMap key."""

    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Variable name.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: EnvVarSource | None = Field(default=None, description="Value read from a Secret or ConfigMap.")


class NamedRef(Model):
    name: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, description="Object name, in the Node's namespace.")


class EnvFromSource(Model):
    """Every key of a Secret or ConfigMap as environment variables (exactly one of the two)."""

    prefix: str = Field(default="", description="Prefix added to every variable name.")
    secret_ref: NamedRef | None = Field(default=None, description="A Secret whose keys become variables.")
    config_map_ref: NamedRef | None = Field(default=None, description="A ConfigMap whose keys become variables.")


class VolumeMount(Model):
    """A Secret or ConfigMap mounted read-only into the power container (exactly one of the two)."""

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63, description="Volume name.")
    mount_path: str = Field(pattern=r"^/", description="Absolute path in the container.")
    secret_name: str | None = Field(default=None, pattern=DNS_SUBDOMAIN_PATTERN, description="Secret to mount.")
    config_map_name: str | None = Field(
        default=None, pattern=DNS_SUBDOMAIN_PATTERN, description="ConfigMap to mount."
    )


class ResourceRequirements(Model):
    requests: dict[str, Quantity] = Field(default_factory=dict, description="Requested resources.")
    limits: dict[str, Quantity] = Field(default_factory=dict, description="Resource limits.")


class JobTemplate(Model):
    """A power operation: a safe subset of a pod spec run once as a Kubernetes Job."""

    image: str = Field(min_length=1, description="Container image that performs the operation.")
    command: tuple[str, ...] = Field(default=(), description="Entrypoint override.")
    args: tuple[str, ...] = Field(default=(), description="Arguments.")
    # The bounds on the lists below keep the CRD's per-item CEL rules inside the API server's cost budget,
    # which multiplies a rule's cost by the largest number of items a list may hold.
    env: tuple[EnvVar, ...] = Field(default=(), max_length=64, description="Environment variables.")
    env_from: tuple[EnvFromSource, ...] = Field(
        default=(), max_length=16, description="Secrets/ConfigMaps as variables."
    )
    volumes: tuple[VolumeMount, ...] = Field(
        default=(), max_length=32, description="Secrets/ConfigMaps mounted read-only."
    )
    resources: ResourceRequirements | None = Field(default=None, description="Container resources.")
    service_account_name: str | None = Field(
        default=None, pattern=DNS_SUBDOMAIN_PATTERN, description="Service account of the Job's pod."
    )
    host_network: bool = Field(
        default=False, description="Run in the host network (Wake-on-LAN broadcasts usually need it)."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Where the Job's pod may run.")
    tolerations: tuple[Toleration, ...] = Field(default=(), description="Tolerations of the Job's pod.")
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Kill the Job after this many seconds (default: the group's timeout)."
    )
    backoff_limit: int = Field(default=1, ge=0, le=10, description="Pod retries before the Job fails.")
    ttl_seconds_after_finished: int = Field(
        default=600, ge=0, description="Seconds a finished Job is kept for inspection."
    )


class Pricing(Model):
    """What running the machine costs: for CA's price expander and for energy accounting."""

    hourly_price: str | None = Field(
        default=None, pattern=r"^[0-9]+(\.[0-9]+)?$", description="Price per hour as a decimal string."
    )
    power_watts: int | None = Field(
        default=None,
        ge=0,
        le=MAX_WATTS,
        description="Typical power draw when on, in watts; unset or 0: unknown, and the machine's energy is not "
        "accounted.",
    )
    standby_watts: int | None = Field(
        default=None,
        ge=0,
        le=MAX_WATTS,
        description="Standby draw while powered off (Wake-on-LAN, BMC), in watts; unset counts as 0. At most "
        "powerWatts.",
    )


class NodeSpec(Model):
    """How to power one machine and how the autoscaler may use it."""

    kubernetes_node_name: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="Name of the Kubernetes Node the machine registers as; defaults to this resource's name.",
    )
    provider_id: str | None = Field(
        default=None,
        alias="providerID",
        min_length=1,
        description="The Node's spec.providerID; when unset the operator sets homelab://<namespace>/<name>.",
    )
    power_policy: PowerPolicy = Field(default=PowerPolicy.AUTO, description="Auto, On, Off or Maintenance.")
    priority: int = Field(default=0, description="Higher priority machines are powered on first.")
    pricing: Pricing = Field(default_factory=Pricing, description="Cost of running the machine.")
    startup_job: JobTemplate | None = Field(
        default=None, description="Job that powers the machine on (set both Jobs, or power instead)."
    )
    shutdown_job: JobTemplate | None = Field(
        default=None, description="Job that powers the machine off (set both Jobs, or power instead)."
    )
    power: PowerSpec | None = Field(
        default=None,
        description="Power the machine natively (Wake-on-LAN, IPMI, Redfish, SSH) instead of by Jobs; a BMC also "
        "reads the power state back.",
    )

    @property
    def powered_natively(self) -> bool:
        """Whether the operator's own drivers power this machine (else its Jobs do)."""
        return self.power is not None


Seconds = Annotated[float, Field(ge=0)]


class Operation(StatusModel):
    """The power operation in flight."""

    kind: OperationKind = Field(description="startup or shutdown.")
    attempt: int = Field(ge=1, description="Attempt number, part of the Job name.")
    job_name: str = Field(
        description="Name of the Job performing it; for a machine powered natively, the operation's name (no Job)."
    )
    started: datetime = Field(description="When the operation began.")
    driver: DriverName | None = Field(
        default=None, description="The native driver that sent the power command; unset: a Job performs it."
    )
    commanded: datetime | None = Field(
        default=None, description="When the native driver reported the power command done."
    )
    forced_off: datetime | None = Field(
        default=None, description="When a forced power-off followed a graceful one that did not complete."
    )


class PowerReadback(StatusModel):
    """The machine's power state as last read back from its BMC."""

    state: PowerState = Field(description="On or Off.")
    observed_at: datetime = Field(description="When it was read.")
    driver: DriverName = Field(description="The driver that read it (ipmi or redfish).")


class NodeSnapshot(StatusModel):
    """The Kubernetes Node as last seen Ready: the scale-from-zero template of its group."""

    labels: dict[str, str] = Field(default_factory=dict, description="Node labels.")
    taints: tuple[Taint, ...] = Field(default=(), description="Node taints.")
    capacity: dict[str, str] = Field(default_factory=dict, description="status.capacity.")
    allocatable: dict[str, str] = Field(default_factory=dict, description="status.allocatable.")
    seen_at: datetime | None = Field(default=None, description="When it was recorded.")


class ExerciseOutcome(StrEnum):
    RUNNING = "Running"
    """Booting, or checked and powering off again; hidden from Cluster Autoscaler meanwhile."""
    SUCCEEDED = "Succeeded"
    """Booted to a Ready Kubernetes Node and powered off again."""
    FAILED = "Failed"
    """The boot failed or timed out (counted as a failed boot), or the machine could not be powered off again."""
    TAKEN_OVER = "TakenOver"
    """Cluster Autoscaler asked for a machine meanwhile: the exercise boot became a normal boot."""
    INTERRUPTED = "Interrupted"
    """Ended otherwise: the power policy changed, or the machine went off or on outside the autoscaler."""


class ExerciseRecord(StatusModel):
    """One exercise boot: when it began, how it ended."""

    started: datetime = Field(description="When the exercise boot's startup Job was created.")
    outcome: ExerciseOutcome = Field(description="Running, Succeeded, Failed, TakenOver or Interrupted.")
    finished: datetime | None = Field(default=None, description="When the outcome was decided; unset while Running.")
    message: str = Field(default="", description="What happened, e.g. how long the machine took to be Ready.")


class NodeStatus(StatusModel):
    """The durable record of one machine."""

    state: NodeState = Field(default=NodeState.SHUTDOWN, description="Power state.")
    since: datetime | None = Field(default=None, description="When the machine entered its state.")
    operation: Operation | None = Field(default=None, description="The power operation in flight.")
    attempts: int = Field(
        default=0, ge=0, description="Power operations started so far; numbers the Job names so they never repeat."
    )
    operation_tries: int = Field(
        default=0, ge=0, description="Jobs run so far by the operation in flight (its first try plus retries)."
    )
    consecutive_failures: int = Field(default=0, ge=0, description="Failed boots since the last success.")
    cooldown_until: datetime | None = Field(default=None, description="Not chosen for a boot before this time.")
    provider_id: str | None = Field(
        default=None, alias="providerID", description="The providerID the Kubernetes Node registered with."
    )
    last_ready: NodeSnapshot | None = Field(default=None, description="The Kubernetes Node last seen Ready.")
    powered_on_seconds: float = Field(
        default=0,
        ge=0,
        description="Total time spent powered on: booting (from the startup Job's creation), Ready and shutting "
        "down, up to the last change of state.",
    )
    accounting_since: datetime | None = Field(
        default=None,
        description="When energy accounting of the machine began: the start of `poweredOnSeconds`' time span.",
    )
    powered_on_by_hour: tuple[Seconds, ...] = Field(
        default=(),
        max_length=ENERGY_HOURS,
        description="Seconds powered on in each of the last hours, oldest first, up to the hour that starts at "
        "poweredOnHoursEnd; updated with each change of state (so the current stretch is not in it yet).",
    )
    powered_on_hours_end: datetime | None = Field(
        default=None, description="Start of the hour counted by the last entry of poweredOnByHour."
    )
    recent_boot_seconds: tuple[Seconds, ...] = Field(
        default=(),
        max_length=RECENT_DURATIONS,
        description="The last boots that succeeded, oldest first: seconds from the startup Job's creation "
        "(the power command) to the Kubernetes Node Ready.",
    )
    recent_shutdown_seconds: tuple[Seconds, ...] = Field(
        default=(),
        max_length=RECENT_DURATIONS,
        description="The last confirmed power-offs, oldest first: seconds from the shutdown Job's creation "
        "(the power-off command) to the machine confirmed off.",
    )
    reason: str = Field(default="", description="Why the machine entered its state (one CamelCase word).")
    message: str = Field(default="", description="Details of the last transition or failure.")
    handled_reset: str | None = Field(
        default=None, description="The reset annotation value last acted on (a new value clears quarantine)."
    )
    power_readback: PowerReadback | None = Field(
        default=None, description="The last good power-state readback (machines with a BMC in spec.power)."
    )
    conditions: tuple[Condition, ...] = Field(
        default=(), description="Ready, Quarantined, OperationFailed, KubernetesWriteFailed, PowerReadbackFailing."
    )
    observed_generation: int | None = Field(default=None, description="The spec generation last acted on.")
    last_exercise: ExerciseRecord | None = Field(
        default=None, description="The last exercise boot (the group's spec.exercise), or the one running now."
    )


class Node(StatusModel):
    """A Node custom resource as read from the API."""

    metadata: Metadata = Field(description="Kubernetes object metadata.")
    spec: NodeSpec = Field(description="How to power the machine.")
    status: NodeStatus = Field(default_factory=NodeStatus, description="Durable record of the machine.")


def kubernetes_node_name(node: Node) -> str:
    """The Kubernetes Node name a machine registers as. Pure."""
    return node.spec.kubernetes_node_name or node.metadata.name


def default_provider_id(namespace: str, name: str) -> str:
    """The providerID the operator stamps on a Kubernetes Node that registered without one. Pure."""
    return f"homelab://{namespace}/{name}"


EnvVarSource.model_rebuild()
