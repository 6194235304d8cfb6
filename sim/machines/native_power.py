"""Simulated machines powered natively: Wake-on-LAN and an IPMI BMC per machine, on loopback.

A `NativePower` attaches to machines of a running `MachineSimulator` (their handles): one Wake-on-LAN listener
shared by them (each answers its own MAC, as NICs on one segment do) and one emulated IPMI BMC per machine on its
own UDP port (the BMCs run in a child process, `bmc_host`). A magic packet or a BMC's power-on boots the machine
through the same entry point a startup Job's success uses, so it registers its Kubernetes Node exactly like a
Job-powered one; a BMC's soft off shuts it down like a shutdown Job, its hard off cuts the power, and its power status
reads the machine. `spec_for` gives the `spec.power` block that points the operator at them, and
`create_credentials_secret` puts the BMC credentials where that block says.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Final

from kubeapi.kube_client import KubeAlreadyExists, KubeApi
from sim.machines.bmc_host import BmcHost, RemoteBmc
from sim.machines.emulators import WakeOnLanListener
from sim.machines.machine import MachineHandle

LOOPBACK: Final = "127.0.0.1"
CREDENTIALS_SECRET: Final = "simulated-bmc-credentials"
BMC_USER: Final = "power"


def simulated_mac(namespace: str, name: str) -> str:
    """A stable, locally administered MAC address for a simulated machine."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return ":".join(f"{byte:02x}" for byte in (0x02, *digest[:5]))


class NativePower:
    """Wake-on-LAN and IPMI for the given machines of a simulator; use as a context manager."""

    def __init__(self, machines: Iterable[MachineHandle], password: str | None = None) -> None:
        self._handles = list(machines)
        self.password = password or secrets.token_urlsafe(18)
        self.wake_on_lan: WakeOnLanListener | None = None
        self.bmcs: dict[tuple[str, str], RemoteBmc] = {}
        self._bmc_host = BmcHost()

    def start(self) -> NativePower:
        self.wake_on_lan = WakeOnLanListener(LOOPBACK).start()
        self._bmc_host.start()
        for handle in self._handles:
            key = (handle.machine.namespace, handle.name)
            self.wake_on_lan.add(simulated_mac(*key), _waker(handle))
            self.bmcs[key] = self._bmc_host.add(handle, BMC_USER, self.password)
        return self

    def stop(self) -> None:
        self._bmc_host.stop()
        self.bmcs.clear()
        if self.wake_on_lan is not None:
            self.wake_on_lan.stop()
            self.wake_on_lan = None

    def __enter__(self) -> NativePower:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def spec_for(self, name: str, namespace: str) -> dict[str, Any]:
        """The `spec.power` block of machine `namespace/name`: Wake-on-LAN powers on, its BMC powers off and reads
        back (camelCase, as in the Node resource)."""
        bmc = self.bmcs[(namespace, name)]
        assert self.wake_on_lan is not None, "start() first"
        return {
            "wakeOnLan": {
                "macAddress": simulated_mac(namespace, name),
                "broadcastAddress": LOOPBACK,
                "port": self.wake_on_lan.port,
            },
            "ipmi": {"host": LOOPBACK, "port": bmc.port, "credentials": {"name": CREDENTIALS_SECRET}},
        }

    def create_credentials_secret(self, api: KubeApi, namespace: str) -> None:
        """The Secret every simulated BMC's block names, in `namespace` (kept if it exists)."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": CREDENTIALS_SECRET, "namespace": namespace},
            "type": "Opaque",
            "data": {
                "username": base64.b64encode(BMC_USER.encode()).decode(),
                "password": base64.b64encode(self.password.encode()).decode(),
            },
        }
        with contextlib.suppress(KubeAlreadyExists):
            api.post(f"/api/v1/namespaces/{namespace}/secrets", body, what=f"Secret {namespace}/{CREDENTIALS_SECRET}")


def _waker(handle: MachineHandle) -> Callable[[], None]:
    return lambda: handle.command_power_on("Wake-on-LAN magic packet")
