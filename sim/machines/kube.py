"""The simulator's only door to an API server: JSON requests and watch streams over the official client.

The simulator must behave the same against our fake and a real cluster, so it goes through the official
`kubernetes` client's connection handling (kubeconfig, TLS, bearer tokens) but speaks plain JSON dicts
instead of the generated models: the objects it writes are built as dicts anyway, it reads only a few
fields, and skipping model conversion keeps thousands of heartbeats cheap. Every failure surfaces as one
exception type carrying the HTTP status, so callers decide on codes, not on library internals.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Final

import urllib3
from kubernetes import client as kube_client

MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
DEFAULT_TIMEOUT: Final = (5.0, 30.0)
"""(connect, read) seconds for one request: a hung server must not stall a simulator thread forever."""


class KubeApiError(Exception):
    """A request the API server refused (status ≥ 400) or a connection that failed (status 0)."""

    def __init__(self, status: int, reason: str, body: Mapping[str, Any] | None = None) -> None:
        message = str((body or {}).get("message") or reason)
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.reason = str((body or {}).get("reason") or reason)
        self.body: Mapping[str, Any] = body or {}


class WatchStream:
    """One open watch: iterate to get events as dicts; `close()` from any thread ends the iteration."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        self._closed = threading.Event()
        self._drained = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        pending = b""
        try:
            for chunk in self._chunks():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
                if self._closed.is_set():
                    return
            if pending.strip() and not self._closed.is_set():
                yield json.loads(pending)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
            if not self._closed.is_set():
                raise KubeApiError(0, f"watch stream broke: {error}") from error
        finally:
            self._drained = True
            self._response.release_conn()

    def _chunks(self) -> Iterator[bytes]:
        if self._response.chunked and isinstance(self._response, urllib3.HTTPResponse):
            yield from self._response.read_chunked(decode_content=True)
            return
        while not self._closed.is_set():
            chunk = self._response.read1(65536)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        """Ends the stream now, even while another thread is blocked reading it."""
        self._closed.set()
        # Only a stream still being read needs its socket shut down to unblock the reader; a drained one
        # has gone back to the connection pool and must stay usable.
        if self._drained:
            return
        shutdown = getattr(self._response, "shutdown", None)
        if shutdown is not None:
            shutdown()
        self._response.close()


class KubeRest:
    """JSON-in, JSON-out requests against the API server an `ApiClient` is configured for."""

    def __init__(self, api_client: kube_client.ApiClient) -> None:
        self._api_client = api_client

    def get(self, path: str, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self._json("GET", path, query=query)

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json("POST", path, body=body)

    def put(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json("PUT", path, body=body)

    def patch(self, path: str, body: Mapping[str, Any], content_type: str = MERGE_PATCH) -> dict[str, Any]:
        return self._json("PATCH", path, body=body, content_type=content_type)

    def delete(self, path: str) -> dict[str, Any]:
        return self._json("DELETE", path)

    def watch(self, path: str, query: Mapping[str, str], read_timeout: float) -> WatchStream:
        """Opens a watch (`watch=1` is added); the caller iterates the stream and closes it."""
        response = self._send(
            "GET", path, {**query, "watch": "1"}, None, None, (DEFAULT_TIMEOUT[0], read_timeout)
        )
        if response.status >= 400:
            raise _error_from(response.status, response.reason, response.read())
        return WatchStream(response.response)

    def _json(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        response = self._send(method, path, query, body, content_type, DEFAULT_TIMEOUT)
        try:
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeApiError(0, f"{method} {path}: {error}") from error
        if response.status >= 400:
            raise _error_from(response.status, response.reason, data)
        if not data:
            return {}
        try:
            decoded: dict[str, Any] = json.loads(data)
        except ValueError as error:
            raise KubeApiError(response.status, f"{method} {path}: response is not JSON") from error
        return decoded

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
        content_type: str | None,
        timeout: tuple[float, float],
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        request = self._api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],
        )
        try:
            return self._api_client.call_api(*request, _request_timeout=timeout)
        except kube_client.ApiException as error:
            raise KubeApiError(error.status or 0, str(error.reason)) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeApiError(0, f"{method} {path}: {error}") from error


def _error_from(status: int, reason: str | None, data: bytes | None) -> KubeApiError:
    body: dict[str, Any] = {}
    if data:
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            body = parsed
    return KubeApiError(status, reason or "", body)
