"""The power seam: how a NodeActor asks for a native power operation without doing any I/O itself.

Machines with `spec.power` are switched by the operator's own drivers (`power_drivers`) instead of Jobs. A driver
call takes milliseconds to tens of seconds (a BMC that does not answer), so, like Kubernetes writes, it must never
run on the pump thread or a gRPC thread: the actor describes the operation as a `PowerRequest` and submits it to a
`PowerPort`; the real port (in `power_drivers`) runs it on its own workers and tells the outcome back to
`reply_to` as a `PowerOutcome` message. Tests use a recording fake. Keeping the port a Protocol in its own module
lets actors, the drivers and fakes agree on it without importing one another.

The port's promises, which the actors rely on:

* `submit` returns at once (it only enqueues).
* Exactly one `PowerOutcome` is told for every request, after any retries (`succeeded` False once the request's
  own deadline has passed or a failure is not worth retrying).
* One operation at a time per BMC or host; a request equal to one still queued or running for the same machine
  (same action and attempt) is not run twice: the machine is never double-commanded, and both requests are
  answered with the one outcome.
* Messages never contain credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from schemas.power import DriverName, PowerSpec, PowerState


class PowerAction(StrEnum):
    POWER_ON = "power-on"
    POWER_OFF = "power-off"
    """A graceful power-off (ACPI soft off, Redfish GracefulShutdown, the SSH command)."""
    FORCE_OFF = "force-off"
    """Cut the power (BMC only), after a graceful off did not complete in time."""
    READ_POWER_STATE = "read-power-state"


class PowerFailure(StrEnum):
    """Why an operation failed, as a machine-readable reason (Event and condition reasons derive from it)."""

    SECRET_MISSING = "SecretMissing"
    SECRET_KEY_MISSING = "SecretKeyMissing"
    CREDENTIALS_REJECTED = "CredentialsRejected"
    UNREACHABLE = "Unreachable"
    TIMED_OUT = "TimedOut"
    TLS_VERIFICATION_FAILED = "TlsVerificationFailed"
    HOST_KEY_MISMATCH = "HostKeyMismatch"
    PROTOCOL_ERROR = "ProtocolError"
    """The device answered something we cannot use (unexpected status, malformed reply, no such system)."""
    UNSUPPORTED = "Unsupported"
    """The machine's drivers cannot do this action (e.g. a readback with only Wake-on-LAN and SSH)."""
    SECRET_UNREADABLE = "SecretUnreadable"
    """The API server could not be asked for a Secret the driver needs (unreachable, overloaded)."""
    DRIVERS_UNAVAILABLE = "DriversUnavailable"
    """Nothing ran the request: no power drivers are wired in, or they stopped (the operator is stopping or lost
    its leadership) before its turn came."""

    @property
    def retryable(self) -> bool:
        """Worth trying again within the request's deadline: a transient network or device condition."""
        return self in (
            PowerFailure.UNREACHABLE,
            PowerFailure.TIMED_OUT,
            PowerFailure.PROTOCOL_ERROR,
            PowerFailure.SECRET_UNREADABLE,
        )


@dataclass(frozen=True)
class PowerRequest:
    """One power operation of one machine.

    `machine_key` is `<namespace>/<name>` of the Node resource (its namespace holds the Secrets). `attempt`
    numbers the operation as the FSM numbers power Jobs, so a repeated submit (an actor recreated after a
    restart) is recognisably the same operation. `deadline_seconds` bounds the whole request, retries included.
    """

    machine_key: str
    action: PowerAction
    attempt: int
    power: PowerSpec
    deadline_seconds: float
    reply_to: Any

    @property
    def namespace(self) -> str:
        return self.machine_key.partition("/")[0]

    @property
    def driver(self) -> DriverName | None:
        """The driver that performs this action for this machine (None: none can)."""
        match self.action:
            case PowerAction.POWER_ON:
                return self.power.power_on_driver
            case PowerAction.POWER_OFF:
                return self.power.power_off_driver
            case PowerAction.FORCE_OFF:
                return self.power.force_off_driver
            case PowerAction.READ_POWER_STATE:
                return self.power.readback_driver


@dataclass(frozen=True)
class PowerOutcome:
    """What became of a `PowerRequest`; told to its `reply_to`.

    `observed` is the power state read (only for `READ_POWER_STATE`, when it succeeded). On failure, `failure`
    says why and `message` says it for a person (no credentials, ever).
    """

    machine_key: str
    action: PowerAction
    attempt: int
    driver: DriverName | None
    succeeded: bool
    observed: PowerState | None = None
    failure: PowerFailure | None = None
    message: str = ""
    tries: int = 1


class PowerPort(Protocol):
    """Where actors submit native power operations; see the module docstring for the promises."""

    def submit(self, request: PowerRequest) -> None:
        """Queue the request and return at once."""
