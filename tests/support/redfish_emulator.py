"""A sushy-tools Redfish emulator on a loopback HTTPS port, in a subprocess the context manager stops.

See `tests.support.redfish_emulator_server` for what differs from the stock fake driver (power changes applied at
once, stuck systems, counted commands, in-flight tracking).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TextIO

import bcrypt
import requests

from tests.support.tls import SelfSignedCertificate, self_signed_certificate

STOP_TIMEOUT: Final = 10.0
REPOSITORY: Final = Path(__file__).resolve().parents[2]


Launched = tuple[subprocess.Popen[str], TextIO, SelfSignedCertificate, int]
"""The emulator process (its stdout open for reading), its log file, its certificate and its port."""


def launch(
    folder: Path, module: str, system_ids: Sequence[str], username: str, password: str, extra: Mapping[str, Any]
) -> Launched:
    """Start `python -m MODULE CONFIG.json` (a server built on `redfish_emulator_server.serve`) with one fake system
    per id, all Off, behind HTTP Basic `username`/`password` and a fresh self-signed certificate; `extra` goes into
    its config as it is. Returns once it listens. Stop it with `stop`."""
    folder.mkdir(parents=True, exist_ok=True)
    certificate = self_signed_certificate(folder)
    auth_file = folder / "htpasswd"
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    auth_file.write_text(f"{username}:{digest}\n")
    config = {
        "systems": [
            {"uuid": system_id, "name": f"system-{index}", "power_state": "Off", "external_notifier": False}
            for index, system_id in enumerate(system_ids)
        ],
        "state_dir": str(folder / "state"),
        "auth_file": str(auth_file),
        "cert": str(certificate.certificate_path),
        "key": str(certificate.key_path),
        **extra,
    }
    config_path = folder / "emulator.json"
    config_path.write_text(json.dumps(config))
    log_path = folder / "emulator.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", module, str(config_path)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=REPOSITORY,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        stop(process, log)
        raise RuntimeError(f"the Redfish emulator did not start: {log_path.read_text()}")
    return process, log, certificate, int(line.split()[1])


def stop(process: subprocess.Popen[str] | None, log: TextIO | None) -> None:
    """Stop an emulator `launch` started (killed if it does not end in time) and close its pipe and log."""
    if process is not None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    if log is not None:
        log.close()


@dataclass
class RedfishEmulator:
    """Start with `with RedfishEmulator(folder, ...) as bmc:`; `bmc.endpoint` is its base URL."""

    folder: Path
    username: str = "admin"
    password: str = "redfish-password"
    systems: int = 1
    stuck: tuple[int, ...] = ()
    """Indexes of systems that accept power-on and stay off."""
    hold_seconds: float = 0.0
    system_ids: list[str] = field(default_factory=list)
    certificate: SelfSignedCertificate | None = None
    port: int = 0
    _process: subprocess.Popen[str] | None = None
    _log: TextIO | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> RedfishEmulator:
        self.system_ids = [str(uuid.uuid4()) for _ in range(self.systems)]
        stuck = {"stuck": [self.system_ids[index] for index in self.stuck], "hold": self.hold_seconds}
        launched = launch(
            self.folder, "tests.support.redfish_emulator_server", self.system_ids, self.username, self.password, stuck
        )
        self._process, self._log, self.certificate, self.port = launched
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        stop(self._process, self._log)
        self._process, self._log = None, None

    def stats(self) -> dict[str, Any]:
        """The reset commands received and the most requests ever in flight at once."""
        assert self.certificate is not None
        verify = str(self.certificate.certificate_path)
        answer = requests.get(f"{self.endpoint}/emulator/stats", verify=verify, timeout=5)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def power_state(self, index: int = 0) -> str:
        assert self.certificate is not None
        answer = requests.get(
            f"{self.endpoint}/redfish/v1/Systems/{self.system_ids[index]}",
            auth=(self.username, self.password),
            verify=str(self.certificate.certificate_path),
            timeout=5,
        )
        answer.raise_for_status()
        return str(answer.json()["PowerState"])
