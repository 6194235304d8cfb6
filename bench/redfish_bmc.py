"""A sushy-tools Redfish BMC for benchmarks that reports the moment each reset command arrives.

The tests' emulator (`tests.support.redfish_emulator_server`: sushy-tools' fake systems driver, power changes
applied at once) holds any number of systems, but it only counts reset commands; a reaction benchmark needs the
arrival time of each one. This wraps the same emulator in a WSGI layer that takes `time.monotonic()` (one
system-wide clock on Linux) as a reset POST comes in, before authentication and the driver, and writes
`RESET <system id> <seconds>` on stdout, and `READ <system id> <seconds>` when a GET of a system has been answered
(so a benchmark can tell when a readback is over); `TimestampingRedfish` starts it in a subprocess over HTTPS and
hands each line to a callback on a thread of its own.

Run by `TimestampingRedfish`: python -m bench.redfish_bmc CONFIG.json  (prints "PORT <n>" once it listens).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TextIO

from tests.support.redfish_emulator import launch, stop
from tests.support.tls import SelfSignedCertificate

RESET_SUFFIX: Final = "/Actions/ComputerSystem.Reset"
SYSTEMS_PREFIX: Final = "/redfish/v1/Systems/"
STOP_TIMEOUT: Final = 10.0


class ResetTimestamps:
    """WSGI layer: `RESET <system> <monotonic seconds>` as a reset POST arrives, `READ <system> <seconds>` once a GET
    of a system has been answered (the last request of a power readback, and the first of a command)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], output: TextIO) -> None:
        self._app = app
        self._output = output
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        arrived = time.monotonic()
        path: str = environ.get("PATH_INFO", "").rstrip("/")
        method = environ.get("REQUEST_METHOD")
        if method == "POST" and path.startswith(SYSTEMS_PREFIX) and path.endswith(RESET_SUFFIX):
            self._write("RESET", path[len(SYSTEMS_PREFIX):-len(RESET_SUFFIX)], arrived)
        body = list(self._app(environ, start_response))
        if method == "GET" and path.startswith(SYSTEMS_PREFIX) and "/" not in path[len(SYSTEMS_PREFIX):]:
            self._write("READ", path[len(SYSTEMS_PREFIX):], time.monotonic())
        return body

    def _write(self, kind: str, system: str, moment: float) -> None:
        with self._lock:
            self._output.write(f"{kind} {system} {moment:.6f}\n")
            self._output.flush()


def serve(config_path: str) -> None:
    """The subprocess: the tests' emulator (sushy-tools, immediate fake driver) behind `ResetTimestamps`."""
    from tests.support.redfish_emulator_server import serve as serve_emulator

    serve_emulator(json.loads(Path(config_path).read_text()), lambda app: ResetTimestamps(app, sys.stdout))


class TimestampingRedfish:
    """One Redfish BMC with `systems` fake systems (all Off) on a loopback HTTPS port; a context manager.

    `on_request(kind, system_id, monotonic_seconds)` is called, on a reader thread, for every reset command received
    (kind "RESET") and every GET of a system answered ("READ").
    """

    def __init__(
        self,
        folder: Path,
        systems: int,
        username: str,
        password: str,
        on_request: Callable[[str, str, float], None],
    ) -> None:
        self.folder = folder
        self.username = username
        self.password = password
        self.system_ids = [str(uuid.uuid4()) for _ in range(systems)]
        self.certificate: SelfSignedCertificate | None = None
        self.port = 0
        self._on_request = on_request
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._log: TextIO | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> TimestampingRedfish:
        launched = launch(self.folder, "bench.redfish_bmc", self.system_ids, self.username, self.password, {})
        self._process, self._log, self.certificate, self.port = launched
        assert self._process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self._process.stdout,), daemon=True,
                                        name="redfish-arrivals")
        self._reader.start()
        return self

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            parts = line.split()
            if len(parts) == 3 and parts[0] in ("RESET", "READ"):
                self._on_request(parts[0], parts[1], float(parts[2]))

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.terminate()  # its stdout ends, so the reader does, before the pipe is closed
            if self._reader is not None:
                self._reader.join(STOP_TIMEOUT)
        stop(self._process, self._log)
        self._process, self._log = None, None


if __name__ == "__main__":
    serve(sys.argv[1])
