"""The watch seam: what the Kubernetes watch threads hand the KubeWatcherActor, as plain data.

The watch threads (`kubeapi.watch`) read sockets; the KubeWatcherActor turns what they read into typed
observations. Both sides agree on the types here, so the actors never import the Kubernetes layer (checked by
import-linter), just as `actors.effects_port` is the seam in the other direction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

GROUPS: Final = "groups"
MACHINES: Final = "machines"
KUBE_NODES: Final = "kube-nodes"
POWER_JOBS: Final = "power-jobs"
"""The operator's four watches, by the resource name every `WatchEvent` and `Listed` carries."""


class WatchEventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class WatchEvent:
    """One change of one object of `resource`; `object` is the raw JSON of the object after the change."""

    resource: str
    type: WatchEventType
    object: dict[str, Any]


@dataclass(frozen=True)
class Listed:
    """The complete current set of `resource` (first list and every relist); deletions are implied by absence.

    As the API server sends them, list items of built-in kinds (Nodes, Jobs) carry no `kind`/`apiVersion`.

    `items` is handed over: the watch keeps no reference to it, and a consumer may empty a list as it reads it
    (`drain_items`), so that each raw object is freed as soon as it has been read instead of all of them staying
    alive until the last one is (at 5000 machines, tens of MiB of raw JSON at the startup peak).
    """

    resource: str
    items: Sequence[dict[str, Any]]
    resource_version: str


def drain_items(listed: Listed) -> Iterator[dict[str, Any]]:
    """The items of `listed` in order; a list is emptied as it is read (see `Listed`), a tuple left as it is."""
    items = listed.items
    if not isinstance(items, list):
        yield from items
        return
    items.reverse()
    while items:
        yield items.pop()


WatchOutput = WatchEvent | Listed
Sink = Callable[[WatchOutput], None]
