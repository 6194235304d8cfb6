"""The HTTPS shell around the admission rules: TLS, HTTP framing, limits and a clean stop.

Owns sockets and threads only. Every decision is made by `webhooks.admission`; this module turns bytes into
a call and the result back into bytes. Separate so the rules stay testable without sockets and so the
defensive parts (TLS 1.2+, body limits, timeouts, a cap on connections) live in one small place.

Built on the standard library's `ThreadingHTTPServer`: the API server sends few, small requests (one per
create/update of our resources), so a thread per connection is plenty and adds no dependency. The TLS
handshake happens on the connection's own thread, never on the accepting thread, so a client that connects
and stays silent cannot stall everybody else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

from webhooks.admission import AdmissionRules, MalformedReviewError, review

logger = logging.getLogger(__name__)

VALIDATE_PATH: Final = "/validate"
HEALTH_PATH: Final = "/healthz"
MAX_BODY_BYTES: Final = 3 * 1024 * 1024
"""The API server caps an object at about 3 MiB (etcd's request limit), so a review never needs more."""
DEFAULT_SOCKET_TIMEOUT_SECONDS: Final = 10.0
"""Per socket operation; the API server waits 5 s for the whole review, so a slower peer is not the API server."""
DEFAULT_MAX_CONNECTIONS: Final = 64
READ_CHUNK_BYTES: Final = 64 * 1024

Address = tuple[str, int]


def parse_address(address: Address | str) -> Address:
    """(host, port) from `host:port`, `[v6]:port` or an existing tuple. Pure."""
    if isinstance(address, tuple):
        return address
    host, separator, port = address.rpartition(":")
    if not separator or not port.isdigit():
        raise ValueError(f"{address!r} is not an address of the form host:port")
    return host.strip("[]"), int(port)


def _server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class _TlsHttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that does the TLS handshake per connection thread and caps concurrent connections."""

    block_on_close = False  # stop() joins the connection threads itself, see process_request

    def __init__(
        self,
        address: Address,
        handler: type[BaseHTTPRequestHandler],
        context_source: Callable[[], ssl.SSLContext],
        rules: AdmissionRules,
        socket_timeout: float,
        max_connections: int,
        max_body_bytes: int,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.handler_class = handler
        self.context_source = context_source
        self.rules = rules
        self.socket_timeout = socket_timeout
        self.max_body_bytes = max_body_bytes
        self._slots = threading.BoundedSemaphore(max_connections)
        self._active: set[ssl.SSLSocket] = set()
        self._connection_threads: set[threading.Thread] = set()
        self._active_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Our own thread bookkeeping instead of ThreadingMixIn's: it never joins daemon threads, and ours must be
        # daemons (an operator exiting without stop() must not wait for idle keep-alive connections).
        if not self._slots.acquire(blocking=False):
            logger.warning("webhook: refusing a connection from %s, too many are open", client_address)
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"webhook-connection-{client_address[1]}",
            daemon=True,
        )
        with self._active_lock:
            self._connection_threads.add(thread)
        try:
            thread.start()
        except BaseException:
            with self._active_lock:
                self._connection_threads.discard(thread)
            self._slots.release()
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
            with self._active_lock:
                self._connection_threads.discard(threading.current_thread())

    def join_connection_threads(self) -> None:
        """Wait for every connection thread; call after interrupt_connections() so none is blocked reading."""
        with self._active_lock:
            threads = list(self._connection_threads)
        for thread in threads:
            thread.join()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.socket_timeout)
        connection = self.context_source().wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        with self._active_lock:
            self._active.add(connection)
        try:
            try:
                connection.do_handshake()
            except (ssl.SSLError, OSError) as error:
                # Plain HTTP, a port scanner or an untrusting client: nothing to answer over a broken channel.
                logger.debug("webhook: TLS handshake with %s failed: %s", client_address, error)
                return
            self.handler_class(connection, client_address, self)
        finally:
            with self._active_lock:
                self._active.discard(connection)
            connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A peer that vanishes mid-request is routine; it must not print tracebacks on stderr.
        logger.debug("webhook: connection from %s ended with an error", client_address, exc_info=True)

    def interrupt_connections(self) -> None:
        """Wake every connection thread blocked on a read, so stop() need not wait for idle keep-alives."""
        with self._active_lock:
            connections = list(self._active)
        for connection in connections:
            # The plain socket's shutdown: SSLSocket.shutdown would drop its TLS state under a reading thread.
            # OSError means its own thread has closed it already.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)


class _RejectedRequestError(Exception):
    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


class _ReviewHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the API server reuses connections
    # The answer leaves as several small TLS writes (headers, body); with Nagle on, the last one waits for the
    # client's delayed ACK (~40 ms) on every review of a kept-alive connection.
    disable_nagle_algorithm = True
    server: _TlsHttpServer
    server_version = "homelab-autoscaler-webhook"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("webhook: %s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == HEALTH_PATH:
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        try:
            # Read first even for a wrong path: closing on an unread body resets the connection under the answer.
            body = self._read_body()
            if urlsplit(self.path).path != VALIDATE_PATH:  # the API server appends ?timeout=5s
                raise _RejectedRequestError(404, f"no such path; reviews go to {VALIDATE_PATH}")
            try:
                answer = review(body, self.server.rules)
            except MalformedReviewError as error:
                raise _RejectedRequestError(400, str(error)) from None
        except _RejectedRequestError as rejection:
            self._send(
                rejection.status,
                (rejection.message + "\n").encode(),
                "text/plain; charset=utf-8",
                close=rejection.close,
            )
            return
        except OSError as error:  # the peer timed out or went away mid-body: nobody is left to answer
            logger.debug("webhook: connection from %s failed while reading: %s", self.address_string(), error)
            self.close_connection = True
            return
        except Exception:
            logger.exception("webhook: review failed")
            self._send(500, b"internal error while reviewing the request\n", "text/plain; charset=utf-8", close=True)
            return
        self._send(200, json.dumps(answer, separators=(",", ":")).encode(), "application/json")

    def _read_body(self) -> bytes:
        limit = self.server.max_body_bytes
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            raise _RejectedRequestError(
                411, "a Content-Length is required (chunked bodies are not accepted)", close=True
            )
        declared = self.headers.get("Content-Length")
        if declared is None:
            raise _RejectedRequestError(411, "a Content-Length is required", close=True)
        try:
            length = int(declared)
        except ValueError:
            raise _RejectedRequestError(400, f"Content-Length {declared!r} is not a number", close=True) from None
        if length < 0:
            raise _RejectedRequestError(400, "Content-Length must not be negative", close=True)
        if length > limit:
            # Refused before reading a byte; the connection is closed since the body is left unread.
            raise _RejectedRequestError(
                400, f"request body of {length} bytes exceeds the limit of {limit} bytes", close=True
            )
        deadline = time.monotonic() + self.server.socket_timeout
        chunks: list[bytes] = []
        received = 0
        while received < length:
            if time.monotonic() > deadline:
                raise _RejectedRequestError(408, "request body arrived too slowly", close=True)
            chunk = self.rfile.read1(min(READ_CHUNK_BYTES, length - received))
            if not chunk:
                raise _RejectedRequestError(400, "request body ended before Content-Length bytes", close=True)
            received += len(chunk)
            if received > limit:  # unreachable while Content-Length is honoured; kept as the last line of defence
                raise _RejectedRequestError(400, f"request body exceeds the limit of {limit} bytes", close=True)
            chunks.append(chunk)
        return b"".join(chunks)

    def _send(self, status: int, body: bytes, content_type: str, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


class WebhookServer:
    """The validating admission webhook over HTTPS: POST /validate (AdmissionReview v1) and GET /healthz.

    `start()` binds and serves on a background thread; `port` is the bound port (useful with port 0);
    `stop()` closes the listener, interrupts open connections and joins every thread it started.
    `reload_certificate()` re-reads the certificate files for new connections after a rotation.
    """

    def __init__(
        self,
        address: Address | str,
        cert_file: str | os.PathLike[str],
        key_file: str | os.PathLike[str],
        rules: AdmissionRules,
        *,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT_SECONDS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._address = parse_address(address)
        self._cert_file = os.fspath(cert_file)
        self._key_file = os.fspath(key_file)
        self._rules = rules
        self._socket_timeout = socket_timeout
        self._max_connections = max_connections
        self._max_body_bytes = max_body_bytes
        # Loaded now so a missing or mismatched certificate fails at wiring time, not on the first review.
        self._context = _server_context(self._cert_file, self._key_file)
        self._server: _TlsHttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound TCP port; only meaningful after start()."""
        if self._server is None:
            raise RuntimeError("the webhook server has not been started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the webhook server is already running")
        self._server = _TlsHttpServer(
            self._address,
            _ReviewHandler,
            lambda: self._context,
            self._rules,
            self._socket_timeout,
            self._max_connections,
            self._max_body_bytes,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="webhook-server", daemon=True
        )
        self._thread.start()
        logger.info("webhook: serving HTTPS on %s:%d", self._address[0], self.port)

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()  # returns once serve_forever has stopped accepting
        server.interrupt_connections()
        server.server_close()
        server.join_connection_threads()
        thread.join()
        self._server = self._thread = None

    def reload_certificate(self) -> None:
        """Use the certificate files as they are now for every new connection (after a rotation)."""
        # A fresh context swapped in whole: reloading the live one would race handshakes on other threads.
        self._context = _server_context(self._cert_file, self._key_file)

    def __enter__(self) -> WebhookServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
