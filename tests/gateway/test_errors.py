"""From what went wrong to what CA is told: the status table, and how `ActorMutations` turns the actor runtime's
outcomes (reply, refusal, timeout, stop, no leader) into the mutation errors that table knows. No server here:
the runtime is a stand-in that hands back futures in a chosen state.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import grpc
import pytest

from actors.errors import ActorFailed, ActorTimeout, OperatorError, RuntimeStopped
from actors.messages import (
    DecreaseTargetSize,
    DeleteNodes,
    ErrorKind,
    IncreaseSize,
    MutationRefusal,
    MutationReply,
    NodeIdentity,
)
from grpc_gateway import errors
from grpc_gateway.errors import GatewayError, InvalidRequest, NotOffered, NotReady, UnknownGroup
from grpc_gateway.mutations import (
    ActorMutations,
    MutationError,
    MutationRefused,
    MutationTimedOut,
    MutationUnavailable,
)

Code = grpc.StatusCode


# ---- the status table ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "want_code", "want_message"),
    [
        pytest.param(
            UnknownGroup("lab/nope", ["lab/b", "lab/a"]),
            Code.NOT_FOUND,
            "no node group 'lab/nope' (known groups: lab/a, lab/b)",
            id="unknown-group-lists-the-known-ones",
        ),
        pytest.param(UnknownGroup("x"), Code.NOT_FOUND, "no node group 'x' (known groups: none)", id="no-groups"),
        pytest.param(InvalidRequest("delta must be negative"), Code.INVALID_ARGUMENT, "delta must be negative",
                     id="invalid-request"),
        pytest.param(NotOffered("pod pricing is not offered"), Code.UNIMPLEMENTED, "pod pricing is not offered",
                     id="not-offered"),
        pytest.param(MutationRefused(ErrorKind.NOT_FOUND, "no group lab/x"), Code.NOT_FOUND, "no group lab/x",
                     id="refused-not-found"),
        pytest.param(MutationRefused(ErrorKind.INVALID_ARGUMENT, "w-1 is in lab/workers"), Code.INVALID_ARGUMENT,
                     "w-1 is in lab/workers", id="refused-invalid-argument"),
        pytest.param(MutationRefused(ErrorKind.RESOURCE_EXHAUSTED, "only 1 of 3 eligible"),
                     Code.RESOURCE_EXHAUSTED, "only 1 of 3 eligible", id="refused-resource-exhausted"),
        pytest.param(MutationRefused(ErrorKind.FAILED_PRECONDITION, "gpu-1 in maintenance"),
                     Code.FAILED_PRECONDITION, "gpu-1 in maintenance", id="refused-failed-precondition"),
        pytest.param(MutationTimedOut("no answer within 4 s"), Code.DEADLINE_EXCEEDED, "no answer within 4 s",
                     id="timed-out"),
        pytest.param(MutationUnavailable("not the leader"), Code.UNAVAILABLE, "not the leader", id="unavailable"),
        pytest.param(
            ZeroDivisionError("division by zero"),
            Code.INTERNAL,
            "internal error in the autoscaler gateway (ZeroDivisionError); the operator log has the traceback",
            id="bug-is-internal-and-names-the-type",
        ),
    ],
)  # fmt: skip
def test_status_table(error: Exception, want_code: grpc.StatusCode, want_message: str) -> None:
    assert errors.to_status(error) == errors.Status(want_code, want_message)


def test_subclasses_of_a_listed_error_get_its_code() -> None:
    class NoSuchGpuGroup(UnknownGroup):
        pass

    assert errors.to_status(NoSuchGpuGroup("lab/gpu")).code == Code.NOT_FOUND


@pytest.mark.parametrize(
    ("error_class", "branch"),
    [
        (UnknownGroup, GatewayError),
        (InvalidRequest, GatewayError),
        (NotOffered, GatewayError),
        (NotReady, GatewayError),
        (MutationRefused, MutationError),
        (MutationTimedOut, MutationError),
        (MutationUnavailable, MutationError),
    ],
    ids=lambda value: value.__name__,
)
def test_the_gateway_errors_are_branches_of_the_operator_tree(error_class: type, branch: type) -> None:
    assert issubclass(error_class, branch)
    assert issubclass(branch, OperatorError)


def test_the_root_of_the_tree_is_not_in_the_table() -> None:
    # Only the listed classes get a code; an OperatorError that nobody mapped is still a bug of ours.
    assert errors.to_status(OperatorError("unmapped")).code == Code.INTERNAL


@pytest.mark.parametrize("kind", list(ErrorKind), ids=lambda kind: str(kind))
def test_every_refusal_kind_has_its_code(kind: ErrorKind) -> None:
    status = errors.to_status(MutationRefused(kind, "why"))

    assert status.code.name == {
        ErrorKind.NOT_FOUND: "NOT_FOUND",
        ErrorKind.INVALID_ARGUMENT: "INVALID_ARGUMENT",
        ErrorKind.RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED",
        ErrorKind.FAILED_PRECONDITION: "FAILED_PRECONDITION",
        ErrorKind.NOT_STORED: "DEADLINE_EXCEEDED",  # under way, not stored: it may or may not survive
    }[kind]
    assert status.message == "why"


class AbortedCallError(Exception):
    pass


class RecordingContext:
    def __init__(self) -> None:
        self.aborted_with: list[tuple[grpc.StatusCode, str]] = []

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted_with.append((code, details))
        raise AbortedCallError  # grpcio's abort raises too, so nothing after it runs


def test_abort_ends_the_call_with_the_status() -> None:
    context = RecordingContext()

    with pytest.raises(AbortedCallError):
        errors.abort(context, errors.Status(Code.NOT_FOUND, "no node group 'x'"))

    assert context.aborted_with == [(Code.NOT_FOUND, "no node group 'x'")]


# ---- ActorMutations: the runtime's outcomes as mutation errors -----------------------------------------


class StandInRuntime:
    """Hands back one future per ask, resolved by `settle` (or left pending to play a stalled pump)."""

    def __init__(self, settle: Any) -> None:
        self.settle = settle
        self.asked: list[tuple[Any, Any, float, type[Any]]] = []
        self.futures: list[Future[Any]] = []
        self._counter = 0

    def new_request_id(self) -> str:
        self._counter += 1
        return f"request-{self._counter}"

    def ask(self, address: Any, message: Any, timeout: float, reply_type: type[MutationReply]) -> Future[Any]:
        self.asked.append((address, message, timeout, reply_type))
        future: Future[Any] = Future()
        self.settle(future, message)
        self.futures.append(future)
        return future


def reply_ok(future: Future[Any], message: Any) -> None:
    future.set_result(MutationReply(message.request_id))


def reply_refused(future: Future[Any], message: Any) -> None:
    future.set_result(MutationReply(message.request_id, MutationRefusal(ErrorKind.RESOURCE_EXHAUSTED, "only 1 left")))


def fail_with(error: Exception) -> Any:
    def settle(future: Future[Any], message: Any) -> None:
        future.set_exception(error)

    return settle


def never_answer(future: Future[Any], message: Any) -> None:
    pass


SUPERVISOR = object()


@pytest.mark.parametrize(
    ("settle", "want_error", "want_fragment"),
    [
        pytest.param(reply_ok, None, "", id="reply-without-error"),
        pytest.param(reply_refused, MutationRefused, "only 1 left", id="reply-with-error-is-refused"),
        pytest.param(
            fail_with(ActorTimeout("IncreaseSize", 0.05)), MutationTimedOut, "no answer from the group within 0.05 s",
            id="runtime-deadline",
        ),
        pytest.param(
            never_answer, MutationTimedOut, "actor runtime did not answer within 0.05 s", id="stalled-pump",
        ),
        pytest.param(
            fail_with(RuntimeStopped("runtime stopped")), MutationUnavailable, "actor runtime is not running",
            id="runtime-stopped",
        ),
    ],
)  # fmt: skip
def test_actor_mutation_outcomes(settle: Any, want_error: type[Exception] | None, want_fragment: str) -> None:
    runtime = StandInRuntime(settle)
    mutations = ActorMutations(runtime, lambda: SUPERVISOR, timeout_seconds=0.05)

    if want_error is None:
        mutations.increase_size("lab/gpu", 2)
    else:
        with pytest.raises(want_error, match=want_fragment):
            mutations.increase_size("lab/gpu", 2)

    assert runtime.asked == [(SUPERVISOR, IncreaseSize("request-1", "lab/gpu", 2), 0.05, MutationReply)]


def test_a_refusal_keeps_its_kind() -> None:
    mutations = ActorMutations(StandInRuntime(reply_refused), lambda: SUPERVISOR)

    with pytest.raises(MutationRefused) as refused:
        mutations.delete_nodes("lab/gpu", (NodeIdentity("gpu-1", "homelab://lab/gpu-1"),))

    assert refused.value.kind is ErrorKind.RESOURCE_EXHAUSTED


def test_a_stalled_request_is_withdrawn_so_it_never_runs_late() -> None:
    runtime = StandInRuntime(never_answer)

    with pytest.raises(MutationTimedOut):
        ActorMutations(runtime, lambda: SUPERVISOR, timeout_seconds=0.01).decrease_target_size("lab/gpu", -1)

    assert runtime.futures[0].cancelled()


def test_a_handler_crash_is_not_dressed_up_as_a_refusal() -> None:
    # It reaches the servicer's catch-all (INTERNAL, traceback logged) instead of a misleading code.
    crashed = fail_with(ActorFailed("IncreaseSize", "Traceback ..."))
    mutations = ActorMutations(StandInRuntime(crashed), lambda: SUPERVISOR)

    with pytest.raises(ActorFailed):
        mutations.increase_size("lab/gpu", 1)


def test_without_a_supervisor_nothing_is_asked() -> None:
    runtime = StandInRuntime(reply_ok)

    with pytest.raises(MutationUnavailable, match="not the leader"):
        ActorMutations(runtime, lambda: None).increase_size("lab/gpu", 1)

    assert runtime.asked == []


@pytest.mark.parametrize(
    ("call", "want_message"),
    [
        pytest.param(
            lambda port: port.increase_size("lab/gpu", 2), IncreaseSize("request-1", "lab/gpu", 2), id="increase"
        ),
        pytest.param(
            lambda port: port.delete_nodes("lab/gpu", (NodeIdentity("gpu-1", "homelab://lab/gpu-1"),)),
            DeleteNodes("request-1", "lab/gpu", (NodeIdentity("gpu-1", "homelab://lab/gpu-1"),)),
            id="delete",
        ),
        pytest.param(
            lambda port: port.decrease_target_size("lab/gpu", -1),
            DecreaseTargetSize("request-1", "lab/gpu", -1),
            id="decrease",
        ),
    ],
)
def test_each_change_is_one_ask_with_a_fresh_request_id(call: Any, want_message: Any) -> None:
    runtime = StandInRuntime(reply_ok)

    call(ActorMutations(runtime, lambda: SUPERVISOR))

    assert [message for _address, message, _timeout, _reply_type in runtime.asked] == [want_message]


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ActorMutations(StandInRuntime(reply_ok), lambda: SUPERVISOR, timeout_seconds=0)
