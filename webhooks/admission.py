"""What the admission webhook decides for one AdmissionReview, with no sockets in sight.

Owns the AdmissionReview v1 wire form (parsing a request, shaping a response) and the cross-object rules that
need to know about other objects: a Node's Group exists, `kubernetesNodeName` and `providerID` are unique among
machines, and a Group's `maxSize` leaves room for its always-on machines. Single-object rules are not written
here: they come from `schemas.validation`, the same functions the CRD generator and the tests use.

Kept apart from the HTTPS server so every decision is a plain function call in tests, and so the server stays a
thin shell that only moves bytes. Other objects are seen through `AdmissionLookup`, which the operator
implements over its watch caches; nothing here talks to Kubernetes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

from pydantic import ValidationError

from schemas import API_GROUP, API_VERSION
from schemas.group import Group
from schemas.labels import GROUP_LABEL
from schemas.node import Node, PowerPolicy, kubernetes_node_name
from schemas.validation import FieldError, power_job_placement_warnings, validate_group, validate_node

logger = logging.getLogger(__name__)

ADMISSION_API_VERSION: Final = "admission.k8s.io/v1"
ADMISSION_KIND: Final = "AdmissionReview"
ALL_NAMESPACES: Final = ""
"""Passed to `AdmissionLookup.nodes` to mean every namespace the operator watches."""

DENIED_CODE: Final = 422
"""Unprocessable Entity: what the API server itself answers for an invalid object."""
LOOKUP_FAILED_CODE: Final = 500
MAX_LISTED_NAMES: Final = 5
"""How many conflicting machine names a message spells out before it says "and N more"."""

CHECKED_OPERATIONS: Final = frozenset({"CREATE", "UPDATE"})


class MalformedReviewError(ValueError):
    """The request body is not an AdmissionReview v1 request; the server answers HTTP 400 with this text."""


class KnownMachine(NamedTuple):
    """One Node CR as the operator's cache knows it, for the uniqueness and capacity rules."""

    name: str
    kubernetes_node_name: str
    """The Kubernetes Node name in effect: `spec.kubernetesNodeName`, else the Node CR's own name."""
    provider_id: str | None
    """The providerID the machine is known by: `spec.providerID`, else the one learned in status, else None."""
    power_policy: str
    """`spec.powerPolicy` (`Auto`, `On`, `Off`, `Maintenance`)."""
    group: str | None
    """The value of the Node CR's group label, None when it has none."""
    namespace: str = ""
    """The Node CR's namespace (needed because the uniqueness rules look across namespaces)."""


class AdmissionLookup(Protocol):
    """What the rules need to know about other objects. The operator implements it over its watch caches.

    Called from the webhook's request threads, concurrently: implementations must be thread-safe and fast
    (the API server gives the whole review 5 seconds). A cache can lag a write by a moment, so `group_exists`
    should confirm a "no" with a live read: `kubectl apply -f` of a Group followed by its Nodes must not be
    refused because the watch has not delivered the Group yet.
    """

    def group_exists(self, namespace: str, name: str) -> bool:
        """True when a Group `name` exists in `namespace`."""
        ...

    def nodes(self, namespace: str) -> Iterable[KnownMachine]:
        """Every Node CR in `namespace`; `ALL_NAMESPACES` ("") means every namespace the operator watches."""
        ...

    def kubernetes_node_exists(self, name: str) -> bool:
        """True when a Kubernetes (core/v1) Node called `name` exists."""
        ...


@dataclass(frozen=True)
class AdmissionDecision:
    """The verdict on one request: allowed or not, every violation, and warnings shown to the user."""

    allowed: bool
    errors: tuple[FieldError, ...] = ()
    warnings: tuple[str, ...] = ()
    message: str = ""
    """The denial text (names every field and reason); empty when allowed."""
    code: int = DENIED_CODE


@dataclass(frozen=True)
class AdmissionRequest:
    """The parts of an AdmissionReview v1 request the rules read."""

    uid: str
    group: str
    version: str
    kind: str
    operation: str
    namespace: str
    name: str
    object: Mapping[str, Any] | None = None
    old_object: Mapping[str, Any] | None = None


