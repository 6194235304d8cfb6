"""The operator's own exception tree.

Callers outside the actor system (the gRPC gateway, the CLI, tests) should never have to catch a Thespian,
Kubernetes or gRPC exception type to learn what went wrong inside the operator, so every failure that crosses
a layer boundary is one of these. Keeping them in one small module, free of any third-party import, lets every
layer import it without dragging the actor library along.

    OperatorError                 anything the operator itself reports
    ├── ActorTimeout              an ask got no reply before its deadline (the runtime enforces the deadline)
    ├── ActorFailed               the actor could not handle the message: its handler raised on every retry
    │                             and Thespian returned the message as a PoisonMessage, the reply had an
    │                             unexpected type, or the actor could not be created
    └── RuntimeStopped            the actor runtime is not running (never started, stopped, or its pump died)

Other parts extend the tree below `OperatorError` (for example Kubernetes errors in the adapters).
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base of every error the operator reports."""


class ActorTimeout(OperatorError):  # noqa: N818  # names fixed by DESIGN.md and its callers
    """An ask got no reply before its deadline."""

    def __init__(self, message: object, timeout_seconds: float) -> None:
        super().__init__(f"no reply within {timeout_seconds:g} s to {message!r}")
        self.message = message
        self.timeout_seconds = timeout_seconds


class ActorFailed(OperatorError):  # noqa: N818
    """The actor could not handle a message; `details` holds the handler's traceback text when known."""

    def __init__(self, message: object, details: str | None = None, reason: str = "handler failed") -> None:
        super().__init__(f"{reason}: {message!r}")
        self.message = message
        self.details = details
        self.reason = reason


class RuntimeStopped(OperatorError):  # noqa: N818
    """The actor runtime is not running, so it cannot take or finish the request."""
