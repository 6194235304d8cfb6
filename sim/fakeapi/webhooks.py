"""Validating admission webhooks: calling the ones registered in ValidatingWebhookConfigurations, as a real
API server does, after an object has passed its own validation and before it is stored.

Separate because it is the one place where the fake calls out over the network, with its own failure modes
(a webhook that is down, slow, or answers nonsense) and the real server's words for each:
``admission webhook "NAME" denied the request: MESSAGE`` with the webhook's own status (code at least 400),
and ``Internal error occurred: failed calling webhook "NAME": failed to call webhook: Post "URL": WHY`` (500)
when the call fails and ``failurePolicy`` is ``Fail`` (the default); ``Ignore`` lets the request through.
A webhook's ``warnings`` reach the client as ``Warning`` headers.

Matching follows the real rules: ``rules`` (apiGroups, apiVersions, operations, resources with ``*`` and
``resource/subresource`` forms, scope), ``namespaceSelector`` (the labels of the object's namespace) and
``objectSelector`` (the labels of the new or the old object). ``matchConditions`` are not evaluated (a
webhook that has them is always called). ``clientConfig.url`` is called as written; a
``clientConfig.service`` has no Service to resolve in the fake, so it is called on the loopback address
registered for it with ``FakeApiServer.expose_service`` (TLS still checks the certificate against
``<service>.<namespace>.svc``, as a real server does) and otherwise fails like a Service that does not
exist. TLS trusts ``caBundle`` (the system roots without one). Configurations of admission registration
itself are never sent to webhooks, as on a real server. The configurations are checked and defaulted as the
real server checks and defaults them (``configuration_causes``, ``default_configuration``), so a webhook
with an ``http://`` URL or without ``sideEffects`` is refused when it is registered, not when it is called.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import http.client
import json
import re
import ssl
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sim.fakeapi.disruption import selector_matches
from sim.fakeapi.errors import ApiError, FieldCause
from sim.fakeapi.resources import ResourceType

ADMISSION_GROUP = "admissionregistration.k8s.io"
CONFIGURATIONS = (ADMISSION_GROUP, "validatingwebhookconfigurations")
DEFAULT_TIMEOUT_SECONDS = 10
# The user the fake reports for every request: it authenticates nobody, and the dummy token is an admin's.
USER_INFO = {"username": "fakeapi-admin", "groups": ["system:masters", "system:authenticated"]}
_OPTIONS_KINDS = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}


@dataclass(frozen=True)
class AdmissionCall:
    """One request to admit: what the webhook's AdmissionReview describes."""

    operation: str  # CREATE, UPDATE or DELETE
    resource: ResourceType
    subresource: str | None
    namespace: str | None
    name: str
    obj: dict[str, Any] | None
    old: dict[str, Any] | None
    dry_run: bool
    namespace_labels: Mapping[str, str]