def parse_review(body: bytes) -> AdmissionRequest:
    """The request inside an AdmissionReview v1 body; raises MalformedReviewError saying what is wrong. Pure."""
    try:
        review = json.loads(body)
    except RecursionError:
        raise MalformedReviewError("request body is nested too deeply to be a Kubernetes object") from None
    except ValueError as error:
        # Bad UTF-8, bad JSON, and integers longer than Python converts (4300 digits) are all ValueErrors.
        raise MalformedReviewError(f"request body is not valid JSON: {error}") from None
    if not isinstance(review, dict):
        raise MalformedReviewError("request body must be a JSON object (an AdmissionReview)")
    if review.get("apiVersion") != ADMISSION_API_VERSION or review.get("kind") != ADMISSION_KIND:
        raise MalformedReviewError(
            f"expected apiVersion {ADMISSION_API_VERSION} and kind {ADMISSION_KIND}, got "
            f"apiVersion {review.get('apiVersion')!r} and kind {review.get('kind')!r}"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise MalformedReviewError("AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReviewError("AdmissionReview request has no uid")
    kind = request.get("kind")
    if not isinstance(kind, dict):
        raise MalformedReviewError("AdmissionReview request has no kind (group, version, kind)")
    operation = request.get("operation")
    if not isinstance(operation, str):
        raise MalformedReviewError("AdmissionReview request has no operation")
    admitted_object = request.get("object")
    old_object = request.get("oldObject")
    for label, value in (("object", admitted_object), ("oldObject", old_object)):
        if value is not None and not isinstance(value, dict):
            raise MalformedReviewError(f"AdmissionReview request {label} must be a JSON object")
    # A bad `object.metadata` is the user's mistake, denied naming the field; the stored `oldObject` always has
    # object metadata when an API server sends it, so anything else means the review itself is broken.
    if old_object is not None and not isinstance(old_object.get("metadata", {}), dict | None):
        raise MalformedReviewError("AdmissionReview request oldObject.metadata must be a JSON object")
    return AdmissionRequest(
        uid=uid,
        group=str(kind.get("group", "")),
        version=str(kind.get("version", "")),
        kind=str(kind.get("kind", "")),
        operation=operation,
        namespace=str(request.get("namespace") or ""),
        name=str(request.get("name") or ""),
        object=admitted_object,
        old_object=old_object,
    )


def review_response(uid: str, decision: AdmissionDecision) -> dict[str, Any]:
    """The AdmissionReview v1 response body for `decision`, echoing the request uid. Pure."""
    response: dict[str, Any] = {"uid": uid, "allowed": decision.allowed}
    if not decision.allowed:
        response["status"] = {
            "code": decision.code,
            "reason": "Invalid" if decision.code == DENIED_CODE else "InternalError",
            "message": decision.message,
            "details": {
                "causes": [
                    {"reason": "FieldValueInvalid", "field": error.path, "message": error.message}
                    for error in decision.errors
                ]
            },
        }
    if decision.warnings:
        response["warnings"] = list(decision.warnings)
    return {"apiVersion": ADMISSION_API_VERSION, "kind": ADMISSION_KIND, "response": response}


class AdmissionRules:
    """The webhook's judgement: schema rules from `schemas.validation` plus the cross-object rules.

    Only CREATE and UPDATE of our own Group and Node are checked; everything else (DELETE, other kinds) is
    allowed, because the webhook configuration should never have sent it and refusing would only break things.

    On UPDATE a violation the stored object already had is reported as a warning, not a denial: an object
    that predates a rule (or was written while the webhook was down) must still accept a finalizer removal or
    a label change, and the user still learns about the problem. Only violations the update introduces deny.
    """

    def __init__(self, lookup: AdmissionLookup) -> None:
        self._lookup = lookup

    def decide(self, request: AdmissionRequest) -> AdmissionDecision:
        """The verdict on one parsed request. Lookup failures deny with code 500 (failurePolicy is Fail)."""
        checker = self._checker_for(request)
        if checker is None or request.operation not in CHECKED_OPERATIONS:
            return AdmissionDecision(allowed=True)
        if request.object is None:
            raise MalformedReviewError(f"{request.operation} of a {request.kind} carries no object")
        try:
            errors, warnings = checker(request, request.object)
            if request.operation == "UPDATE" and request.old_object is not None:
                previous, _ = checker(request, request.old_object)
                errors, warnings = _ratchet(errors, previous, warnings)
        except Exception as error:  # a broken cache must not crash the server; failurePolicy Fail denies
            logger.exception("admission lookup failed for %s %s/%s", request.kind, request.namespace, request.name)
            message = f"could not check {request.kind} {_display_name(request)}: {type(error).__name__}: {error}"
            return AdmissionDecision(allowed=False, message=message, code=LOOKUP_FAILED_CODE)
        if errors:
            message = f"{request.kind} {_display_name(request)} is invalid: {_numbered(errors)}"
            return AdmissionDecision(allowed=False, errors=tuple(errors), warnings=tuple(warnings), message=message)
        return AdmissionDecision(allowed=True, warnings=tuple(warnings))

    def _checker_for(self, request: AdmissionRequest) -> _Checker | None:
        if request.group != API_GROUP or request.version != API_VERSION:
            return None
        if request.kind == "Group":
            return self._group_problems
        if request.kind == "Node":
            return self._node_problems
        return None

    # --- Group ------------------------------------------------------------------------------------------

    def _group_problems(
        self, request: AdmissionRequest, candidate: Mapping[str, Any]
    ) -> tuple[list[FieldError], list[str]]:
        identified = _with_identity(candidate, request)
        errors = validate_group(identified)
        try:
            group = Group.model_validate(identified)
        except ValidationError:
            return errors, []  # validate_group has already reported why; cross rules need a well-formed object
        namespace = group.metadata.namespace or request.namespace
        always_on = sorted(
            machine.name
            for machine in self._lookup.nodes(namespace)
            if machine.group == group.metadata.name and machine.power_policy == PowerPolicy.ON
        )
        if len(always_on) > group.spec.max_size:
            errors.append(
                FieldError(
                    "spec.maxSize",
                    f"maxSize ({group.spec.max_size}) must not be below the {len(always_on)} machines of this "
                    f"group with powerPolicy On ({_list_names(always_on)}); raise maxSize or set some of them "
                    "to Auto first",
                )
            )
        warnings = [
            f"schedule {window.name!r}: maxSize ({window.max_size}) is below the {len(always_on)} machines of this "
            f"group with powerPolicy On ({_list_names(always_on)}); they stay on while the window is active, so "
            "Cluster Autoscaler sees the group above its maximum then and scales nothing up"
            for window in group.spec.schedules
            if window.max_size is not None and window.max_size < len(always_on)
        ]
        return errors, warnings

    # --- Node -------------------------------------------------------------------------------------------

    def _node_problems(
        self, request: AdmissionRequest, candidate: Mapping[str, Any]
    ) -> tuple[list[FieldError], list[str]]:
        identified = _with_identity(candidate, request)
        errors = validate_node(identified)
        try:
            node = Node.model_validate(identified)
        except ValidationError:
            return errors, []  # validate_node has already reported why; cross rules need a well-formed object
        namespace = node.metadata.namespace or request.namespace
        group = node.metadata.labels.get(GROUP_LABEL)
        label_is_valid = not any(error.path.startswith("metadata.labels") for error in errors)
        if group and label_is_valid and not self._lookup.group_exists(namespace, group):
            errors.append(
                FieldError(
                    f"metadata.labels[{GROUP_LABEL}]",
                    f"labels[{GROUP_LABEL}] names Group {group!r}, which does not exist in namespace "
                    f"{namespace!r}; create the Group first (a Node belongs to a Group of its own namespace)",
                )
            )
        errors.extend(self._uniqueness_errors(node, namespace))
        warnings = list(power_job_placement_warnings(node.spec))
        target = kubernetes_node_name(node)
        if _kubernetes_node_name_changed(request, target) and not self._lookup.kubernetes_node_exists(target):
            warnings.append(
                f"Kubernetes Node {target!r} does not exist (yet): expected while the machine is powered off; "
                "if it is running, check spec.kubernetesNodeName"
            )
        return errors, warnings

    def _uniqueness_errors(self, node: Node, namespace: str) -> list[FieldError]:
        # Kubernetes Nodes and providerIDs are cluster-wide, so two Node CRs in different namespaces naming the
        # same one would fight over one machine: the uniqueness rules look at every watched namespace.
        target = kubernetes_node_name(node)
        provider_id = node.spec.provider_id
        same_target: list[str] = []
        same_provider: list[str] = []
        for machine in self._lookup.nodes(ALL_NAMESPACES):
            other_namespace = machine.namespace or namespace
            if (other_namespace, machine.name) == (namespace, node.metadata.name):
                continue  # the object itself, as stored before this UPDATE
            label = machine.name if other_namespace == namespace else f"{other_namespace}/{machine.name}"
            if machine.kubernetes_node_name == target:
                same_target.append(label)
            if provider_id is not None and machine.provider_id == provider_id:
                same_provider.append(label)
        errors = []
        if same_target:
            origin = "kubernetesNodeName"
            if node.spec.kubernetes_node_name is None:
                origin += " (unset, so the Node name)"
            errors.append(
                FieldError(
                    "spec.kubernetesNodeName",
                    f"{origin} {target!r} is already used by Node {_list_names(sorted(same_target))}; "
                    "each Kubernetes Node belongs to exactly one machine",
                )
            )
        if same_provider:
            errors.append(
                FieldError(
                    "spec.providerID",
                    f"providerID {provider_id!r} is already used by Node {_list_names(sorted(same_provider))}; "
                    "each machine needs its own providerID",
                )
            )
        return errors


class _Checker(Protocol):
    def __call__(
        self, request: AdmissionRequest, candidate: Mapping[str, Any]
    ) -> tuple[list[FieldError], list[str]]: ...


def _with_identity(candidate: Mapping[str, Any], request: AdmissionRequest) -> dict[str, Any]:
    """`candidate` with metadata name/namespace filled from the request when the object leaves them out.

    A `metadata` that is not an object is left as it is, for the schema rules to deny naming `metadata`
    (a list of pairs must not quietly become a mapping).
    """
    original = candidate.get("metadata")
    if original is not None and not isinstance(original, Mapping):
        return dict(candidate)  # not even an empty list or string may pass for the empty metadata
    metadata = dict(original or {})
    metadata.setdefault("name", request.name)
    if not metadata.get("namespace"):
        metadata["namespace"] = request.namespace
    return {**candidate, "metadata": metadata}


def _ratchet(
    errors: list[FieldError], previous: list[FieldError], warnings: list[str]
) -> tuple[list[FieldError], list[str]]:
    already = set(previous)
    introduced = [error for error in errors if error not in already]
    inherited = [f"already invalid before this update: {error}" for error in errors if error in already]
    return introduced, warnings + inherited


def _kubernetes_node_name_changed(request: AdmissionRequest, target: str) -> bool:
    """True on CREATE, and on an UPDATE that points the machine at a different Kubernetes Node."""
    if request.operation != "UPDATE" or request.old_object is None:
        return True
    try:
        previous = Node.model_validate(_with_identity(request.old_object, request))
    except ValidationError:
        return True
    return kubernetes_node_name(previous) != target


def _display_name(request: AdmissionRequest) -> str:
    metadata = (request.object or {}).get("metadata") or {}
    if not isinstance(metadata, Mapping):
        metadata = {}
    name = request.name or str(metadata.get("name") or "")
    namespace = request.namespace or str(metadata.get("namespace") or "")
    return f"{namespace}/{name}" if namespace else name


def _numbered(errors: list[FieldError]) -> str:
    # Messages contain commas and semicolons themselves, so only numbering keeps several of them readable.
    if len(errors) == 1:
        return str(errors[0])
    return " ".join(f"({number}) {error}" for number, error in enumerate(errors, start=1))


def _list_names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED_NAMES])
    hidden = len(names) - MAX_LISTED_NAMES
    return f"{shown} and {hidden} more" if hidden > 0 else shown


def review(body: bytes, rules: AdmissionRules) -> dict[str, Any]:
    """The AdmissionReview response for a raw request body; raises MalformedReviewError for a bad body."""
    request = parse_review(body)
    return review_response(request.uid, rules.decide(request))
