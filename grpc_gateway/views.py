"""Plain values the gateway converts to and from the wire: what a group, a template node and a node named
by Cluster Autoscaler look like.

They sit between the read model (what the operator knows) and the protobuf messages (what CA reads),
so the converters in `convert.py` can be tested with plain values and the servicer never builds protobuf
messages by hand. They are frozen and hold no protobuf or gRPC types; taints reuse the CRD's `Taint`.
Instances are not here: the group policy (`actors.fsm.group.InstanceView`) already says what CA is told
about each machine, and one definition of that keeps the two layers from drifting apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.common import Taint


@dataclass(frozen=True, slots=True)
class NodeGroupView:
    """One group as CA sees it in NodeGroups and NodeGroupForNode."""

    id: str
    min_size: int
    max_size: int
    debug: str = ""
    """Free text CA prints in its logs and status."""


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
    group_id: str = ""
    """Annotated on the node (`infra.homecluster.dev/node-group`), so a price CA asks for the template finds it."""


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
