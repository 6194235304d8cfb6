"""Power devices a simulated machine can be switched through: an IPMI BMC and a Wake-on-LAN listener.

Both speak the real protocols on loopback, so the operator's native drivers (`power_drivers`) reach a simulated
machine exactly as they reach a real one. They act on a `PowerTarget` (the simulator's machine handle, or a plain
switch in tests) and count the commands they received, so a test can say "powered on exactly once".

The BMC is pyghmi's server class. pyghmi runs every session of the process, client and server, on one module-level
I/O loop; `IpmiServerLoop` is the one thread that pumps it for all BMCs of the process, started with the first BMC
and stopped with the last. A BMC must not share its process with the operator's IPMI client (pyghmi's shared
state then misroutes answers): `sim.machines.bmc_host` runs BMCs in a child process for that reason.

pyghmi's server also answers every RMCP+ open-session request with cipher suite 3 (HMAC-SHA1) whatever the client
asked for, while pyghmi's client first asks for suite 17 (SHA-256) and only falls back to SHA1 when refused;
`_Sha1OnlySession` refuses the SHA-256 request as a real suite-3-only BMC would, and answers an unknown user name
with a refusal instead of silence, as real BMCs do.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Final, Protocol

from pyghmi.ipmi import bmc as pyghmi_bmc
from pyghmi.ipmi.private import constants, serversession
from pyghmi.ipmi.private import session as pyghmi_session

from power_drivers.ipmi import SESSIONS_LOCK

logger = logging.getLogger(__name__)

LOOPBACK: Final = "127.0.0.1"
RAKP_HMAC_SHA1: Final = 1
NO_CIPHER_SUITE_MATCH: Final = 0x11
UNAUTHORIZED_NAME: Final = 0x0D
IPMI_PAYLOAD: Final = 6
OPEN_SESSION_REQUEST: Final = 16
LOOP_TICK: Final = 0.1
PUMP_SLICE: Final = 0.01
PUMP_PAUSE: Final = 0.0005
"""Seconds the BMC loop holds pyghmi's loop, then leaves it to a waiting driver."""
MAGIC_SYNC: Final = b"\xff" * 6
MAGIC_LENGTH: Final = 102


class PowerTarget(Protocol):
    """What a power device switches."""

    @property
    def powered_on(self) -> bool: ...

    def command_power_on(self, source: str) -> None: ...

    def command_shutdown(self, source: str) -> None: ...

    def command_power_cut(self) -> None: ...


class _Sha1OnlySession(serversession.ServerSession):  # type: ignore[misc]
    def create_open_session_response(self, request: bytes) -> Any:
        if request[12] != RAKP_HMAC_SHA1:
            return bytearray([request[0], NO_CIPHER_SUITE_MATCH, 0, 0]) + request[4:8]
        return super().create_open_session_response(request)

    def _got_rakp1(self, data: bytearray) -> None:
        # pyghmi's server stays silent for a user it does not know; a real BMC answers "unauthorized name".
        if data[27] and self.authdata.get(bytes(data[28:]).decode("utf-8", "replace")) is None:
            self.send_payload(
                bytearray([data[0], UNAUTHORIZED_NAME, 0, 0]) + self.clientsessionid,
                constants.payload_types["rakp2"],
                retry=False,
            )
            return
        super()._got_rakp1(data)


class IpmiServerLoop:
    """The one thread pumping pyghmi's I/O loop for every emulated BMC of the process (reference counted)."""

    _lock: ClassVar = threading.Lock()
    _users: ClassVar = 0
    _thread: ClassVar[threading.Thread | None] = None
    _stop: ClassVar = threading.Event()

    @classmethod
    def acquire(cls) -> None:
        with cls._lock:
            cls._users += 1
            if cls._thread is None:
                cls._stop = threading.Event()
                cls._thread = threading.Thread(target=cls._pump, args=(cls._stop,), name="ipmi-bmc-loop", daemon=True)
                cls._thread.start()

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users > 0 or cls._thread is None:
                return
            thread, cls._thread = cls._thread, None
            cls._stop.set()
        thread.join()

    @staticmethod
    def _pump(stop: threading.Event) -> None:
        # Only one thread may be inside pyghmi's loop at a time (see power_drivers.ipmi.SESSIONS_LOCK): while an
        # IPMI driver in this process holds the lock, its own waiting pumps the BMCs' sockets too.
        while not stop.is_set():
            with SESSIONS_LOCK:
                try:
                    pyghmi_session.Session.wait_for_rsp(PUMP_SLICE)
                except Exception:  # one malformed packet must not stop every BMC
                    logger.exception("emulated BMC: pyghmi's loop raised")
            stop.wait(PUMP_PAUSE)