class WebhookCaller:
    """Calls the matching validating webhooks of the configurations it is given; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[tuple[str, str, int], tuple[str, int]] = {}

    def expose_service(self, namespace: str, name: str, port: int, address: tuple[str, int]) -> None:
        """Route calls to Service ``namespace/name:port`` to ``address`` (the fake has no Services of its own)."""
        with self._lock:
            self._services[(namespace, name, port)] = address

    def admit(self, configurations: list[dict[str, Any]], call: AdmissionCall) -> list[str]:
        """Call every matching webhook in turn; returns their warnings, raises the first denial or failure."""
        warnings: list[str] = []
        if call.resource.group == ADMISSION_GROUP:
            return warnings
        for configuration in sorted(configurations, key=lambda c: c["metadata"]["name"]):
            for webhook in configuration.get("webhooks") or []:
                if isinstance(webhook, dict) and _matches(webhook, call):
                    warnings.extend(self._call(webhook, call))
        return warnings

    @staticmethod
    def may_match(
        configurations: list[dict[str, Any]], operation: str, resource: ResourceType, subresource: str | None
    ) -> bool:
        """Whether any webhook's rules name this write, before the object is built to test its selectors."""
        probe = AdmissionCall(operation, resource, subresource, None, "", None, None, False, {})
        return resource.group != ADMISSION_GROUP and any(
            _rule_matches(rule, probe)
            for configuration in configurations
            for webhook in configuration.get("webhooks") or []
            if isinstance(webhook, dict)
            for rule in webhook.get("rules") or []
        )

    # -- one call

    def _call(self, webhook: dict[str, Any], call: AdmissionCall) -> list[str]:
        name = str(webhook.get("name", ""))
        timeout = int(webhook.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS)
        request_uid = str(uuid.uuid4())
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": _request(call, request_uid),
        }
        try:
            shown_url, answer = self._post(webhook.get("clientConfig") or {}, timeout, json.dumps(review).encode())
        except _CallFailedError as error:
            return self._failed(webhook, name, f'failed to call webhook: Post "{error.url}": {error.why}')
        response = answer.get("response") if isinstance(answer, dict) else None
        if not isinstance(response, dict) or answer.get("kind") != "AdmissionReview":
            return self._failed(
                webhook,
                name,
                f'received invalid webhook response from "{shown_url}": expected an AdmissionReview with a response',
            )
        if response.get("uid") != request_uid:
            return self._failed(webhook, name, f"expected response.uid={request_uid}, got {response.get('uid')}")
        warnings = [str(text) for text in response.get("warnings") or []]
        if not response.get("allowed"):
            raise _denial(name, response.get("status"), warnings)
        return warnings

    def _failed(self, webhook: dict[str, Any], name: str, why: str) -> list[str]:
        if webhook.get("failurePolicy", "Fail") == "Ignore":
            return []
        raise ApiError(500, "InternalError", f'Internal error occurred: failed calling webhook "{name}": {why}')

    def _post(self, client_config: dict[str, Any], timeout: int, body: bytes) -> tuple[str, Any]:
        ca_bundle = client_config.get("caBundle")
        if client_config.get("url"):
            url = str(client_config["url"])
            parts = urlsplit(url)
            host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
            server_hostname, path, secure = host, parts.path or "/", parts.scheme == "https"
            shown = f"{url}?timeout={timeout}s"
        else:
            service = client_config.get("service") or {}
            service_name, namespace = str(service.get("name", "")), str(service.get("namespace", ""))
            port = int(service.get("port") or 443)
            path = str(service.get("path") or "/")
            server_hostname, secure = f"{service_name}.{namespace}.svc", True
            shown = f"https://{server_hostname}:{port}{path}?timeout={timeout}s"
            with self._lock:
                address = self._services.get((namespace, service_name, port))
            if address is None:
                raise _CallFailedError(shown, f'service "{service_name}" not found')
            host, port = address
        connection: http.client.HTTPConnection
        if secure:
            connection = _TlsConnection(host, port, timeout, _context(ca_bundle), server_hostname)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.request(
                "POST",
                f"{path}?timeout={timeout}s",
                body=body,
                headers={"Content-Type": "application/json", "Accept": "application/json, */*"},
            )
            answer = connection.getresponse()
            data = answer.read()
            if answer.status != 200:
                raise _CallFailedError(
                    shown,
                    f"the server responded with the status code {answer.status} but did not return more information",
                )
            return shown, json.loads(data)
        except ssl.SSLCertVerificationError as error:
            raise _CallFailedError(shown, f"tls: failed to verify certificate: {error.verify_message}") from error
        except TimeoutError as error:
            raise _CallFailedError(shown, "context deadline exceeded") from error
        except ConnectionRefusedError as error:
            raise _CallFailedError(shown, f"dial tcp {host}:{port}: connect: connection refused") from error
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise _CallFailedError(shown, str(error) or type(error).__name__) from error
        finally:
            connection.close()


class _CallFailedError(Exception):
    def __init__(self, url: str, why: str) -> None:
        super().__init__(why)
        self.url = url
        self.why = why


class _TlsConnection(http.client.HTTPConnection):
    """HTTPS to ``host`` that checks the certificate against ``server_hostname`` (a Service's DNS name)."""

    def __init__(self, host: str, port: int, timeout: int, context: ssl.SSLContext, server_hostname: str) -> None:
        super().__init__(host, port, timeout=timeout)
        self._context = context
        self._server_hostname = server_hostname

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_hostname)


