"""Kubernetes ``Status`` failures as one exception type, and constructors for every reason the fake uses.

Separate because the store, the patch engine, admission and the HTTP layer all fail the same way and must
produce byte-for-byte the same ``Status`` bodies a real API server sends (``kind: Status``, ``reason``,
``details{name, group, kind}``, ``code``); clients branch on those fields, so they live in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldCause:
    """One field-level reason inside an ``Invalid`` status (``details.causes[]``)."""

    field: str
    reason: str  # e.g. FieldValueForbidden, FieldValueRequired, FieldValueInvalid
    message: str


class ApiError(Exception):
    """A request failed with a Kubernetes ``Status``; ``status_body()`` is what goes on the wire."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.headers: dict[str, str] = dict(headers or {})

    def status_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if not self.reason:
            del body["reason"]  # a Status a handler returns (rather than an error) may carry no reason
        if self.details:
            body["details"] = self.details
        return body


@dataclass(frozen=True)
class GroupResource:
    """The ``group`` + plural ``resource`` pair that real error messages are phrased with."""

    group: str
    resource: str

    @property
    def qualified(self) -> str:
        return self.resource if not self.group else f"{self.resource}.{self.group}"


def _details(target: GroupResource, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": target.resource}
    if target.group:
        details["group"] = target.group
    return details


def not_found(target: GroupResource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{target.qualified} "{name}" not found', _details(target, name))


def already_exists(target: GroupResource, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{target.qualified} "{name}" already exists', _details(target, name))


def conflict(target: GroupResource, name: str, why: str) -> ApiError:
    message = f'Operation cannot be fulfilled on {target.qualified} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(target, name))


STALE_OBJECT = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(kind: str, group: str, name: str, causes: Sequence[FieldCause]) -> ApiError:
    """422 Invalid, phrased like the real server: ``Kind.group "name" is invalid: field: Reason: detail``."""
    qualified_kind = kind if not group else f"{kind}.{group}"
    texts = [f"{cause.field}: {_cause_text(cause)}" for cause in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "causes": [{"reason": c.reason, "message": _cause_text(c), "field": c.field} for c in causes],
    }
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {joined}', details)


_REASON_TEXTS = {
    "FieldValueForbidden": "Forbidden",
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueTypeInvalid": "Invalid value",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
}


def _cause_text(cause: FieldCause) -> str:
    """``Reason text: detail``, or the reason text alone when there is no detail (``Required value``)."""
    text = _reason_text(cause.reason)
    return f"{text}: {cause.message}" if cause.message else text


def _reason_text(reason: str) -> str:
    return _REASON_TEXTS.get(reason, reason)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unprocessable(message: str) -> ApiError:
    """422 without field causes: what the real server answers when a JSON patch cannot be applied."""
    return ApiError(422, "Invalid", message)


def forbidden(target: GroupResource, name: str, why: str) -> ApiError:
    message = f'{target.qualified} "{name}" is forbidden: {why}'
    return ApiError(403, "Forbidden", message, _details(target, name))


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def resource_not_served() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def unsupported_media_type(content_type: str, accepted: Sequence[str]) -> ApiError:
    message = (
        f"the body of the request was in an unknown format ({content_type}) - accepted media types include: "
        + ", ".join(accepted)
    )
    return ApiError(415, "UnsupportedMediaType", message)


def unknown_body_format(accepted: Sequence[str]) -> ApiError:
    """415 for a create/update body in a media type the server does not decode (e.g. protobuf here)."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: " + ", ".join(accepted),
    )


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def too_many_requests(retry_after_seconds: int) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "the server has received too many requests and has asked us to try again later",
        {"retryAfterSeconds": retry_after_seconds},
        {"Retry-After": str(retry_after_seconds)},
    )


def service_unavailable(retry_after_seconds: int) -> ApiError:
    return ApiError(
        503,
        "ServiceUnavailable",
        "the server is currently unable to handle the request",
        {"retryAfterSeconds": retry_after_seconds},
        {"Retry-After": str(retry_after_seconds)},
    )


EVICTION_REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


def disruption_budget_refused(budget: str, desired_healthy: int, current_healthy: int) -> ApiError:
    """429 from the Eviction API when the pod's budget allows no disruption now; no Retry-After, as on a real
    server (clients such as ``kubectl drain`` retry on their own schedule)."""
    cause = {
        "reason": "DisruptionBudget",
        "message": f"The disruption budget {budget} needs {desired_healthy} healthy pods and has "
        f"{current_healthy} currently",
    }
    return ApiError(429, "TooManyRequests", EVICTION_REFUSED, {"causes": [cause]})


def several_disruption_budgets() -> ApiError:
    """What the Eviction API answers when more than one budget selects the pod: a bare 500 Status, no reason."""
    return ApiError(
        500, "", "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    )
