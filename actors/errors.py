"""The operator's own exception tree.

Callers outside the actor system (the gRPC gateway, the CLI, tests) should never have to catch a Thespian,
Kubernetes or gRPC exception type to learn what went wrong inside the operator, so every failure that crosses
a layer boundary is one of these. Keeping them in one small module, free of any third-party import, lets every
layer import it without dragging the actor library along.

The root and the actor runtime's own errors live here; every other layer extends the tree in its own module,
importing the root from this one (the import-linter contracts in setup.cfg let every layer, the pure core
included, import it):

    OperatorError                 anything the operator itself reports
    ├── ActorTimeout              an ask got no reply before its deadline (the runtime enforces the deadline)
    ├── ActorFailed               the actor could not handle the message: its handler raised on every retry
    │                             and Thespian returned the message as a PoisonMessage, the reply had an
    │                             unexpected type, or the actor could not be created
    ├── RuntimeStopped            the actor runtime is not running (never started, stopped, or its pump died)
    ├── WiringNotFound            no wiring registered under an actor's key (actors.wiring)
    ├── FsmError                  a refusal of the pure state machines (actors.fsm.errors)
    ├── KubeError                 a Kubernetes API call failed, one subclass per kind (kubeapi.kube_client)
    ├── KubeConfigError           no Kubernetes client could be configured (kubeapi.kube_client)
    ├── GatewayError              a request the gRPC servicer answers with an error status (grpc_gateway.errors)
    └── MutationError             a size change that was not made, or not confirmed (grpc_gateway.mutations)

Outside the tree are the test tooling's errors (the simulator's fake API server and control-plane fixture) and
module-local errors that extend the built-in type their callers catch (`ValueError`, `OSError`), such as
`homelab_autoscaler.settings.SettingsError`.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base of every error the operator reports."""


class ActorTimeout(OperatorError):
    """An ask got no reply before its deadline."""

    def __init__(self, message: object, timeout_seconds: float) -> None:
        super().__init__(f"no reply within {timeout_seconds:g} s to {message!r}")
        self.message = message
        self.timeout_seconds = timeout_seconds


class ActorFailed(OperatorError):
    """The actor could not handle a message; `details` holds the handler's traceback text when known."""

    def __init__(self, message: object, details: str | None = None, reason: str = "handler failed") -> None:
        super().__init__(f"{reason}: {message!r}")
        self.message = message
        self.details = details
        self.reason = reason


class RuntimeStopped(OperatorError):
    """The actor runtime is not running, so it cannot take or finish the request."""
