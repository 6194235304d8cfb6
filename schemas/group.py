"""The Group custom resource: one Cluster Autoscaler node group of interchangeable machines.

A Group says how many machines may run (min/max), how fast and how safely they are powered on
(concurrent boots, timeouts, failure policy), what a powered-off Kubernetes Node becomes, what CA is told
(autoscaling-option overrides, scale-from-zero template, GPU label) and which labels and taints the
operator keeps on member Kubernetes Nodes. Members are Node CRs labelled `infra.homecluster.dev/group`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final

from pydantic import Field

from schemas.common import Condition, Duration, DurationOrAuto, Metadata, Model, Quantity, StatusModel, Taint


class PowerOffNodePolicy(StrEnum):
    DELETE = "Delete"
    """Delete the Kubernetes Node after a confirmed power-off, so CA never counts it as unready."""
    KEEP = "Keep"
    """Keep the NotReady Node object (it then counts towards CA's unready thresholds)."""


class FailurePolicy(Model):
    """How failed boots are handled: exponential cooldown, then quarantine until a person resets."""

    quarantine_after: int = Field(
        default=3, ge=1, le=100, description="Consecutive failed boots after which a machine is quarantined."
    )
    cooldown_base: Duration = Field(
        default="30s", description="Cooldown after the first failed boot; doubles with each further failure."
    )
    cooldown_cap: Duration = Field(default="30m", description="The longest cooldown between boot attempts.")
    shutdown_retries: int = Field(
        default=2, ge=0, le=20, description="Extra shutdown attempts before the machine is returned to Ready."
    )


class PowerReadbackPolicy(Model):
    """How often machines powered natively have their power state read back, and how a power-on is checked."""

    transition_interval: Duration = Field(
        default="5s", description="Between readbacks while a machine is powering on or off."
    )
    steady_interval: Duration = Field(
        default="5m", description="Between readbacks while a machine is on or off (noticing changes made by hand)."
    )
    power_on_grace: Duration = Field(
        default="60s",
        description="A power-on still read Off this long after the command is sent again; kept well below "
        "bootTimeout, so a machine that does not switch on fails fast.",
    )
    power_on_retries: int = Field(
        default=1, ge=0, le=5, description="Power-on commands sent again after a readback still says Off."
    )


class AutoscalingOptions(Model):
    """Per-group overrides of CA's options; unset fields keep CA's own flag defaults."""

    scale_down_utilization_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Utilization below which a node may be removed (CA default 0.5)."
    )
    scale_down_gpu_utilization_threshold: float | None = Field(
        default=None, ge=0, le=1, description="GPU utilization threshold for scale-down (CA default 0.5)."
    )
    scale_down_unneeded_time: Duration | None = Field(
        default=None, description="How long a node must be unneeded before removal (CA default 10m)."
    )
    scale_down_unready_time: Duration | None = Field(
        default=None, description="How long an unready node must be unneeded before removal (CA default 20m)."
    )
    max_node_provision_time: DurationOrAuto | None = Field(
        default=None,
        description="How long CA waits for a booting machine to register (CA default 15m); `auto`: the group's "
        "observed p99 boot time times 1.5, between 2m and 1h, once 5 boots were recorded (CA's default before).",
    )
    zero_or_max_node_scaling: bool | None = Field(
        default=None, description="Scale the whole group to zero or to max at once (CA default false)."
    )
    ignore_daemon_sets_utilization: bool | None = Field(
        default=None, description="Ignore DaemonSet pods when computing utilization (CA default false)."
    )


class NodeTemplate(Model):
    """What a member machine looks like to the scheduler, for scale-from-zero when none has been seen."""

    capacity: dict[str, Quantity] = Field(
        description="Resources of one machine, e.g. cpu: '8', memory: 31Gi, pods: '110' (pods is required)."
    )
    allocatable: dict[str, Quantity] = Field(
        default_factory=dict, description="Allocatable resources; defaults to capacity."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels a member Kubernetes Node carries; the operator adds those a member's Node lacks, "
        "never overwriting a value set there (a difference is logged).",
    )
    taints: tuple[Taint, ...] = Field(
        default=(), description="Taints a member Kubernetes Node carries; the operator puts them on each member's Node."
    )


class Weekday(StrEnum):
    """A day of the week, as a window's start day."""

    MON = "Mon"
    TUE = "Tue"
    WED = "Wed"
    THU = "Thu"
    FRI = "Fri"
    SAT = "Sat"
    SUN = "Sun"


CLOCK_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
"""A wall-clock time of day, `HH:MM` on the 24-hour clock."""


class WeeklyWindow(Model):
    """A weekly window: from `start` on each of `days` to the next `end`, by the clock of `timeZone`."""

    days: tuple[Weekday, ...] = Field(
        min_length=1, max_length=7, description="Days of the week the window starts on, e.g. [Mon, Tue, Wed]."
    )
    start: str = Field(pattern=CLOCK_TIME_PATTERN, description="When the window starts, HH:MM by the zone's clock.")
    end: str = Field(
        pattern=CLOCK_TIME_PATTERN,
        description="When the window ends, HH:MM by the zone's clock; earlier than start: the next day.",
    )
    time_zone: str = Field(
        default="UTC", max_length=64, description="IANA time zone of start and end, e.g. Europe/Berlin."
    )


