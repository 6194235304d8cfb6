"""The operator's door to the Kubernetes API: building a client, calling it for raw JSON, and our error tree.

Separate from the writer, the watches and the leader elector because all three need the same three things and
must agree on them: how a client is configured (kubeconfig path or in-cluster service account), how a call is
made (raw JSON dicts instead of the generated models: cheaper, and every field survives, including ones newer
than the client), and what a failure means. Callers never catch a `kubernetes` or `urllib3` exception; they get
one of these, raised `from` the original so the traceback keeps the cause:

    OperatorError                      (actors.errors)
    └── KubeError                      any failed call; `.status` is the HTTP code (0: no answer at all)
        ├── KubeNotFound               404: the object (or the resource) does not exist
        ├── KubeConflict               409: stale resourceVersion (re-read and retry helps)
        │   └── KubeAlreadyExists      409 AlreadyExists on create (adopt or refuse, never retry blindly)
        ├── KubeTransient              5xx, 429, timeouts, connection errors: retrying later may succeed
        └── KubePermanent              every other 4xx (invalid, forbidden, gone): retrying will not help

410 Gone (an expired watch or list resourceVersion) is a `KubePermanent` with `status == 410`: the watch relists.

urllib3 retries a broken connection a few times inside each call and logs a WARNING for every one of them; our
callers retry too and the process's `ApiReachability` tells an outage once, so `new_api_client` demotes those
lines to DEBUG (`QuietConnectionRetries`): otherwise one API server restart wrote three of them per attempt.
urllib3 would also sleep through a 503's `Retry-After` (five seconds, from a kube-apiserver that is starting)
inside GET, PUT and DELETE, blind to our deadlines (a Lease renewal) and to the server's return; `RetryPolicy`
leaves 503 to our callers, who wait for the server through `ApiReachability`. 429 (throttling) is still honoured.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import urllib3
from kubernetes import client as kube
from kubernetes import config as kube_config

from actors.errors import OperatorError

DEFAULT_TIMEOUT: Final = (5.0, 30.0)
"""(connect, read) seconds of one request: a hung API server must never stall a thread forever."""
DEFAULT_POOL_SIZE: Final = 32
"""HTTP connections kept per API server: writer workers, drains, four watches and the elector run at once."""
MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
GONE: Final = 410
URLLIB3_POOL_LOGGER: Final = "urllib3.connectionpool"
_RETRY_LINE: Final = "Retrying ("


class QuietConnectionRetries(logging.Filter):
    """Turns urllib3's `Retrying (Retry(total=2, ...)) after connection broken by ...` WARNING into DEBUG.

    The record is rewritten rather than dropped, so `--log-level DEBUG` still shows each internal retry; at any
    other level it is dropped here, since a filter runs after the logger's own level check.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not str(record.msg).startswith(_RETRY_LINE):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


class RetryPolicy(urllib3.Retry):
    """urllib3's default retries (3, connection errors included), minus its sleep on a 503's Retry-After."""

    RETRY_AFTER_STATUS_CODES = frozenset({413, 429})


def quiet_connection_retries() -> None:
    """Install `QuietConnectionRetries` on urllib3's pool logger, once however often it is called."""
    pool_logger = logging.getLogger(URLLIB3_POOL_LOGGER)
    if not any(isinstance(existing, QuietConnectionRetries) for existing in pool_logger.filters):
        pool_logger.addFilter(QuietConnectionRetries())


