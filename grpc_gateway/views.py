"""Plain values the gateway converts to and from the wire: what a group, an instance and a node look like
to Cluster Autoscaler.

They sit between the read model (what the operator knows) and the protobuf messages (what CA reads),
so the converters in `convert.py` can be tested with plain values and the servicer never builds protobuf
messages by hand. They are frozen and hold no protobuf or gRPC types; taints reuse the CRD's `Taint`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum

from schemas.common import Taint


class InstanceState(Enum):
    """The three states CA distinguishes for an instance it was told about."""

    CREATING = "creating"
    """Powering on or booting, not yet a Ready Kubernetes Node (CA counts it as upcoming)."""
    RUNNING = "running"
    """Powered on and registered."""
    DELETING = "deleting"
    """Shutting down; CA ignores it from now on."""


class InstanceErrorClass(IntEnum):
    """CA's classes of instance errors; the value only changes labels in CA's events and metrics."""

    OUT_OF_RESOURCES = 1
    OTHER = 99


@dataclass(frozen=True, slots=True)
class NodeGroupView:
    """One group as CA sees it in NodeGroups and NodeGroupForNode."""

    id: str
    min_size: int
    max_size: int
    debug: str = ""
    """Free text CA prints in its logs and status."""


@dataclass(frozen=True, slots=True)
class InstanceView:
    """One machine of a group as CA sees it in NodeGroupNodes.

    `id` is the Kubernetes Node's spec.providerID, byte for byte. A non-empty `error_code` on a CREATING
    instance tells CA the boot failed, so it backs the group off at once instead of waiting out
    max-node-provision-time.
    """

    id: str
    state: InstanceState
    error_code: str = ""
    error_message: str = ""
    error_class: InstanceErrorClass = InstanceErrorClass.OTHER


@dataclass(frozen=True, slots=True)
class TemplateNode:
    """What a new member of a group would look like as a Kubernetes Node (for scale-from-zero).

    `allocatable` defaults to `capacity` when empty. `architecture` becomes the `kubernetes.io/arch` label
    unless `labels` already carries one.
    """

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    capacity: Mapping[str, str] = field(default_factory=dict)
    allocatable: Mapping[str, str] = field(default_factory=dict)
    provider_id: str = ""
    architecture: str = ""


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A Kubernetes Node as CA names it in NodeGroupForNode and NodeGroupDeleteNodes.

    `is_stand_in` marks the placeholder CA builds for an instance that never registered or failed to
    boot: it has no real name, so look machines up by `provider_id` first.
    """

    name: str
    provider_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    is_stand_in: bool = False
