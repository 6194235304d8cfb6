"""What Cluster Autoscaler is told when a call fails: the one table from domain errors to gRPC status codes.

Kept apart from the servicer so that every failure is answered by the same rules and can be read (and tested)
as a table, and so that exactly one function in the code base calls `context.abort`. CA reacts to the codes
differently (see docs/architecture/gateway.md): UNIMPLEMENTED on an optional call means "not offered" and is
never an error to it, while any other code on a hot call can abort its whole loop, which is why hot calls only
ever fail for a bad request or an unknown group.

Errors the servicer raises itself (the mutation errors come from `grpc_gateway.mutations`), a branch of the
operator's tree (`actors.errors`):

    OperatorError
    └── GatewayError
        ├── UnknownGroup     the request names a group that does not exist            → NOT_FOUND
        ├── InvalidRequest   the request itself is wrong (delta sign, empty node list) → INVALID_ARGUMENT
        ├── NotOffered       an optional call we cannot answer honestly               → UNIMPLEMENTED
        └── NotReady         the first inventory is not applied yet (start, standby)  → UNAVAILABLE

Anything not in the table is a bug of ours: INTERNAL, naming the exception type (the servicer logs the
traceback). Without that catch-all grpcio would answer UNKNOWN with no hint at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import grpc

from actors.errors import OperatorError
from actors.messages import ErrorKind
from grpc_gateway.mutations import MutationRefused, MutationTimedOut, MutationUnavailable


class GatewayError(OperatorError):
    """A request the servicer answers with an error status on purpose."""


class UnknownGroup(GatewayError):
    """No group with this id (CA's list may be a loop old, or the group was deleted)."""

    def __init__(self, group_id: str, known: Iterable[str] = ()) -> None:
        known_ids = sorted(known)
        listing = ", ".join(known_ids) if known_ids else "none"
        super().__init__(f"no node group {group_id!r} (known groups: {listing})")
        self.group_id = group_id


class InvalidRequest(GatewayError):
    """The request contradicts the externalgrpc contract (a delta of the wrong sign, no nodes, a bad window)."""


class NotOffered(GatewayError):
    """An optional call with no honest answer here; CA reads UNIMPLEMENTED as "not offered" and carries on."""


class NotReady(GatewayError):
    """The read model holds no complete inventory yet: any answer would be a guess (an empty list means "no groups").

    UNAVAILABLE is what CA's client also sees while the server is down, and it retries on its next loop.
    """

    def __init__(self) -> None:
        super().__init__(
            "the operator has not applied its inventory of Groups and Node resources yet (it is starting, or "
            "this replica is not the leader); retry shortly"
        )


@dataclass(frozen=True)
class Status:
    """A gRPC status code with the message that says what was wrong."""

    code: grpc.StatusCode
    message: str


STATUS_CODES: Final[Mapping[type[Exception] | ErrorKind, grpc.StatusCode]] = {
    # What went wrong                                  What CA is told
    UnknownGroup:                                      grpc.StatusCode.NOT_FOUND,
    InvalidRequest:                                    grpc.StatusCode.INVALID_ARGUMENT,
    NotOffered:                                        grpc.StatusCode.UNIMPLEMENTED,
    NotReady:                                          grpc.StatusCode.UNAVAILABLE,
    # A group refused a mutation (MutationRefused.kind):
    ErrorKind.NOT_FOUND:                               grpc.StatusCode.NOT_FOUND,
    ErrorKind.INVALID_ARGUMENT:                        grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.RESOURCE_EXHAUSTED:                      grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.FAILED_PRECONDITION:                     grpc.StatusCode.FAILED_PRECONDITION,
    # Under way but not stored in time: "may or may not have happened" is what DEADLINE_EXCEEDED means.
    ErrorKind.NOT_STORED:                              grpc.StatusCode.DEADLINE_EXCEEDED,
    # No answer from the actors:
    MutationTimedOut:                                  grpc.StatusCode.DEADLINE_EXCEEDED,
    MutationUnavailable:                               grpc.StatusCode.UNAVAILABLE,
}  # fmt: skip
"""The table. Exceptions are matched by class (subclasses included), refusals by their `ErrorKind`."""


def to_status(error: Exception) -> Status:
    """The status CA gets for `error`: from the table, else INTERNAL naming the exception type. Pure."""
    code = _lookup(error)
    if code is None:
        return Status(
            grpc.StatusCode.INTERNAL,
            f"internal error in the autoscaler gateway ({type(error).__name__}); "
            "the operator log has the traceback",
        )
    return Status(code, str(error) or type(error).__name__)


def is_internal(status: Status) -> bool:
    """True for the catch-all answer to a bug of ours (the caller logs the traceback)."""
    return bool(status.code == grpc.StatusCode.INTERNAL)


def abort(context: Any, status: Status) -> NoReturn:
    """End the call with `status`. The only place that calls `context.abort` (which raises)."""
    context.abort(status.code, status.message)
    raise AssertionError("grpc's context.abort returned instead of raising")  # pragma: no cover


def _lookup(error: Exception) -> grpc.StatusCode | None:
    if isinstance(error, MutationRefused):
        return STATUS_CODES.get(error.kind)
    for error_class in type(error).__mro__:
        code = STATUS_CODES.get(error_class)
        if code is not None:
            return code
    return None
