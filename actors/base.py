"""`ShellActor`: the common base of every operator actor (Supervisor, groups, nodes, watcher, ticker).

The behaviour every actor shell must share lives here once instead of being repeated in each actor:

* Each delivered message is counted (labels: actor kind and actor name) and its handler time observed
  (label: actor kind only; see `actors.metrics` on cardinality).
* A message nobody handles is logged at DEBUG and dropped: actors ignore what they do not understand, as
  Thespian recommends, so a stale or misrouted message never crashes anything.
* A handler exception is logged once at ERROR with the message's repr and then re-raised, so Thespian's own
  path applies: the message is retried (three attempts in total on simpleSystemBase) and then returned to its
  sender wrapped in a `PoisonMessage`, while the actor keeps serving the next message. Handlers therefore
  have to be idempotent.
* A `PoisonMessage` coming back to an actor (a message it sent made its target fail) is logged at WARNING;
  subclasses that care override `receiveMsg_PoisonMessage`.

Subclasses set `actor_kind` and, once they know it (usually from their first configuration message), assign
`actor_name`; until then the Thespian global name or address stands in.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

from prometheus_client.metrics import Histogram
from thespian.actors import ActorTypeDispatcher, PoisonMessage

from actors import metrics

LOGGER = logging.getLogger(__name__)


class ShellActor(ActorTypeDispatcher):  # type: ignore[misc]  # thespian ships no type hints
    """Thespian actor with per-message metrics, unknown messages dropped, one ERROR log per failure."""

    actor_kind: ClassVar[str] = "actor"

    def __init__(self) -> None:
        super().__init__()
        self.actor_name: str | None = None
        # Cached per actor: the handled-counter key (kind, name), rebuilt only when the name changes, and the
        # kind's histogram child (`.labels()` costs a dict lookup under a lock on every message otherwise).
        self._handled_key: tuple[str, str] | None = None
        self._handler_histogram: Histogram | None = None

    def receiveMessage(self, message: object, sender: Any) -> Any:
        started = time.perf_counter()
        try:
            return super().receiveMessage(message, sender)
        except Exception:
            LOGGER.exception("%s %s failed to handle %r", self.actor_kind, self._label_name(), message)
            raise
        finally:
            handled_key, handler_histogram = self._metric_keys()
            metrics.ACTOR_MESSAGES_HANDLED.increment(handled_key)
            handler_histogram.observe(time.perf_counter() - started)

    def receiveUnrecognizedMessage(self, message: object, sender: Any) -> None:
        LOGGER.debug("%s %s ignores %r from %s", self.actor_kind, self._label_name(), message, sender)

    def receiveMsg_PoisonMessage(self, message: PoisonMessage, sender: Any) -> None:
        LOGGER.warning(
            "%s %s: a message it sent failed in %s: %r",
            self.actor_kind, self._label_name(), sender, message.poisonMessage,
        )

    def _label_name(self) -> str:
        if self.actor_name:
            return self.actor_name
        try:
            global_name: str | None = self.globalName
        except AttributeError:
            # simpleSystemBase records a global name only for top-level actors; children have none.
            global_name = None
        if global_name:
            return global_name
        return str(self.myAddress.actorAddressString)

    def _metric_keys(self) -> tuple[tuple[str, str], Histogram]:
        name = self._label_name()
        if self._handled_key is None or self._handler_histogram is None or name != self._handled_key[1]:
            # One series per actor, kept by `actors.metrics.TableCounter` as a plain dict entry keyed by this tuple.
            self._handled_key = (self.actor_kind, name)
            self._handler_histogram = metrics.ACTOR_HANDLER_SECONDS.labels(self.actor_kind)
        return self._handled_key, self._handler_histogram
