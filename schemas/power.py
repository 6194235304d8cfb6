"""The native power drivers a Node may name in `spec.power`: what each needs to reach a machine.

A machine is powered either by Jobs (`startupJob`/`shutdownJob`: any container the user writes) or natively by
the operator itself through these drivers, which also read back whether the machine is really on. Each driver
block only says where the machine's NIC, BMC or SSH daemon is and which Secret holds its credentials; secrets
never appear in the resource. The combination rules (which driver powers on, which powers off, which reads back)
live here too, so the CRD rules, the webhook, the state machine and the power adapter agree on one answer.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import Field

from schemas.common import DNS_SUBDOMAIN_PATTERN, Duration, Model

MAC_ADDRESS_PATTERN: Final = r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$"
HOST_PATTERN: Final = r"^[A-Za-z0-9.:\[\]-]+$"
"""A DNS name, an IPv4 address or an IPv6 address (bracketed or not); no scheme, path or port."""


class PowerState(StrEnum):
    """What a readback says of a machine's power."""

    ON = "On"
    OFF = "Off"


class DriverName(StrEnum):
    """The drivers, by the name of their block in `spec.power` (also the `driver` label of their metrics)."""

    WAKE_ON_LAN = "wakeOnLan"
    IPMI = "ipmi"
    REDFISH = "redfish"
    SSH = "ssh"


class SecretKeySelector(Model):
    """One key of a Secret in the Node's namespace."""

    name: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, description="Secret name, in the Node's namespace.")
    key: str = Field(min_length=1, description="Key within the Secret.")


class CredentialsSecret(Model):
    """A Secret in the Node's namespace holding a user name and a password."""

    name: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, description="Secret name, in the Node's namespace.")
    username_key: str = Field(default="username", min_length=1, description="Key holding the user name.")
    password_key: str = Field(default="password", min_length=1, description="Key holding the password.")


class CertificateAuthorityReference(Model):
    """A PEM bundle of CA certificates to trust, from a Secret or a ConfigMap key (exactly one of the two)."""

    secret_key_ref: SecretKeySelector | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: SecretKeySelector | None = Field(
        default=None, description="A key of a ConfigMap (same shape: name and key)."
    )


class WakeOnLan(Model):
    """Power on by a Wake-on-LAN magic packet (UDP broadcast); cannot power off or read back."""

    mac_address: str = Field(pattern=MAC_ADDRESS_PATTERN, description="MAC address of the NIC to wake.")
    broadcast_address: str = Field(
        default="255.255.255.255",
        pattern=HOST_PATTERN,
        description="Where the packet is sent: the limited broadcast, a subnet's broadcast, or a relay's address.",
    )
    port: int = Field(default=9, ge=1, le=65535, description="UDP port (9, discard, by convention; 7 also works).")


class Ipmi(Model):
    """A BMC speaking IPMI 2.0 over LAN (RMCP+): power on, soft then hard off, chassis power readback."""

    host: str = Field(pattern=HOST_PATTERN, description="BMC address.")
    port: int = Field(default=623, ge=1, le=65535, description="RMCP+ UDP port.")
    credentials: CredentialsSecret = Field(description="BMC user with power-control rights.")
    force_off_after: Duration = Field(
        default="2m", description="A soft power-off not seen complete this long is followed by a hard power-off."
    )


class Redfish(Model):
    """A BMC speaking Redfish (iDRAC, iLO, XClarity, OpenBMC, Supermicro): on, graceful off, forced off, readback."""

    endpoint: str = Field(
        pattern=r"^https?://[^/\s]+/?$", description="Base URL of the BMC, e.g. https://10.0.0.5 (no path)."
    )
    system_id: str | None = Field(
        default=None,
        min_length=1,
        description="The ComputerSystem's id (the last part of /redfish/v1/Systems/<id>); when unset, the BMC's "
        "only system.",
    )
    credentials: CredentialsSecret = Field(description="BMC user with power-control rights.")
    insecure_skip_tls_verify: bool = Field(
        default=False, description="Accept any certificate. Off by default; prefer caBundle for self-signed BMCs."
    )
    ca_bundle: CertificateAuthorityReference | None = Field(
        default=None, description="CA certificates to verify the BMC's certificate with, instead of the system's."
    )
    force_off_after: Duration = Field(
        default="2m", description="A graceful shutdown not seen complete this long is followed by a forced off."
    )


