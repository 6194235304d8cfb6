"""IPMI 2.0 over LAN (RMCP+) through pyghmi: chassis power on, soft off, hard off and power status.

One session per try, logged out at the end: a BMC allows only a few sessions at once, and pyghmi's keep-alive
would otherwise hold one (with the password in memory) for the life of the process. pyghmi gives up on a BMC that
does not answer after its own retransmission schedule (about five seconds); it has no knob for it, so the per-try
timeout of the executor cannot shorten an IPMI try below that.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any, Final

from pyghmi import exceptions as pyghmi_exceptions
from pyghmi.ipmi import command as ipmi_command
from pyghmi.ipmi.private import session as pyghmi_session

from actors.power_port import PowerFailure
from power_drivers.errors import PowerDriverError
from schemas.power import DriverName, Ipmi, PowerState

CREDENTIAL_ERRORS: Final = (
    "incorrect password",
    "unauthorized name",
    "unauthorized role",
    "insufficient privilege",
    "invalid rakp4 integrity",
    "username too long",
    "password is too long",
)
"""pyghmi's messages (lower case) for a BMC that refused the user, its password or its privilege level."""
NO_ANSWER_ERRORS: Final = ("timeout", "session failed to initialize", "no longer connected", "disconnected")


SESSIONS_LOCK: Final = threading.Lock()
"""One IPMI exchange at a time in the process. pyghmi keeps every session (and every emulated BMC) in module-level
state that whichever thread is waiting pumps; with two threads in it at once, answers go to the wrong waiter and a
try hangs until its timeout (seen with four threads on four BMCs: a quarter of the operations finished). A BMC
exchange takes milliseconds, so serialising costs little; a BMC that does not answer holds the others back for
pyghmi's own timeout."""


class IpmiDriver:
    """Power control of one machine through its BMC."""

    def __init__(self, machine: str, spec: Ipmi, username: str, password: str) -> None:
        self._spec = spec
        self._username = username
        self._password = password
        self.label = f"{machine} (ipmi {spec.host}:{spec.port})"

    @property
    def name(self) -> DriverName:
        return DriverName.IPMI

    def power_on(self) -> None:
        self._set_power("on")

    def power_off(self, force: bool) -> None:
        self._set_power("off" if force else "shutdown")

    def read_power_state(self) -> PowerState:
        answer = self._call(lambda session: session.get_power())
        state = answer.get("powerstate") if isinstance(answer, dict) else None
        if state == "on":
            return PowerState.ON
        if state == "off":
            return PowerState.OFF
        raise PowerDriverError(PowerFailure.PROTOCOL_ERROR, f"{self.label}: unexpected power status {state!r}")

    def _set_power(self, state: str) -> None:
        self._call(lambda session: session.set_power(state, wait=False))

    def _call(self, operation: Callable[[Any], object]) -> object:
        with SESSIONS_LOCK:
            return self._call_alone(operation)

    def _call_alone(self, operation: Callable[[Any], object]) -> object:
        session = None
        try:
            session = ipmi_command.Command(
                bmc=self._spec.host.strip("[]"),
                userid=self._username,
                password=self._password,
                port=self._spec.port,
                keepalive=False,
            )
            return operation(session)
        except socket.gaierror as error:
            raise PowerDriverError(PowerFailure.UNREACHABLE, f"{self.label}: cannot resolve: {error}") from error
        except OSError as error:
            raise PowerDriverError(PowerFailure.UNREACHABLE, f"{self.label}: {error.strerror or error}") from error
        except pyghmi_exceptions.IpmiException as error:
            raise self._translate(error) from error
        finally:
            if session is not None:
                _logout(session, (self._spec.host.strip("[]"), self._username, self._password, self._spec.port, None))

    def _translate(self, error: pyghmi_exceptions.IpmiException) -> PowerDriverError:
        text = str(error.args[0]) if error.args and error.args[0] else ""
        lowered = text.lower()
        if any(marker in lowered for marker in CREDENTIAL_ERRORS):
            return PowerDriverError(PowerFailure.CREDENTIALS_REJECTED, f"{self.label}: BMC refused the login: {text}")
        if not text or any(marker in lowered for marker in NO_ANSWER_ERRORS):
            return PowerDriverError(PowerFailure.TIMED_OUT, f"{self.label}: no answer from the BMC")
        return PowerDriverError(PowerFailure.PROTOCOL_ERROR, f"{self.label}: BMC error: {text}")


def _logout(session: ipmi_command.Command, key: tuple[str, str, str, int, None]) -> None:
    ipmi_session = session.ipmi_session
    # A session that never logged in, or a BMC gone meanwhile: nothing is left to release on the BMC's side.
    with contextlib.suppress(pyghmi_exceptions.IpmiException, OSError, AttributeError):
        ipmi_session.logout()
    # pyghmi keeps every session it opened in a class-level table keyed by (bmc, user, password, port, kg) as given and
    # hands that logged-out session to the next Command with the same key, which then fails; dropping the entry
    # also keeps the password out of process-wide state.
    pyghmi_session.Session.initting_sessions.pop(key, None)