class KubeError(OperatorError):
    """A Kubernetes API call failed; `status` is the HTTP status (0 when no response arrived)."""

    def __init__(self, message: str, status: int = 0, reason: str = "", body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.body: dict[str, Any] = body or {}

    @property
    def details_name(self) -> str:
        """`details.name` of the Status: names the missing object; empty when the resource itself is missing."""
        details = self.body.get("details") or {}
        return str(details.get("name") or "") if isinstance(details, dict) else ""


class KubeNotFound(KubeError):  # noqa: N818  # names fixed by the adapters brief and their callers
    """404: the object or the resource does not exist."""


class KubeConflict(KubeError):  # noqa: N818
    """409: the object changed since it was read (or already exists, see `KubeAlreadyExists`)."""


class KubeAlreadyExists(KubeConflict):
    """409 AlreadyExists: a create named an object that exists."""


class KubeTransient(KubeError):  # noqa: N818
    """The API server was unavailable, throttled us, or did not answer in time: retry later."""


class KubePermanent(KubeError):  # noqa: N818
    """The API server refused the request for a reason retrying does not change (4xx other than 404/409/429)."""


def new_api_client(
    kubeconfig: str | Path | None = None,
    context: str | None = None,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> kube.ApiClient:
    """An ApiClient for a kubeconfig file, or for the pod's service account when no path is given.

    Without a path: in-cluster configuration inside a pod (KUBERNETES_SERVICE_HOST set), else the user's default
    kubeconfig (`KUBECONFIG` or ~/.kube/config), which is what `homelab-autoscaler run` on a workstation wants.
    """
    configuration = kube.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig is not None else None,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = RetryPolicy(3)
    quiet_connection_retries()
    return kube.ApiClient(configuration)


def translate(error: BaseException, what: str) -> KubeError:
    """Our error for a failure of the call described by `what` (e.g. "create jobs/x"). Pure."""
    if isinstance(error, KubeError):
        return error
    if isinstance(error, kube.ApiException):
        status = int(error.status or 0)
        body = _status_body(error.body)
        reason = str(body.get("reason") or error.reason or "")
        detail = str(body.get("message") or error.reason or "no message")
        message = f"{what}: HTTP {status} {reason}: {detail}" if status else f"{what}: {detail}"
        return _classify(status, reason)(message, status, reason, body)
    if isinstance(error, urllib3.exceptions.HTTPError | OSError | TimeoutError):
        # Connection refused/reset, read timeouts and urllib3's own exhausted 429/503 retries all land here.
        return KubeTransient(f"{what}: {type(error).__name__}: {error}")
    return KubePermanent(f"{what}: {type(error).__name__}: {error}")


def outcome(error: KubeError) -> str:
    """The `outcome` label of the kube-writes metric for a failed call. Pure."""
    if isinstance(error, KubeAlreadyExists):
        return "already_exists"
    if isinstance(error, KubeNotFound):
        return "not_found"
    if isinstance(error, KubeConflict):
        return "conflict"
    if isinstance(error, KubeTransient):
        return "transient"
    return "permanent"


def _classify(status: int, reason: str) -> type[KubeError]:
    if status == 404:
        return KubeNotFound
    if status == 409:
        return KubeAlreadyExists if reason == "AlreadyExists" else KubeConflict
    if status == 0 or status == 429 or status >= 500:
        return KubeTransient
    return KubePermanent


def _status_body(raw: object) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


class KubeApi:
    """JSON-in, JSON-out requests against the API server an ApiClient is configured for.

    The generated API methods are bypassed on purpose: they validate bodies into pydantic models (refusing fields
    newer than the client, reformatting MicroTime values) and deserialise answers into models we would only turn
    back into dicts. Here a body is sent as the dict we built and an answer comes back as the server's JSON, every
    field kept. Paths are spelled out, which also makes the RBAC list in docs/architecture/kubernetes.md easy to
    check against the code.
    """

    def __init__(self, api_client: kube.ApiClient, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        self.api_client = api_client
        self.timeout = timeout

    def get(self, path: str, query: Mapping[str, str] | None = None, *, what: str = "") -> dict[str, Any]:
        return self.request("GET", path, query=query, what=what)

    def post(self, path: str, body: Mapping[str, Any], *, what: str = "") -> dict[str, Any]:
        return self.request("POST", path, body=body, what=what)

    def put(self, path: str, body: Mapping[str, Any], *, what: str = "") -> dict[str, Any]:
        return self.request("PUT", path, body=body, what=what)

    def patch(
        self, path: str, body: Mapping[str, Any] | list[Any], content_type: str = MERGE_PATCH, *, what: str = ""
    ) -> dict[str, Any]:
        return self.request("PATCH", path, body=body, content_type=content_type, what=what)

    def delete(self, path: str, body: Mapping[str, Any] | None = None, *, what: str = "") -> dict[str, Any]:
        return self.request("DELETE", path, body=body, what=what)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | list[Any] | None = None,
        content_type: str | None = None,
        what: str = "",
        timeout: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """One request; the decoded JSON answer, or one of our errors."""
        what = what or f"{method} {path}"
        response = self._send(method, path, query, body, content_type, timeout or self.timeout, what)
        try:
            data = response.read()
        except Exception as error:
            raise translate(error, what) from error
        if response.status >= 400:
            raise _error_from_answer(response.status, response.reason, data, what)
        if not data:
            return {}
        try:
            decoded = json.loads(data)
        except ValueError as error:
            raise KubePermanent(f"{what}: the answer is not JSON", response.status) from error
        return decoded if isinstance(decoded, dict) else {}

    def stream(
        self, path: str, query: Mapping[str, str], read_timeout: float, *, what: str = ""
    ) -> urllib3.BaseHTTPResponse:
        """Open a response to read incrementally (a watch); the caller reads it and closes it."""
        what = what or f"GET {path}"
        response = self._send("GET", path, query, None, None, (self.timeout[0], read_timeout), what)
        if response.status >= 400:
            try:
                data = response.read()
            except Exception as error:
                raise translate(error, what) from error
            raise _error_from_answer(response.status, response.reason, data, what)
        raw: urllib3.BaseHTTPResponse = response.response
        return raw

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: Mapping[str, Any] | list[Any] | None,
        content_type: str | None,
        timeout: tuple[float, float],
        what: str,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        try:
            request = self.api_client.param_serialize(
                method=method,
                resource_path=path,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            return self.api_client.call_api(*request, _request_timeout=timeout)
        except Exception as error:  # translate() maps every failure into our tree; nothing else escapes
            raise translate(error, what) from error


def _error_from_answer(status: int, reason: str | None, data: bytes | None, what: str) -> KubeError:
    body = _status_body(data)
    status_reason = str(body.get("reason") or reason or "")
    detail = str(body.get("message") or reason or "no message")
    message = f"{what}: HTTP {status} {status_reason}: {detail}"
    return _classify(status, status_reason)(message, status, status_reason, body)
