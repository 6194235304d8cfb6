"""A sushy-tools Redfish emulator on a loopback HTTPS port, in a subprocess the context manager stops.

See `tests.support.redfish_emulator_server` for what differs from the stock fake driver (power changes applied at
once, stuck systems, counted commands, in-flight tracking).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TextIO

import bcrypt
import requests

from tests.support.tls import SelfSignedCertificate, self_signed_certificate

START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0


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
        self.folder.mkdir(parents=True, exist_ok=True)
        self.certificate = self_signed_certificate(self.folder)
        self.system_ids = [str(uuid.uuid4()) for _ in range(self.systems)]
        auth_file = self.folder / "htpasswd"
        digest = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
        auth_file.write_text(f"{self.username}:{digest}\n")
        config = {
            "systems": [
                {"uuid": system_id, "name": f"system-{index}", "power_state": "Off", "external_notifier": False}
                for index, system_id in enumerate(self.system_ids)
            ],
            "stuck": [self.system_ids[index] for index in self.stuck],
            "hold": self.hold_seconds,
            "state_dir": str(self.folder / "state"),
            "auth_file": str(auth_file),
            "cert": str(self.certificate.certificate_path),
            "key": str(self.certificate.key_path),
        }
        config_path = self.folder / "emulator.json"
        config_path.write_text(json.dumps(config))
        self._log = (self.folder / "emulator.log").open("w")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.redfish_emulator_server", str(config_path)],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith("PORT "):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the Redfish emulator did not start: {(self.folder / 'emulator.log').read_text()}")
        self.port = int(line.split()[1])
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

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
