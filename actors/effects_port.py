"""The effect seam: how actors hand Kubernetes work to the adapters without doing any I/O themselves.

An actor handler must never block (on simpleSystemBase a blocking handler stalls every actor and every deadline),
so a NodeActor only *describes* what must happen, as an `EffectBatch`, and submits it to an `EffectPort`. The real
port (the Kubernetes writer in `kubeapi`) queues the batch for its worker threads and reports failures
back to `reply_to` as messages (`EffectFailed`, `DrainCompleted`); tests use a recording fake. Keeping the port a
Protocol in its own module lets actors, adapters and fakes agree on it without importing one another.

The port's promises, which the actors rely on:

* `submit` returns at once (it only enqueues).
* The effects of one machine are applied in submission order, batch after batch, effect after effect: a
  `Cordon` is applied before the shutdown Job it precedes, and a `PatchStatus` never overtakes an older one.
  Different machines may proceed in parallel.
* Every effect is idempotent (see `actors.fsm.effects`), so a batch submitted again after an actor was
  recreated does no harm.
* A batch with a `stored_notice` tells its message to its recipient right after the batch's `PatchStatus` has been
  written, and never when that write failed (the recipient has its own deadline).

Timer effects (`StartTimer`, `CancelTimer`) never reach the port: the NodeActor sends them to the ticker itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from actors.fsm.effects import Effect, RecordEvent
from schemas.group import GroupSpec, GroupStatus
from schemas.node import Node


@dataclass(frozen=True)
class MachineRef:
    """Which machine a batch is about: its Node resource, its Kubernetes Node and its group's name."""

    namespace: str
    name: str
    kubernetes_node_name: str
    group: str
    """The Group's name (same namespace), as put in the labels of power Jobs."""

    @property
    def key(self) -> str:
        """`<namespace>/<name>`: one machine, whatever its group."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class StoredNotice:
    """Whom to tell, and what, once a batch's status write is stored (a GroupActor waiting to answer CA)."""

    recipient: Any
    message: object


@dataclass(frozen=True)
class EffectBatch:
    """The effects of one machine from one transition, to be applied in order.

    `node` is the latest Node resource (its spec renders the power Jobs) and `group_spec` the latest spec of its
    group (timeouts become Job deadlines; node labels and taints are applied from it); either may be None when the
    batch does not need it (an Event about a machine whose group does not exist). Failures are reported to
    `reply_to` (an ActorAddress); `stored_notice`, when given, is told once the batch's `PatchStatus` is written.
    """

    machine: MachineRef
    node: Node | None
    group_spec: GroupSpec | None
    effects: tuple[Effect, ...]
    reply_to: Any
    stored_notice: StoredNotice | None = None


@dataclass(frozen=True)
class GroupStatusBatch:
    """Write this status of the Group resource `namespace/name` (submitted only when it changed)."""

    namespace: str
    name: str
    status: GroupStatus


@dataclass(frozen=True)
class GroupEventBatch:
    """Record `event` on the Group resource `namespace/name` (`uid` is the Group's, so the Event names it exactly).

    Applied in order with the group's status writes; repeats within a short time add to one Event's count.
    """

    namespace: str
    name: str
    uid: str
    event: RecordEvent


AnyBatch = EffectBatch | GroupStatusBatch | GroupEventBatch
"""Everything an actor may submit."""


class EffectPort(Protocol):
    """Where actors submit work for the adapters; see the module docstring for the promises."""

    def submit(self, batch: AnyBatch) -> None:
        """Queue the batch and return at once."""