class EmulatedBmc(pyghmi_bmc.Bmc):  # type: ignore[misc]
    """An IPMI 2.0 BMC on a loopback UDP port with one user, switching a `PowerTarget`.

    `ignore_power_on` makes it a BMC that accepts "on" and leaves the machine off; `mute` makes it drop every
    packet, like a BMC that hung.
    """

    def __init__(self, target: PowerTarget, username: str, password: str, address: str = "127.0.0.1", port: int = 0):
        if port == 0:
            port = _free_udp_port(address)
        super().__init__({username: password}, port=port, address=address)
        self.target = target
        self.address = address
        self.ignore_power_on = False
        self.mute = False
        self.commands: list[str] = []
        self._started = False

    def start(self) -> EmulatedBmc:
        IpmiServerLoop.acquire()
        self._started = True
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        sockets = pyghmi_session.iosockets
        with contextlib.suppress(ValueError):
            sockets.remove(self.serversocket)
        pyghmi_session.Session.bmc_handlers.pop(self.serversocket, None)
        IpmiServerLoop.release()
        self.serversocket.close()

    def __enter__(self) -> EmulatedBmc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- pyghmi's hooks ----

    def sessionless_data(self, data: bytes, sockaddr: Any) -> None:
        if self.mute:
            return
        raw = bytearray(data)
        opening = len(raw) >= 22 and raw[0] == 6 and raw[2:4] == b"\xff\x07" and raw[4] == IPMI_PAYLOAD
        if opening and raw[5] == OPEN_SESSION_REQUEST:
            _Sha1OnlySession(self.authdata, self.kg, sockaddr, self.serversocket, raw[16:], self.uuid, bmc=self)
            return
        super().sessionless_data(data, sockaddr)

    def get_power_state(self) -> str:
        return "on" if self.target.powered_on else "off"

    def power_on(self) -> None:
        self.commands.append("on")
        if not self.ignore_power_on:
            self.target.command_power_on("IPMI chassis power on")

    def power_shutdown(self) -> None:
        self.commands.append("soft")
        self.target.command_shutdown("IPMI chassis soft off")

    def power_off(self) -> None:
        self.commands.append("off")
        self.target.command_power_cut()


class WakeOnLanListener:
    """A UDP listener that wakes the target whose MAC a valid magic packet carries; others are ignored."""

    def __init__(self, address: str = "127.0.0.1", port: int = 0) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((address, port))
        self._socket.settimeout(LOOP_TICK)
        self.address = address
        self.port: int = self._socket.getsockname()[1]
        self._targets: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self.packets: list[str] = []
        """The MAC of every valid magic packet received, in order."""
        self.rejected = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name=f"wake-on-lan-{self.port}", daemon=True)

    def add(self, mac_address: str, wake: Callable[[], None]) -> None:
        with self._lock:
            self._targets[normalise_mac(mac_address)] = wake

    def start(self) -> WakeOnLanListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._socket.close()

    def __enter__(self) -> WakeOnLanListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self._socket.recv(1024)
            except TimeoutError:
                continue
            except OSError:
                return
            mac = magic_packet_target(packet)
            with self._lock:
                if mac is None:
                    self.rejected += 1
                    continue
                self.packets.append(mac)
                wake = self._targets.get(mac)
            if wake is not None:
                wake()


def normalise_mac(mac_address: str) -> str:
    return mac_address.lower().replace("-", ":")


def magic_packet_target(packet: bytes) -> str | None:
    """The MAC a magic packet wakes (lower case, colons), or None for anything else."""
    if len(packet) != MAGIC_LENGTH or not packet.startswith(MAGIC_SYNC):
        return None
    mac = packet[6:12]
    if packet[6:] != mac * 16:
        return None
    return ":".join(f"{byte:02x}" for byte in struct.unpack("6B", mac))


def _free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port
