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
    KubeConfigError                    no client could be configured: the kubeconfig is missing, unreadable, not
                                       YAML, or lacks the context asked for

Every message is one line a person can act on: a kubeconfig problem names the file, an unreachable API server
names the server and why (`cannot reach the API server https://10.0.0.1:6443: connection refused`), never a
urllib3 repr or a multi-line YAML trace.

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
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import urllib3
import yaml
from kubernetes import client as kube
from kubernetes import config as kube_config
from kubernetes.config import ConfigException

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


class KubeNotFound(KubeError):
    """404: the object or the resource does not exist."""


class KubeConflict(KubeError):
    """409: the object changed since it was read (or already exists, see `KubeAlreadyExists`)."""


class KubeAlreadyExists(KubeConflict):
    """409 AlreadyExists: a create named an object that exists."""


class KubeTransient(KubeError):
    """The API server was unavailable, throttled us, or did not answer in time: retry later."""


class KubePermanent(KubeError):
    """The API server refused the request for a reason retrying does not change (4xx other than 404/409/429)."""


class KubeConfigError(OperatorError):
    """No client could be configured; the message is one line naming the kubeconfig file (or its absence)."""


DEFAULT_KUBECONFIG: Final = "~/.kube/config"


def new_api_client(
    kubeconfig: str | Path | None = None,
    context: str | None = None,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> kube.ApiClient:
    """An ApiClient for a kubeconfig file, or for the pod's service account when no path is given.

    Without a path: in-cluster configuration inside a pod (KUBERNETES_SERVICE_HOST set), else the user's default
    kubeconfig (`KUBECONFIG` or ~/.kube/config), which is what `homelab-autoscaler run` on a workstation wants.
    Raises KubeConfigError, one line naming the file, when that configuration cannot be loaded.
    """
    configuration = kube.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException as error:
            raise KubeConfigError(f"in-cluster service account: {_one_line(str(error))}") from error
    else:
        source = _kubeconfig_source(kubeconfig)
        try:
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=source,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        except yaml.YAMLError as error:
            raise KubeConfigError(f"kubeconfig {source} is not valid YAML: {_yaml_problem(error)}") from error
        except ConfigException as error:
            raise KubeConfigError(_config_problem(source, context, error)) from error
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = RetryPolicy(3)
    quiet_connection_retries()
    return kube.ApiClient(configuration)


def _kubeconfig_source(kubeconfig: str | Path | None) -> str:
    """The kubeconfig file(s) to load, as the client takes them; KubeConfigError when none of them exists.

    Read from the environment now, not when the kubernetes package was imported (it reads KUBECONFIG once).
    """
    if kubeconfig is not None:
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise KubeConfigError(f"kubeconfig {kubeconfig} does not exist" if not path.exists()
                                  else f"kubeconfig {kubeconfig} is not a file")
        return str(path)
    from_env = os.environ.get("KUBECONFIG", "")
    if from_env:
        paths = [item for item in from_env.split(os.pathsep) if item]
        if not any(Path(item).expanduser().is_file() for item in paths):
            raise KubeConfigError(
                f"no kubeconfig: none of the files KUBECONFIG names exists ({', '.join(paths)}); "
                "pass --kubeconfig FILE"
            )
        return from_env
    if not Path(DEFAULT_KUBECONFIG).expanduser().is_file():
        raise KubeConfigError(
            f"no kubeconfig: {DEFAULT_KUBECONFIG} does not exist and KUBECONFIG is not set; pass --kubeconfig FILE"
        )
    return str(Path(DEFAULT_KUBECONFIG).expanduser())


def _yaml_problem(error: yaml.YAMLError) -> str:
    """`expected ',' or '}', but got '<scalar>' at line 4, column 3`: PyYAML's own text is several lines. Pure."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "unreadable"
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem
    return _one_line(str(error))


def _config_problem(source: str, context: str | None, error: ConfigException) -> str:
    text = _one_line(str(error)).removeprefix("Invalid kube-config file.").strip()
    if context is not None and "Expected object with name" in text and "contexts" in text:
        return f"kubeconfig {source} has no context {context!r}"
    if text.startswith("Expected key current-context"):
        return f"kubeconfig {source} sets no current-context; pass --context NAME"
    if text.startswith("No configuration found"):
        return f"kubeconfig {source} holds no configuration (no clusters, users or contexts)"
    return f"kubeconfig {source}: {text}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
    if isinstance(error, urllib3.exceptions.MaxRetryError) and isinstance(
        error.reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.SSLError
    ):
        # Never connected: say which server and why in words, not urllib3's nested repr.
        return KubeTransient(f"{what}: cannot reach the API server {_server_of(error)}: {_why_unreachable(error)}")
    if isinstance(error, urllib3.exceptions.MaxRetryError):
        # Connected, but every try ended without an answer (read timeouts, dropped connections).
        return KubeTransient(f"{what}: no answer from the API server {_server_of(error)}: {_why_unreachable(error)}")
    if isinstance(error, urllib3.exceptions.HTTPError | OSError | TimeoutError):
        # Connection refused/reset, read timeouts and urllib3's own exhausted 429/503 retries all land here.
        return KubeTransient(f"{what}: {type(error).__name__}: {error}")
    return KubePermanent(f"{what}: {type(error).__name__}: {error}")


def _server_of(error: urllib3.exceptions.MaxRetryError) -> str:
    pool = error.pool
    host = getattr(pool, "host", None)
    if host is None:
        return "(unknown address)"
    return f"{getattr(pool, 'scheme', 'https')}://{host}:{getattr(pool, 'port', '')}".removesuffix(":")


def _why_unreachable(error: urllib3.exceptions.MaxRetryError) -> str:
    """Why the connection failed, in a few words. Pure."""
    reason = error.reason
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return "its host name does not resolve"
    if isinstance(reason, urllib3.exceptions.SSLError):
        cause = reason.args[0] if reason.args else reason
        detail = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or cause
        return f"TLS failed ({_one_line(str(detail))})"
    seen: BaseException | None = reason
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused (is the API server running, and is this the right address?)"
        if isinstance(seen, ssl.SSLError):
            return f"TLS failed ({_one_line(str(seen))})"
        seen = seen.__cause__ or seen.__context__
    # urllib3's NewConnectionError is a ConnectTimeoutError too, so this is asked only after the refusal above.
    if isinstance(reason, urllib3.exceptions.ConnectTimeoutError) and "timed out" in str(reason):
        return "the connection timed out"
    return _one_line(str(reason)).rpartition(": ")[2] or type(reason).__name__


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