def _context(ca_bundle: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # An unusable bundle trusts nothing, so the handshake fails as it would on a real server.
        with contextlib.suppress(ValueError, ssl.SSLError):
            context.load_verify_locations(cadata=base64.b64decode(ca_bundle).decode("ascii"))
    return context


# -------------------------------------------------------------------------------- the configuration itself

_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f'"{value}"' for value in values)


def default_configuration(configuration: dict[str, Any]) -> dict[str, Any]:
    """The defaults the real server writes into each webhook of a ValidatingWebhookConfiguration."""
    result = copy.deepcopy(configuration)
    for webhook in result.get("webhooks") or []:
        if not isinstance(webhook, dict):
            continue
        for key, value in (
            ("failurePolicy", "Fail"),
            ("matchPolicy", "Equivalent"),
            ("namespaceSelector", {}),
            ("objectSelector", {}),
            ("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS),
        ):
            webhook.setdefault(key, value)
        for rule in webhook.get("rules") or []:
            if isinstance(rule, dict):
                rule.setdefault("scope", "*")
    return result


def configuration_causes(configuration: dict[str, Any]) -> list[FieldCause]:
    """What the real server refuses in a ValidatingWebhookConfiguration, in its words."""
    causes: list[FieldCause] = []
    seen: set[str] = set()
    for index, webhook in enumerate(configuration.get("webhooks") or []):
        path = f"webhooks[{index}]"
        if not isinstance(webhook, dict):
            causes.append(FieldCause(path, "FieldValueInvalid", "must be an object"))
            continue
        name = str(webhook.get("name") or "")
        if not name:
            causes.append(FieldCause(f"{path}.name", "FieldValueRequired", ""))
        elif name.count(".") < 2 or not _DOMAIN.match(name):
            causes.append(
                FieldCause(
                    f"{path}.name",
                    "FieldValueInvalid",
                    f'"{name}": should be a domain with at least three segments separated by dots',
                )
            )
        elif name in seen:
            causes.append(FieldCause(f"{path}.name", "FieldValueDuplicate", f'"{name}"'))
        seen.add(name)
        side_effects = webhook.get("sideEffects")
        if not side_effects:
            causes.append(
                FieldCause(f"{path}.sideEffects", "FieldValueRequired", "must specify one of None, NoneOnDryRun")
            )
        elif side_effects not in ("None", "NoneOnDryRun"):
            causes.append(
                FieldCause(
                    f"{path}.sideEffects",
                    "FieldValueNotSupported",
                    f'"{side_effects}": supported values: {_quoted(("None", "NoneOnDryRun"))}',
                )
            )
        if not any(v in ("v1", "v1beta1") for v in webhook.get("admissionReviewVersions") or []):
            causes.append(
                FieldCause(f"{path}.admissionReviewVersions", "FieldValueRequired", "must specify one of v1, v1beta1")
            )
        for key, supported in (("failurePolicy", ("Fail", "Ignore")), ("matchPolicy", ("Exact", "Equivalent"))):
            if key in webhook and webhook[key] not in supported:
                causes.append(
                    FieldCause(
                        f"{path}.{key}",
                        "FieldValueNotSupported",
                        f'"{webhook[key]}": supported values: {_quoted(supported)}',
                    )
                )
        timeout = webhook.get("timeoutSeconds")
        if timeout is not None and not (isinstance(timeout, int) and 1 <= timeout <= 30):
            causes.append(
                FieldCause(
                    f"{path}.timeoutSeconds",
                    "FieldValueInvalid",
                    f"{timeout}: the timeout value must be between 1 and 30 seconds",
                )
            )
        causes.extend(_client_config_causes(webhook.get("clientConfig") or {}, f"{path}.clientConfig"))
        for rule_index, rule in enumerate(webhook.get("rules") or []):
            scope = (rule or {}).get("scope", "*") if isinstance(rule, dict) else "*"
            if scope not in ("*", "Cluster", "Namespaced"):
                causes.append(
                    FieldCause(
                        f"{path}.rules[{rule_index}].scope",
                        "FieldValueNotSupported",
                        f'"{scope}": supported values: {_quoted(("*", "Cluster", "Namespaced"))}',
                    )
                )
    return causes


def _client_config_causes(client_config: Any, path: str) -> list[FieldCause]:
    if not isinstance(client_config, dict) or bool(client_config.get("url")) == bool(client_config.get("service")):
        return [FieldCause(path, "FieldValueRequired", "exactly one of url or service is required")]
    if client_config.get("url"):
        scheme = urlsplit(str(client_config["url"])).scheme
        if scheme != "https":
            return [
                FieldCause(
                    f"{path}.url",
                    "FieldValueInvalid",
                    f"\"{scheme}\": 'https' is the only allowed URL scheme; desired format: https://host[/path]",
                )
            ]
        return []
    service = client_config["service"]
    return [
        FieldCause(f"{path}.service.{key}", "FieldValueRequired", "")
        for key in ("namespace", "name")
        if not (isinstance(service, dict) and service.get(key))
    ]


def _denial(name: str, status: Any, warnings: list[str]) -> ApiError:
    """The real server's ``ToStatusErr``: the webhook's own status, its code raised to at least 400."""
    status = dict(status) if isinstance(status, dict) else {}
    code = int(status.get("code") or 0)
    denied_by = f'admission webhook "{name}" denied the request'
    if status.get("message"):
        message = f"{denied_by}: {status['message']}"
    elif status.get("reason"):
        message = f"{denied_by}: {status['reason']}"
    else:
        message = f"{denied_by} without explanation"
    headers = {"Warning": ", ".join("299 - " + json.dumps(text) for text in warnings)} if warnings else {}
    return ApiError(max(code, 400), str(status.get("reason") or ""), message, status.get("details") or {}, headers)


def _gvr(resource: ResourceType) -> dict[str, str]:
    return {"group": resource.group, "version": resource.version, "resource": resource.plural}


def _request(call: AdmissionCall, request_uid: str) -> dict[str, Any]:
    resource = call.resource
    kind = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    request: dict[str, Any] = {
        "uid": request_uid,
        "kind": kind,
        "resource": _gvr(resource),
        "requestKind": kind,
        "requestResource": _gvr(resource),
        "name": call.name,
        "operation": call.operation,
        "userInfo": USER_INFO,
        "object": call.obj,
        "oldObject": call.old,
        "dryRun": call.dry_run,
        "options": {"kind": _OPTIONS_KINDS[call.operation], "apiVersion": "meta.k8s.io/v1"},
    }
    if call.subresource:
        request["subResource"] = call.subresource
    if call.namespace:
        request["namespace"] = call.namespace
    return request


def _listed(values: Any, wanted: str) -> bool:
    return isinstance(values, list) and ("*" in values or wanted in values)


def _resource_listed(values: Any, plural: str, subresource: str | None) -> bool:
    if not isinstance(values, list):
        return False
    if subresource is None:
        return any(v in ("*", plural) for v in values)
    return any(v in ("*/*", f"{plural}/{subresource}", f"*/{subresource}", f"{plural}/*") for v in values)


def _rule_matches(rule: Any, call: AdmissionCall) -> bool:
    if not isinstance(rule, dict):
        return False
    resource = call.resource
    scope = rule.get("scope") or "*"
    in_scope = scope == "*" or (scope == "Namespaced") == resource.namespaced
    return (
        in_scope
        and _listed(rule.get("operations"), call.operation)
        and _listed(rule.get("apiGroups"), resource.group)
        and _listed(rule.get("apiVersions"), resource.version)
        and _resource_listed(rule.get("resources"), resource.plural, call.subresource)
    )


def _labels(obj: dict[str, Any] | None) -> Mapping[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def _matches(webhook: dict[str, Any], call: AdmissionCall) -> bool:
    if not any(_rule_matches(rule, call) for rule in webhook.get("rules") or []):
        return False
    namespace_selector = webhook.get("namespaceSelector") or {}
    if call.resource.namespaced and not selector_matches(namespace_selector, call.namespace_labels):
        return False
    is_namespace = call.resource.plural == "namespaces" and not call.resource.group
    if is_namespace and not (
        selector_matches(namespace_selector, _labels(call.obj))
        or selector_matches(namespace_selector, _labels(call.old))
    ):
        return False
    object_selector = webhook.get("objectSelector") or {}
    return selector_matches(object_selector, _labels(call.obj)) or (
        call.old is not None and selector_matches(object_selector, _labels(call.old))
    )
