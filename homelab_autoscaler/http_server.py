"""The plain-HTTP port every replica serves: `/metrics` for Prometheus, `/healthz` and `/readyz` for the kubelet.

Separate from the operator's wiring because it is a tiny, self-contained server with its own threads, and
separate from the webhook's HTTPS server because it must answer even when no certificate exists yet.

- `/metrics`: the operator's own registry (`actors.metrics`), in the Prometheus text format.
- `/healthz` (liveness): 200 while the process can still do its job (its actor pump, when it leads, is alive);
  503 asks the kubelet for a restart.
- `/readyz` (readiness): 200 once every listener is bound and the caches this replica serves from are synced.
  Leadership does not decide it (see manifests/30-deployment.yaml): a standby is ready to serve the moment it is
  elected, and the leader label, not readiness, routes traffic to the leader. It reports leadership in its body:
  `ok: leader` or `ok: standby`.
- `/readyz/leader`: the same, but 503 (`standby: ...`) unless this replica leads, for a probe or a load balancer
  that must reach the acting replica only.

A failing check answers 503 with its reason as the body, so `kubectl describe pod` shows why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

from actors import metrics

LOGGER = logging.getLogger(__name__)

METRICS_PATH: Final = "/metrics"
HEALTH_PATH: Final = "/healthz"
READY_PATH: Final = "/readyz"
LEADER_PATH: Final = "/readyz/leader"

Check = Callable[[], str | None]
"""A probe: None when all is well, else the reason it is not."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True  # stop() joins the request threads
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        checks: dict[str, Check],
        render: Callable[[], bytes],
        leading: Callable[[], bool],
    ) -> None:
        self.checks = checks
        self.render = render
        self.leading = leading
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0 (the default): one request per connection, so stop() never waits for an idle keep-alive scraper.
    timeout = 10.0
    server_version = "homelab-autoscaler"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        LOGGER.debug("http: %s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == METRICS_PATH:
            self._send(200, self.server.render(), metrics.CONTENT_TYPE)
            return
        check = self.server.checks.get(READY_PATH if path == LEADER_PATH else path)
        if check is None:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")
            return
        problem = _run_probe(path, check)
        text = "ok"
        if problem is None and path in (READY_PATH, LEADER_PATH):
            leading = _run_probe(path, lambda: None if self.server.leading() else "standby")
            text = "ok: leader" if leading is None else "ok: standby"
            if path == LEADER_PATH and leading is not None:
                problem = "standby: ready, but another replica leads (or none does yet)"
        if problem is None:
            self._send(200, (text + "\n").encode(), "text/plain; charset=utf-8")
        else:
            self._send(503, (problem + "\n").encode(), "text/plain; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _run_probe(path: str, check: Check) -> str | None:
    try:
        return check()
    except Exception as error:  # a probe that breaks is a failing probe, never a dropped connection
        LOGGER.exception("probe %s failed", path)
        return f"the probe itself failed: {type(error).__name__}: {error}"


class HealthServer:
    """Serves /metrics, /healthz, /readyz and /readyz/leader on one address; `start()` binds, `stop()` joins.

    `leading` says whether this replica is the one acting (the leader, once it has rebuilt every machine).
    """

    def __init__(
        self,
        address: tuple[str, int],
        *,
        liveness: Check,
        readiness: Check,
        leading: Callable[[], bool],
        render: Callable[[], bytes] = metrics.render,
    ) -> None:
        self._address = address
        self._checks = {HEALTH_PATH: liveness, READY_PATH: readiness}
        self._leading = leading
        self._render = render
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the health server has not been started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind and serve on a background thread; raises OSError when the address cannot be bound."""
        if self._server is not None:
            raise RuntimeError("the health server is already running")
        self._server = _Server(self._address, self._checks, self._render, self._leading)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="health-http", daemon=True
        )
        self._thread.start()
        LOGGER.info("metrics and health: serving HTTP on %s:%d", self._address[0], self.port)

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()  # joins the request threads (block_on_close)
        thread.join()
        self._server = self._thread = None
