"""The gateway's one way to change anything: a port for CA's three size changes, and its actor-backed adapter.

Reads are served from the read model without waiting for anybody; the three mutations (IncreaseSize,
DeleteNodes, DecreaseTargetSize) must go through the group's actor, because only it may change the target
and it publishes the new snapshot before it replies (CA double-scales when a target lags). The servicer talks
to the `MutationPort` protocol, not to the runtime, so it is tested with a fake port and does not care how the
answer is obtained; `ActorMutations` is the real thing, an ask to the Supervisor through the `ActorRuntime`.

Each port method returns None when the change was made, or raises one of three errors, which the error
table (`grpc_gateway.errors`) turns into gRPC status codes:

    OperatorError (actors.errors)
    └── MutationError (base)
        ├── MutationRefused      the group said no, with an `ErrorKind` and a message naming what was wrong
        ├── MutationTimedOut     no answer in time (the change may still happen; CA will look again next loop)
        └── MutationUnavailable  nobody can take the request now (not the leader yet, or the runtime stopped)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final, Protocol

from actors.errors import ActorTimeout, OperatorError, RuntimeStopped
from actors.messages import (
    DecreaseTargetSize,
    DeleteNodes,
    ErrorKind,
    IncreaseSize,
    MutationReply,
    NodeIdentity,
)

LOGGER = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS: Final = 4.0
"""Below CA's default 5 s gRPC deadline, so CA gets our DEADLINE_EXCEEDED with a reason, not its own."""


class MutationError(OperatorError):
    """A size change that was not made (or not confirmed)."""


class MutationRefused(MutationError):
    """The group actor refused the change; `kind` says why, `message` names the group, node and reason."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class MutationTimedOut(MutationError):
    """No answer before the deadline; the change may or may not have been made."""


class MutationUnavailable(MutationError):
    """Nobody can take the change now: this replica is not (yet) the leader, or the actor runtime stopped."""


class MutationPort(Protocol):
    """What the servicer needs to change a group. Every method returns once the new target is published."""

    def increase_size(self, group_id: str, delta: int) -> None:
        """Power on `delta` (> 0) more machines of the group, all or nothing."""

    def delete_nodes(self, group_id: str, nodes: tuple[NodeIdentity, ...]) -> None:
        """Power off these machines of the group and lower its target by as many."""

    def decrease_target_size(self, group_id: str, delta: int) -> None:
        """Lower the group's target by -delta (delta < 0) by cancelling boots that have not registered."""


class AskingRuntime(Protocol):
    """The part of `actors.runtime.ActorRuntime` this adapter uses (a protocol so tests can stand in for it)."""

    def new_request_id(self) -> str: ...

    def ask(self, address: Any, message: Any, timeout: float, reply_type: type[MutationReply]) -> Future[Any]: ...


class ActorMutations:
    """`MutationPort` over the actor runtime: each call is one ask to the Supervisor, which routes it to the group.

    `supervisor_address_provider` returns the Supervisor's address, or None while this replica is not the
    leader (the Supervisor exists only on the leader), which makes every mutation `MutationUnavailable`.
    The runtime enforces `timeout_seconds` on the ask; we wait on the future with the same deadline, so a
    stalled pump cannot hold a gRPC thread longer either.
    """

    def __init__(
        self,
        runtime: AskingRuntime,
        supervisor_address_provider: Callable[[], Any | None],
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self._runtime = runtime
        self._supervisor_address = supervisor_address_provider
        self._timeout_seconds = timeout_seconds

    def increase_size(self, group_id: str, delta: int) -> None:
        self._ask(lambda request_id: IncreaseSize(request_id, group_id, delta))

    def delete_nodes(self, group_id: str, nodes: tuple[NodeIdentity, ...]) -> None:
        self._ask(lambda request_id: DeleteNodes(request_id, group_id, nodes))

    def decrease_target_size(self, group_id: str, delta: int) -> None:
        self._ask(lambda request_id: DecreaseTargetSize(request_id, group_id, delta))

    def _ask(self, build: Callable[[str], IncreaseSize | DeleteNodes | DecreaseTargetSize]) -> None:
        address = self._supervisor_address()
        if address is None:
            raise MutationUnavailable("this replica is not the leader (yet): no supervisor to take the change")
        message = build(self._runtime.new_request_id())
        future = self._runtime.ask(address, message, self._timeout_seconds, MutationReply)
        try:
            reply: MutationReply = future.result(timeout=self._timeout_seconds)
        except ActorTimeout as error:
            raise MutationTimedOut(f"no answer from the group within {self._timeout_seconds:g} s") from error
        except TimeoutError as error:
            # The runtime missed its own deadline (a stalled pump); make sure the request is not sent late.
            future.cancel()
            raise MutationTimedOut(
                f"the actor runtime did not answer within {self._timeout_seconds:g} s"
            ) from error
        except RuntimeStopped as error:
            raise MutationUnavailable(f"the actor runtime is not running: {error}") from error
        if reply.error is not None:
            raise MutationRefused(reply.error.kind, reply.error.message)
