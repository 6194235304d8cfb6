"""The sushy-tools Redfish emulator as a process of its own, for `tests.support.redfish_emulator` to start.

sushy-tools keeps its Flask app, its systems driver and their state at module level, so each emulator gets a
process. Its fake systems driver applies a power change one to eleven seconds after the request, at random; here
a subclass applies it at once (a test says when a machine is slow, not chance), except for the systems listed as
stuck, which accept "On" and stay off. A small WSGI layer outside the emulator's authentication counts the reset
actions received, tracks how many requests were in flight at once, and can hold each reset action for a while
so that overlapping operations would show; `GET /emulator/stats` reads those figures.

Run: python -m tests.support.redfish_emulator_server CONFIG.json  (prints "PORT <n>" once it listens).
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sushy_tools.emulator import main as emulator
from sushy_tools.emulator.resources.systems import fakedriver
from werkzeug.serving import make_server

STATS_PATH = "/emulator/stats"


class ImmediateFakeDriver(fakedriver.FakeDriver):  # type: ignore[misc]
    stuck: frozenset[str] = frozenset()
    commands: list[dict[str, str]] = []  # one process, one emulator

    def set_power_state(self, identity: str, state: str) -> None:
        system = self._get(identity)
        ImmediateFakeDriver.commands.append({"system": system["uuid"], "reset": state})
        if system["uuid"] in self.stuck:
            return
        target = "On" if "On" in state else "Off" if state in ("ForceOff", "GracefulShutdown") else None
        if target is None:
            super().set_power_state(identity, state)
            return
        self._update(system, power_state=target, pending_power=None)


class Instrumented:
    """Counts requests in flight, answers /emulator/stats, and holds reset actions for `hold` seconds."""

    def __init__(self, app: Callable[..., Iterable[bytes]], hold: float) -> None:
        self._app = app
        self._hold = hold
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == STATS_PATH:
            body = json.dumps(
                {"commands": ImmediateFakeDriver.commands, "max_in_flight": self.max_in_flight}
            ).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self._hold and path.endswith("ComputerSystem.Reset"):
                time.sleep(self._hold)
            return list(self._app(environ, start_response))
        finally:
            with self._lock:
                self._in_flight -= 1


WsgiApp = Callable[..., Iterable[bytes]]


def serve(config: dict[str, Any], wrap: Callable[[WsgiApp], WsgiApp]) -> None:
    """sushy-tools with `ImmediateFakeDriver`, its WSGI app wrapped by `wrap`, over HTTPS on a free loopback port;
    prints "PORT <n>" once it listens, then serves until the process is stopped."""
    ImmediateFakeDriver.stuck = frozenset(config.get("stuck", ()))
    fakedriver.FakeDriver = ImmediateFakeDriver
    app = emulator.app
    app.configure(
        extra_config={
            "SUSHY_EMULATOR_FAKE_DRIVER": True,
            "SUSHY_EMULATOR_FAKE_SYSTEMS": config["systems"],
            "SUSHY_EMULATOR_STATE_DIR": config["state_dir"],
            "SUSHY_EMULATOR_AUTH_FILE": config["auth_file"],
        }
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config["cert"], config["key"])
    server = make_server("127.0.0.1", 0, wrap(app.wsgi_app), threaded=True, ssl_context=context)
    print(f"PORT {server.port}", flush=True)
    server.serve_forever()


def main() -> None:
    with open(sys.argv[1]) as source:
        config = json.load(source)
    serve(config, lambda app: Instrumented(app, config.get("hold", 0.0)))


if __name__ == "__main__":
    main()