class Ssh(Model):
    """Power off by running a command over SSH; cannot power on or read back (pair it with wakeOnLan)."""

    host: str = Field(pattern=HOST_PATTERN, description="Address of the machine.")
    port: int = Field(default=22, ge=1, le=65535, description="SSH port.")
    user: str = Field(min_length=1, description="User to log in as.")
    private_key: SecretKeySelector = Field(description="The private key (OpenSSH or PEM format).")
    known_hosts: str = Field(
        min_length=1,
        description="The machine's host key as a known_hosts line (`host ssh-ed25519 AAAA...`): required, there "
        "is no trust on first use.",
    )
    command: str = Field(
        default="sudo systemctl poweroff",
        min_length=1,
        description="The command that powers the machine off (a forced command in authorized_keys overrides it).",
    )


class PowerSpec(Model):
    """Native power control: one driver that powers on, one that powers off (possibly the same BMC).

    Allowed: `ipmi` alone, `redfish` alone, `wakeOnLan` with `ssh`, `wakeOnLan` with `ipmi` or `redfish` (the BMC
    then powers off and reads back), a BMC with `ssh` (SSH powers off gracefully, the BMC powers on and reads
    back). At most one BMC.
    """

    wake_on_lan: WakeOnLan | None = Field(default=None, description="Power on by Wake-on-LAN.")
    ipmi: Ipmi | None = Field(default=None, description="Power on, off and read back through IPMI.")
    redfish: Redfish | None = Field(default=None, description="Power on, off and read back through Redfish.")
    ssh: Ssh | None = Field(default=None, description="Power off by an SSH command.")

    @property
    def bmc(self) -> DriverName | None:
        """The BMC driver named, if any."""
        if self.ipmi is not None:
            return DriverName.IPMI
        if self.redfish is not None:
            return DriverName.REDFISH
        return None

    @property
    def power_on_driver(self) -> DriverName | None:
        """Which driver powers the machine on: Wake-on-LAN when given, else the BMC."""
        return DriverName.WAKE_ON_LAN if self.wake_on_lan is not None else self.bmc

    @property
    def power_off_driver(self) -> DriverName | None:
        """Which driver powers the machine off gracefully: SSH when given, else the BMC."""
        return DriverName.SSH if self.ssh is not None else self.bmc

    @property
    def force_off_driver(self) -> DriverName | None:
        """Which driver can cut the power when a graceful off does not complete: only a BMC can."""
        return self.bmc

    @property
    def readback_driver(self) -> DriverName | None:
        """Which driver reads the power state back: only a BMC can."""
        return self.bmc

    def problems(self) -> tuple[str, ...]:
        """Why this combination cannot power a machine, one message per problem (empty when it can)."""
        found: list[str] = []
        if self.ipmi is not None and self.redfish is not None:
            found.append("spec.power: name at most one BMC (ipmi or redfish), not both")
        if self.power_on_driver is None:
            found.append("spec.power: nothing can power the machine on: add wakeOnLan, ipmi or redfish")
        if self.power_off_driver is None:
            found.append("spec.power: nothing can power the machine off: add ssh, ipmi or redfish")
        if self.redfish is not None and self.redfish.ca_bundle is not None:
            bundle = self.redfish.ca_bundle
            if (bundle.secret_key_ref is None) == (bundle.config_map_key_ref is None):
                found.append("spec.power.redfish.caBundle: set exactly one of secretKeyRef and configMapKeyRef")
        return tuple(found)

    def secret_names(self) -> tuple[str, ...]:
        """The Secrets the drivers read (RBAC must allow `get` on exactly these), sorted, without repeats."""
        names: set[str] = set()
        for bmc in (self.ipmi, self.redfish):
            if bmc is not None:
                names.add(bmc.credentials.name)
        bundle = self.redfish.ca_bundle if self.redfish is not None else None
        if bundle is not None and bundle.secret_key_ref is not None:
            names.add(bundle.secret_key_ref.name)
        if self.ssh is not None:
            names.add(self.ssh.private_key.name)
        return tuple(sorted(names))
