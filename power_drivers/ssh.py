"""SSH: power a machine off by running one command (normally a forced command in its authorized_keys).

asyncssh on a private event loop per try (`asyncio.run` on the executor's worker thread: the loop lives and dies
with the try, so no loop is shared between threads). The host key is checked against `knownHosts` only: there is
no trust on first use, and a key that does not match is `HostKeyMismatch`. A machine that powers off tends to
drop the connection before the command's exit status arrives; once the command has started, that counts as
success (the readback, when a BMC exists, tells the truth).
"""

from __future__ import annotations

import asyncio
from typing import Final

import asyncssh

from actors.power_port import PowerFailure
from power_drivers.errors import PowerDriverError
from schemas.power import DriverName, PowerState, Ssh

KEY_TYPE_PREFIXES: Final = ("ssh-", "ecdsa-", "sk-", "rsa-")
MARKERS: Final = ("@cert-authority", "@revoked")


def trusted_keys(
    known_hosts: str,
) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
    """The host keys, CA keys and revoked keys of known_hosts lines (host patterns are not matched: the text
    belongs to this one machine). A line may also be a bare public key (`ssh-ed25519 AAAA...`)."""
    hosts: list[asyncssh.SSHKey] = []
    authorities: list[asyncssh.SSHKey] = []
    revoked: list[asyncssh.SSHKey] = []
    for line in known_hosts.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        target = hosts
        if fields[0] in MARKERS:
            target = authorities if fields[0] == "@cert-authority" else revoked
            fields = fields[1:]
        if fields and not fields[0].startswith(KEY_TYPE_PREFIXES):
            fields = fields[1:]  # the host pattern
        if len(fields) < 2:
            raise ValueError(f"not a known_hosts line: {line.strip()[:60]!r}")
        target.append(asyncssh.import_public_key(f"{fields[0]} {fields[1]}"))
    if not hosts and not authorities:
        raise ValueError("knownHosts holds no host key")
    return hosts, authorities, revoked


class SshDriver:
    """Runs the shutdown command of one machine."""

    def __init__(self, machine: str, spec: Ssh, private_key: bytes, timeout_seconds: float) -> None:
        self._spec = spec
        self._private_key = private_key
        self._timeout = timeout_seconds
        self.label = f"{machine} (ssh {spec.user}@{spec.host}:{spec.port})"

    @property
    def name(self) -> DriverName:
        return DriverName.SSH

    def power_on(self) -> None:
        raise PowerDriverError(PowerFailure.UNSUPPORTED, f"{self.label}: SSH cannot power a machine on")

    def read_power_state(self) -> PowerState:
        raise PowerDriverError(PowerFailure.UNSUPPORTED, f"{self.label}: SSH cannot read the power state")

    def power_off(self, force: bool) -> None:
        if force:
            raise PowerDriverError(PowerFailure.UNSUPPORTED, f"{self.label}: SSH cannot cut the power")
        try:
            key = asyncssh.import_private_key(self._private_key)
        except (asyncssh.KeyImportError, ValueError) as error:
            raise PowerDriverError(
                PowerFailure.SECRET_KEY_MISSING, f"{self.label}: the private key is not a usable key"
            ) from error
        try:
            known = trusted_keys(self._spec.known_hosts)
        except (asyncssh.KeyImportError, ValueError) as error:
            raise PowerDriverError(PowerFailure.HOST_KEY_MISMATCH, f"{self.label}: knownHosts: {error}") from error
        asyncio.run(self._run(key, known))

    async def _run(
        self, key: asyncssh.SSHKey, known: tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]
    ) -> None:
        started = False
        try:
            async with asyncio.timeout(self._timeout):
                async with asyncssh.connect(
                    self._spec.host.strip("[]"),
                    self._spec.port,
                    username=self._spec.user,
                    client_keys=[key],
                    known_hosts=known,
                    agent_path=None,
                    password=None,
                    kbdint_auth=False,
                    config=[],
                    connect_timeout=self._timeout,
                ) as connection:
                    started = True
                    result = await connection.run(self._spec.command, check=False)
        except asyncssh.HostKeyNotVerifiable as error:
            raise PowerDriverError(
                PowerFailure.HOST_KEY_MISMATCH, f"{self.label}: the host key does not match knownHosts"
            ) from error
        except asyncssh.PermissionDenied as error:
            raise PowerDriverError(PowerFailure.CREDENTIALS_REJECTED, f"{self.label}: the key was refused") from error
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionResetError, BrokenPipeError) as error:
            if started:
                return  # the machine went down under the command: what a shutdown looks like
            raise PowerDriverError(PowerFailure.UNREACHABLE, f"{self.label}: connection closed: {error}") from error
        except TimeoutError as error:
            raise PowerDriverError(PowerFailure.TIMED_OUT, f"{self.label}: no answer in time") from error
        except OSError as error:
            raise PowerDriverError(PowerFailure.UNREACHABLE, f"{self.label}: {error.strerror or error}") from error
        except asyncssh.Error as error:
            raise PowerDriverError(PowerFailure.PROTOCOL_ERROR, f"{self.label}: {error.reason}") from error
        if result.exit_status != 0 and not (result.exit_status is None and result.exit_signal is None):
            detail = _first_line(result.stderr)
            raise PowerDriverError(
                PowerFailure.PROTOCOL_ERROR,
                f"{self.label}: the command exited with status {result.exit_status}"
                + (f": {detail}" if detail else ""),
            )


def _first_line(output: object) -> str:
    text = output.decode(errors="replace") if isinstance(output, bytes) else str(output or "")
    return text.strip().splitlines()[0][:200] if text.strip() else ""
