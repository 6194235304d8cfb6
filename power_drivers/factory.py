"""From a `PowerRequest` to a ready driver: which block of `spec.power` serves the action, its credentials (read
now, through the `SecretReader`), and the key that serialises operations on one BMC or host.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from actors.power_port import PowerFailure, PowerRequest
from power_drivers.driver import PowerDriver
from power_drivers.errors import PowerDriverError
from power_drivers.secrets import SecretKeyMissingError, SecretReader
from power_drivers.wake_on_lan import WakeOnLanDriver
from schemas.power import CredentialsSecret, DriverName


def endpoint_key(request: PowerRequest) -> str:
    """What one operation at a time is counted per: the BMC's or host's address (the NIC's MAC for
    Wake-on-LAN, whose broadcast address many machines share); the machine itself when no driver serves."""
    power = request.power
    match request.driver:
        case DriverName.WAKE_ON_LAN if power.wake_on_lan is not None:
            return f"wakeOnLan/{power.wake_on_lan.mac_address.lower().replace('-', ':')}"
        case DriverName.IPMI if power.ipmi is not None:
            return f"ipmi/{power.ipmi.host}:{power.ipmi.port}"
        case DriverName.REDFISH if power.redfish is not None:
            return f"redfish/{urlsplit(power.redfish.endpoint).netloc}"
        case DriverName.SSH if power.ssh is not None:
            return f"ssh/{power.ssh.host}:{power.ssh.port}"
    return f"machine/{request.machine_key}"


def build_driver(request: PowerRequest, secrets: SecretReader, timeout_seconds: float) -> PowerDriver:
    """The driver for this request's action, with its credentials; raises `PowerDriverError` (a missing Secret,
    or no driver for the action).

    The protocol libraries (pyghmi, sushy, asyncssh: ~11 MiB together) are imported on a driver's first use, so an
    operator whose machines use Jobs or Wake-on-LAN alone does not carry them.
    """
    power = request.power
    machine = request.machine_key
    namespace = request.namespace
    match request.driver:
        case DriverName.WAKE_ON_LAN if power.wake_on_lan is not None:
            return WakeOnLanDriver(machine, power.wake_on_lan, timeout_seconds)
        case DriverName.IPMI if power.ipmi is not None:
            from power_drivers.ipmi import IpmiDriver

            username, password = _credentials(secrets, namespace, power.ipmi.credentials)
            return IpmiDriver(machine, power.ipmi, username, password)
        case DriverName.REDFISH if power.redfish is not None:
            from power_drivers.redfish import RedfishDriver

            redfish = power.redfish
            username, password = _credentials(secrets, namespace, redfish.credentials)
            bundle = None
            if redfish.ca_bundle is not None and not redfish.insecure_skip_tls_verify:
                if redfish.ca_bundle.secret_key_ref is not None:
                    reference = redfish.ca_bundle.secret_key_ref
                    bundle = secrets.read(namespace, reference.name, reference.key)
                elif redfish.ca_bundle.config_map_key_ref is not None:
                    reference = redfish.ca_bundle.config_map_key_ref
                    bundle = secrets.read_config_map(namespace, reference.name, reference.key)
            return RedfishDriver(machine, redfish, username, password, timeout_seconds, bundle)
        case DriverName.SSH if power.ssh is not None:
            from power_drivers.ssh import SshDriver

            key = secrets.read(namespace, power.ssh.private_key.name, power.ssh.private_key.key)
            return SshDriver(machine, power.ssh, key, timeout_seconds)
    raise PowerDriverError(PowerFailure.UNSUPPORTED, f"{machine}: spec.power has no driver that can {request.action}")


def _credentials(secrets: SecretReader, namespace: str, reference: CredentialsSecret) -> tuple[str, str]:
    username = secrets.read(namespace, reference.name, reference.username_key)
    password = secrets.read(namespace, reference.name, reference.password_key)
    try:
        return username.decode().strip(), password.decode().rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise SecretKeyMissingError("Secret", namespace, reference.name, "username/password as UTF-8 text") from error
