"""Emulated IPMI BMCs in a process of their own, switching power targets that live in this process.

pyghmi keeps its sessions in module-level state; a BMC server and the operator's IPMI client in one process share
it, and answers then reach the wrong session (seen as hung tries and errors from inside pyghmi). So BMCs run in a
child process (`python -m sim.machines.bmc_host`) and reach their machines here through a pipe: every power
command and every power-status question is a JSON line to this process and waits for its answer, so a BMC
reports exactly the state of its simulated machine and a test sees a command counted before the client is told.

Parent to child: {"op": "add", "id", "user", "password"}, {"op": "set", "id", "ignore_power_on", "mute"},
{"op": "answer", "call", "on"}. Child to parent: {"op": "added", "id", "port"}, {"op": "call", "call", "id",
"kind": "status" | "on" | "soft" | "off", "applied"}.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import IO, Any, Final

from sim.machines.emulators import LOOPBACK, EmulatedBmc, PowerTarget

START_TIMEOUT: Final = 30.0
CALL_TIMEOUT: Final = 5.0


class RemoteBmc:
    """This process's view of one BMC of the child: its port, the commands it received, its fault switches."""

    def __init__(self, host: BmcHost, identity: int, target: PowerTarget) -> None:
        self._host = host
        self.identity = identity
        self.target = target
        self.port = 0
        self.commands: list[str] = []
        """"on", "soft" (a soft off) and "off" (a hard off), in the order the BMC received them."""

    def set_faults(self, ignore_power_on: bool = False, mute: bool = False) -> None:
        """`ignore_power_on`: accepts "on" and leaves the machine off. `mute`: answers nothing at all."""
        self._host.send({"op": "set", "id": self.identity, "ignore_power_on": ignore_power_on, "mute": mute})


class BmcHost:
    """Starts the child process; `add` gives each target a BMC on its own loopback UDP port."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self._bmcs: dict[int, RemoteBmc] = {}
        self._added: dict[int, Future[int]] = {}
        self._identities = itertools.count(1)

    def start(self) -> BmcHost:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "sim.machines.bmc_host"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name="bmc-host-reader", daemon=True)
        self._reader.start()
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(CALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._reader is not None:
            self._reader.join()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> BmcHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, target: PowerTarget, username: str, password: str) -> RemoteBmc:
        identity = next(self._identities)
        bmc = RemoteBmc(self, identity, target)
        self._bmcs[identity] = bmc
        added: Future[int] = Future()
        self._added[identity] = added
        self.send({"op": "add", "id": identity, "user": username, "password": password})
        bmc.port = added.result(START_TIMEOUT)
        return bmc

    def send(self, message: dict[str, Any]) -> None:
        assert self._process is not None, "start() first"
        assert self._process.stdin is not None
        with self._write_lock:
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()

    def _read(self) -> None:
        process = self._process
        assert process is not None
        assert process.stdout is not None
        for line in process.stdout:
            message = json.loads(line)
            if message["op"] == "added":
                self._added.pop(message["id"]).set_result(message["port"])
            elif message["op"] == "call":
                self._answer(message)

    def _answer(self, message: dict[str, Any]) -> None:
        bmc = self._bmcs[message["id"]]
        kind = message["kind"]
        if kind != "status":
            bmc.commands.append(kind)
            if message["applied"]:
                if kind == "on":
                    bmc.target.command_power_on("IPMI chassis power on")
                elif kind == "soft":
                    bmc.target.command_shutdown("IPMI chassis soft off")
                else:
                    bmc.target.command_power_cut()
        with self._write_lock:
            if self._process is not None and self._process.stdin is not None and not self._process.stdin.closed:
                self._process.stdin.write(
                    json.dumps({"op": "answer", "call": message["call"], "on": bmc.target.powered_on}) + "\n"
                )
                self._process.stdin.flush()


# ---- the child process ----


class _Parent:
    """The child's side of the pipe: calls that wait for the parent's answer."""

    def __init__(self, output: IO[str]) -> None:
        self._output = output
        self._lock = threading.Lock()
        self._calls = itertools.count(1)
        self._waiting: dict[int, Future[bool]] = {}

    def call(self, identity: int, kind: str, applied: bool = True) -> bool:
        number = next(self._calls)
        answer: Future[bool] = Future()
        self._waiting[number] = answer
        self.write({"op": "call", "call": number, "id": identity, "kind": kind, "applied": applied})
        try:
            return answer.result(CALL_TIMEOUT)
        finally:
            self._waiting.pop(number, None)

    def answered(self, number: int, on: bool) -> None:
        waiting = self._waiting.get(number)
        if waiting is not None:
            waiting.set_result(on)

    def write(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._output.write(json.dumps(message) + "\n")
            self._output.flush()


class _RelayedTarget:
    """A machine that lives in the parent process."""

    def __init__(self, parent: _Parent, identity: int) -> None:
        self._parent = parent
        self._identity = identity

    @property
    def powered_on(self) -> bool:
        return self._parent.call(self._identity, "status")

    def command_power_on(self, source: str) -> None:
        self._parent.call(self._identity, "on")

    def command_shutdown(self, source: str) -> None:
        self._parent.call(self._identity, "soft")

    def command_power_cut(self) -> None:
        self._parent.call(self._identity, "off")


class _RelayingBmc(EmulatedBmc):
    """Reports an ignored power-on to the parent too, so it is counted there."""

    def __init__(self, parent: _Parent, identity: int, username: str, password: str) -> None:
        super().__init__(_RelayedTarget(parent, identity), username, password, LOOPBACK)
        self._parent = parent
        self._identity = identity

    def power_on(self) -> None:
        if self.ignore_power_on:
            self._parent.call(self._identity, "on", applied=False)
            return
        super().power_on()


def main() -> None:
    parent = _Parent(sys.stdout)
    bmcs: dict[int, EmulatedBmc] = {}
    try:
        for line in sys.stdin:
            message = json.loads(line)
            if message["op"] == "answer":
                parent.answered(message["call"], message["on"])
            elif message["op"] == "add":
                bmc = _RelayingBmc(parent, message["id"], message["user"], message["password"]).start()
                bmcs[message["id"]] = bmc
                parent.write({"op": "added", "id": message["id"], "port": bmc.port})
            elif message["op"] == "set":
                bmcs[message["id"]].ignore_power_on = message["ignore_power_on"]
                bmcs[message["id"]].mute = message["mute"]
    finally:
        for bmc in bmcs.values():
            bmc.stop()


if __name__ == "__main__":
    main()