class Schedule(WeeklyWindow):
    """A weekly window from `start` on each of `days` to the next `end`, overriding minSize and/or maxSize."""

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="Names the window in the group's status, Events and refusals (lowercase letters, digits, -).",
    )
    min_size: int | None = Field(
        default=None, ge=0, description="The group's minSize while the window is active; the operator powers on "
        "machines up to it; unset: spec.minSize."
    )
    max_size: int | None = Field(
        default=None, ge=0, description="The group's maxSize while the window is active (Cluster Autoscaler "
        "cannot scale up beyond it; running machines are not powered off); unset: spec.maxSize."
    )


class ExerciseWindow(WeeklyWindow):
    """When exercise boots may start: weekly, from `start` on each of `days` to the next `end`."""


MIN_EXERCISE_INTERVAL_SECONDS: Final = 3600
"""The shortest `exercise.every`: an exercise is a real boot and power-off, not a health probe."""


class Exercise(Model):
    """Boot machines that have been off a long time, check they come up, and power them off again."""

    every: Duration = Field(
        default="168h",
        description="A machine powered off longer than this is exercised (at least 1h; 168h is a week).",
    )
    window: ExerciseWindow | None = Field(
        default=None, description="When exercises may start; unset: at any time."
    )


class GroupSpec(Model):
    """Desired behaviour of a group of machines."""

    min_size: int = Field(default=0, ge=0, description="CA never scales the group below this many machines.")
    max_size: int = Field(ge=0, description="CA never scales the group above this many machines.")
    max_concurrent_boots: int | None = Field(
        default=None, ge=1, description="At most this many machines boot at once (e.g. a UPS or circuit limit)."
    )
    boot_timeout: Duration = Field(
        default="10m", description="A machine not Ready this long after its startup Job began has failed to boot."
    )
    shutdown_timeout: Duration = Field(
        default="5m", description="A shutdown not confirmed within this time is retried, then abandoned."
    )
    failure_policy: FailurePolicy = Field(
        default_factory=FailurePolicy, description="Cooldown and quarantine after failed boots."
    )
    power_off_node_policy: PowerOffNodePolicy = Field(
        default=PowerOffNodePolicy.DELETE, description="What happens to the Kubernetes Node after power-off."
    )
    power_readback: PowerReadbackPolicy = Field(
        default_factory=PowerReadbackPolicy,
        description="Readback intervals and the power-on check of members powered natively (spec.power).",
    )
    autoscaling_options: AutoscalingOptions | None = Field(
        default=None, description="Overrides of CA's per-group options; unset keeps CA's defaults."
    )
    template: NodeTemplate | None = Field(
        default=None, description="Scale-from-zero template used until a member has been seen Ready."
    )
    gpu_label: str | None = Field(
        default=None, description="Label key that marks GPU nodes, reported to CA's GPULabel call."
    )
    energy_price: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(\.[0-9]+)?$",
        max_length=20,
        description="Price of one kilowatt-hour of electricity for this group's machines, as a decimal string in "
        "your currency; unset: energy is accounted in kWh only, without cost.",
    )
    gpu_types: tuple[str, ...] = Field(default=(), description="GPU types the group offers (GetAvailableGPUTypes).")
    node_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels the operator keeps on every member Kubernetes Node."
    )
    node_taints: tuple[Taint, ...] = Field(
        default=(), description="Taints the operator keeps on every member Kubernetes Node."
    )
    schedules: tuple[Schedule, ...] = Field(
        default=(),
        max_length=20,
        description="Weekly windows overriding minSize and/or maxSize while active; the first active one wins.",
    )
    exercise: Exercise | None = Field(
        default=None,
        description="Exercise boots: machines off longer than `every` are booted, checked and powered off again, "
        "one at a time, hidden from Cluster Autoscaler; unset: never.",
    )


class GroupStatus(StatusModel):
    """What the operator last recorded about a group."""

    target_size: int = Field(default=0, ge=0, description="Machines CA currently wants powered on.")
    ready_count: int = Field(default=0, ge=0, description="Machines that are on and Ready.")
    machines: dict[str, int] = Field(default_factory=dict, description="Number of machines in each state.")
    conditions: tuple[Condition, ...] = Field(default=(), description="Healthy and other conditions.")
    observed_generation: int | None = Field(default=None, description="The spec generation last acted on.")
    min_size: int | None = Field(
        default=None, ge=0, description="The minSize in force, as Cluster Autoscaler is told it: the active schedule "
        "window's, else spec.minSize."
    )
    max_size: int | None = Field(
        default=None, ge=0, description="The maxSize in force, as Cluster Autoscaler is told it: the active schedule "
        "window's, else spec.maxSize."
    )
    active_schedule: str | None = Field(
        default=None, description="The schedule window in force (its name); unset: spec.minSize and maxSize apply."
    )
    next_schedule_change: datetime | None = Field(
        default=None, description="When a schedule window next starts or ends; unset: no change within a week."
    )
    exercising: str | None = Field(
        default=None, description="The member being exercised now (hidden from Cluster Autoscaler); unset: none."
    )


class Group(StatusModel):
    """A Group custom resource as read from the API (apiVersion and kind are implied)."""

    metadata: Metadata = Field(description="Kubernetes object metadata.")
    spec: GroupSpec = Field(description="Desired behaviour.")
    status: GroupStatus = Field(default_factory=GroupStatus, description="Observed state.")
