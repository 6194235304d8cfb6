"""Redfish through sushy: system power On, GracefulShutdown, ForceOff, and the system's PowerState.

HTTP Basic authentication on every request rather than a Redfish session: a try is a handful of requests, and a
session would have to be deleted afterwards or it would hold one of the BMC's few session slots until it expires.
TLS is verified by default, against the system's CAs or the `caBundle` given (written to a private temporary
file for the length of the try, since requests takes a path); `insecureSkipTlsVerify` turns verification off.
sushy's own retries are reduced to one attempt: the executor retries, within the request's deadline.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import requests
import sushy
import urllib3
from sushy import auth as sushy_auth
from sushy import exceptions as sushy_exceptions

from actors.power_port import PowerFailure
from power_drivers.errors import PowerDriverError
from schemas.power import DriverName, PowerState, Redfish

SINGLE_ATTEMPT: Final = 1
NO_DELAY: Final = 0.001
"""sushy treats 0 as "use the default" (2 s), so the shortest real delay stands for none."""
Result = TypeVar("Result")


class RedfishDriver:
    """Power control of one machine through its BMC's Redfish service."""

    def __init__(
        self,
        machine: str,
        spec: Redfish,
        username: str,
        password: str,
        timeout_seconds: float,
        ca_bundle: bytes | None = None,
    ) -> None:
        self._spec = spec
        self._username = username
        self._password = password
        self._timeout = timeout_seconds
        self._ca_bundle = ca_bundle
        system = spec.system_id or "the only system"
        self.label = f"{machine} (redfish {spec.endpoint.rstrip('/')}, {system})"

    @property
    def name(self) -> DriverName:
        return DriverName.REDFISH

    def power_on(self) -> None:
        self._reset(sushy.ResetType.ON)

    def power_off(self, force: bool) -> None:
        self._reset(sushy.ResetType.FORCE_OFF if force else sushy.ResetType.GRACEFUL_SHUTDOWN)

    def read_power_state(self) -> PowerState:
        state = self._with_system(lambda system: system.power_state)
        if state in (sushy.PowerState.ON, sushy.PowerState.POWERING_OFF, sushy.PowerState.PAUSED):
            return PowerState.ON
        if state in (sushy.PowerState.OFF, sushy.PowerState.POWERING_ON):
            # Powering on is not on yet: the FSM waits for "On" before it counts a boot as started.
            return PowerState.OFF
        raise PowerDriverError(PowerFailure.PROTOCOL_ERROR, f"{self.label}: unexpected PowerState {state!r}")

    def _reset(self, reset_type: sushy.ResetType) -> None:
        self._with_system(lambda system: system.reset_system(reset_type))

    def _with_system(self, operation: Callable[[Any], Result]) -> Result:
        with self._verification() as verify:
            try:
                root = sushy.Sushy(
                    self._spec.endpoint.rstrip("/"),
                    auth=sushy_auth.BasicAuth(username=self._username, password=self._password),
                    verify=verify,
                    server_side_retries=SINGLE_ATTEMPT,
                    server_side_retries_delay=NO_DELAY,
                    read_timeout=self._timeout,
                    connect_timeout=self._timeout,
                )
                return operation(self._system(root))
            except sushy_exceptions.SushyError as error:
                raise self._translate(error) from error
            except (requests.RequestException, urllib3.exceptions.HTTPError, ValueError) as error:
                raise PowerDriverError(
                    PowerFailure.PROTOCOL_ERROR, f"{self.label}: malformed answer ({type(error).__name__})"
                ) from error

    def _system(self, root: sushy.Sushy) -> Any:
        if self._spec.system_id is not None:
            return root.get_system(f"{root.get_system_collection().path.rstrip('/')}/{self._spec.system_id}")
        members = root.get_system_collection().members_identities
        if len(members) != 1:
            raise PowerDriverError(
                PowerFailure.PROTOCOL_ERROR,
                f"{self.label}: the BMC has {len(members)} systems; set systemId to one of "
                + ", ".join(sorted(member.rstrip("/").rpartition("/")[2] for member in members)),
            )
        return root.get_system(members[0])

    @contextmanager
    def _verification(self) -> Iterator[bool | str]:
        if self._spec.insecure_skip_tls_verify:
            yield False
            return
        if self._ca_bundle is None:
            yield True
            return
        descriptor, path = tempfile.mkstemp(prefix="redfish-ca-", suffix=".pem")  # mode 0600
        try:
            with os.fdopen(descriptor, "wb") as bundle:
                bundle.write(self._ca_bundle)
            yield path
        finally:
            os.unlink(path)

    def _translate(self, error: sushy_exceptions.SushyError) -> PowerDriverError:
        if isinstance(error, sushy_exceptions.AccessError):
            return PowerDriverError(
                PowerFailure.CREDENTIALS_REJECTED,
                f"{self.label}: the BMC refused the credentials (HTTP {error.status_code})",
            )
        if isinstance(error, sushy_exceptions.ResourceNotFoundError):
            return PowerDriverError(PowerFailure.PROTOCOL_ERROR, f"{self.label}: no such system")
        if isinstance(error, sushy_exceptions.HTTPError):
            return PowerDriverError(
                PowerFailure.PROTOCOL_ERROR, f"{self.label}: the BMC answered HTTP {error.status_code}"
            )
        if isinstance(error, sushy_exceptions.ConnectionError):
            cause = error.__context__
            if isinstance(cause, requests.exceptions.SSLError):
                return PowerDriverError(
                    PowerFailure.TLS_VERIFICATION_FAILED,
                    f"{self.label}: TLS verification failed: {_ssl_reason(cause)}; give caBundle (or, "
                    "knowingly, insecureSkipTlsVerify)",
                )
            if isinstance(cause, requests.exceptions.Timeout):
                return PowerDriverError(PowerFailure.TIMED_OUT, f"{self.label}: the BMC did not answer in time")
            return PowerDriverError(PowerFailure.UNREACHABLE, f"{self.label}: cannot connect to the BMC")
        return PowerDriverError(PowerFailure.PROTOCOL_ERROR, f"{self.label}: {type(error).__name__}")


def _ssl_reason(error: BaseException) -> str:
    text = str(error)
    for reason in ("self-signed certificate", "certificate has expired", "hostname mismatch", "unable to get local"):
        if reason in text:
            return reason.replace("unable to get local", "unknown issuer")
    return "certificate not trusted"
