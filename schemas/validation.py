"""The rules a Group or Node must satisfy beyond the shape of each field, as plain functions.

The pydantic models check every field on its own (type, range, pattern). What one field cannot see alone lives
here: minSize against maxSize, a cooldown against its cap, "exactly one of" choices, unique volume names and
mount paths, allocatable against capacity, and the Kubernetes name and label formats that decide whether the
Jobs, labels and Nodes the operator later writes will be accepted at all.

Kept apart from the models on purpose: the operator reads stored objects with the models and must never fail
to read one because a rule was added later; the admission webhook refuses new objects with these rules, and
the CRD generator turns the cheap ones into CEL so the API server refuses them even without the webhook.

Every error is a `FieldError` whose path is spelled as Kubernetes spells field paths (`spec.maxSize`,
`spec.startupJob.env[0].value`, `metadata.labels[infra.homecluster.dev/group]`) and whose message names the
field, says what is wrong and what is expected. Pure: no I/O.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from schemas.common import (
    AUTO,
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    DURATION_PATTERN,
    QUANTITY_PATTERN,
    Metadata,
    Taint,
    TaintEffect,
    Toleration,
    TolerationOperator,
    parse_duration,
    parse_quantity,
)
from schemas.group import (
    MIN_EXERCISE_INTERVAL_SECONDS,
    Exercise,
    Group,
    GroupSpec,
    NodeTemplate,
    PowerReadbackPolicy,
    Schedule,
)
from schemas.labels import GROUP_LABEL, MACHINE_LABEL
from schemas.node import JobTemplate, Node, NodeSpec

MAX_LABEL_VALUE_LENGTH: Final = 63
MAX_NAME_LENGTH: Final = 253
LABEL_VALUE_PATTERN: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
QUALIFIED_NAME_PART_PATTERN: Final = r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"
PROVIDER_ID_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$"
"""`<scheme>://<id>`, the shape every cloud provider and kubelet uses (`k3s://node1`, `homelab://ns/name`)."""
ENV_NAME_PATTERN: Final = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"

# Labels the operator itself writes on Kubernetes Nodes; a user value would fight the operator's.
RESERVED_NODE_LABELS: Final = frozenset({GROUP_LABEL, MACHINE_LABEL})

_PATTERN_MEANINGS: Final = {
    DURATION_PATTERN: "a duration such as 90s, 10m or 1h30m",
    QUANTITY_PATTERN: "a Kubernetes quantity such as 8, 500m or 31Gi",
    DNS_SUBDOMAIN_PATTERN: (
        "a lowercase RFC 1123 name (letters a-z, digits, '-' and '.', "
        "starting and ending with a letter or digit)"
    ),
    DNS_LABEL_PATTERN: (
        "a lowercase RFC 1123 label (letters a-z, digits and '-', starting and ending with a letter or digit)"
    ),
    ENV_NAME_PATTERN: (
        "an environment variable name (letters, digits, '-', '.' and '_', not starting with a digit)"
    ),
    PROVIDER_ID_PATTERN: "a provider id of the form <scheme>://<id>, e.g. k3s://node1",
    r"^/": "an absolute path starting with /",
    r"^[0-9]+(\.[0-9]+)?$": "a decimal number such as 0.25",
}


@dataclass(frozen=True)
class FieldError:
    """One reason an object is refused: where (a Kubernetes field path) and why (a sentence for a person)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# --- Kubernetes name formats (pure predicates, also used by other layers) -------------------------------


def is_dns_subdomain(text: str) -> bool:
    """True for a valid object name: an RFC 1123 subdomain of at most 253 characters."""
    return len(text) <= MAX_NAME_LENGTH and re.fullmatch(DNS_SUBDOMAIN_PATTERN, text) is not None


def is_label_value(text: str) -> bool:
    """True for a valid label value: at most 63 characters, alphanumeric at both ends, may be empty."""
    return len(text) <= MAX_LABEL_VALUE_LENGTH and re.fullmatch(LABEL_VALUE_PATTERN, text) is not None


def is_qualified_name(text: str) -> bool:
    """True for a valid label key, annotation key or taint key: `[prefix/]name` as Kubernetes defines it."""
    prefix, slash, name = text.rpartition("/")
    if slash and not (prefix and is_dns_subdomain(prefix)):
        return False
    return len(name) <= MAX_LABEL_VALUE_LENGTH and re.fullmatch(QUALIFIED_NAME_PART_PATTERN, name) is not None


# --- field paths ----------------------------------------------------------------------------------------


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _item(path: str, index_or_key: int | str) -> str:
    return f"{path}[{index_or_key}]"


def _leaf(path: str) -> str:
    """The last dotted part of a path (`env[0].value` → `value`), ignoring dots inside `[...]`."""
    depth = 0
    for position in range(len(path) - 1, -1, -1):
        character = path[position]
        if character == "]":
            depth += 1
        elif character == "[":
            depth -= 1
        elif character == "." and depth == 0:
            return path[position + 1 :]
    return path


# --- pydantic errors as field errors --------------------------------------------------------------------


def _unwrap(annotation: object) -> object:
    """The type behind Annotated[...] and X | None, so a location can be followed through the models."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin is typing.Union or origin is types.UnionType:
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _model_field(model: type[BaseModel], name: str) -> tuple[str, object] | None:
    """(wire name, annotation) of the field a location segment names, by alias or by Python name."""
    for field_name, info in model.model_fields.items():
        alias = info.alias or field_name
        if name in (alias, field_name):
            return alias, info.annotation
    return None


def _render_location(location: Sequence[int | str], model: type[BaseModel] | None, prefix: str) -> str:
    """A Kubernetes field path for a pydantic error location, with camelCase wire names and [index]/[key]."""
    path = prefix
    current: object = model
    for segment in location:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if isinstance(segment, int):
            path = _item(path, segment)
            arguments = typing.get_args(current)
            current = arguments[0] if origin in (tuple, list) and arguments else None
        elif segment == "[key]":
            continue  # pydantic's marker for "the key itself failed", the key is already in the path
        elif isinstance(current, type) and issubclass(current, BaseModel):
            found = _model_field(current, segment)
            if found is None:
                path, current = _child(path, segment), None
            else:
                path, current = _child(path, found[0]), found[1]
        elif origin is dict:
            path = _item(path, segment)
            current = typing.get_args(current)[1]
        else:
            wire_name = segment if any(character.isupper() for character in segment) else to_camel(segment)
            path, current = _child(path, wire_name), None
    return path


def _describe(error: ErrorDetails) -> str:
    """What is wrong and what is expected, in words a person writing YAML understands."""
    kind = error["type"]
    context: Mapping[str, Any] = error.get("ctx", {})
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field (check its spelling and case)"
    if kind == "value_error":
        return f"is invalid: {context.get('error', error['msg'])}"
    if kind == "string_pattern_mismatch":
        pattern = str(context.get("pattern", ""))
        return f"must be {_PATTERN_MEANINGS.get(pattern, f'text matching {pattern}')}"
    if kind == "enum":
        return f"must be one of {context.get('expected')}"
    if kind == "greater_than_equal":
        return f"must be at least {context.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {context.get('le')}"
    if kind == "string_too_short":
        return f"must be at least {context.get('min_length')} character(s) long"
    if kind == "string_too_long":
        return f"must be at most {context.get('max_length')} characters long"
    if kind == "too_long":
        return f"must have at most {context.get('max_length')} items"
    if kind == "too_short":
        return f"must have at least {context.get('min_length')} items"
    text = error["msg"].replace("Input should be", "must be")
    return text[:1].lower() + text[1:]


def field_errors_from_validation_error(
    error: ValidationError, model: type[BaseModel] | None = None, prefix: str = ""
) -> list[FieldError]:
    """FieldErrors for a pydantic ValidationError raised while validating `model` at `prefix`.

    Paths use the camelCase wire names (`providerID`, not `provider_id`) even when the input used Python
    names, and `[0]` / `[key]` for list items and map entries. Pass the model that was validated so field
    names and map keys can be told apart; without it, string segments are camel-cased as a best guess.
    """
    errors: list[FieldError] = []
    for detail in error.errors():
        path = _render_location(detail["loc"], model, prefix)
        text = _describe(detail)
        value = detail.get("input")
        if detail["type"] not in ("missing", "value_error") and isinstance(value, str | int | float | bool):
            text += f"; got {value!r}"
        errors.append(FieldError(path, f"{_leaf(path) or 'object'} {text}"))
    return errors


REPORTED_PROBLEMS: Final = 3
"""Problems named in a one-line summary (an operator log line, a `status` row); the rest are counted."""


def summarise_validation_error(
    error: ValidationError, model: type[BaseModel] | None = None, limit: int = REPORTED_PROBLEMS
) -> str:
    """The first `limit` problems as `path: message`, then how many more, on one line. Pure.

    The one spelling of a schema problem everywhere a person reads it: the webhook's refusal, the operator's log
    and Events, the Group's InvalidSpec condition and `homelab-autoscaler status` all use these messages, so a
    bad duration reads "bootTimeout must be a duration such as 90s, 10m or 1h30m" in each, never a regex.
    """
    errors = field_errors_from_validation_error(error, model)
    shown = "; ".join(str(problem) for problem in errors[:limit])
    hidden = len(errors) - limit
    return shown + (f"; and {hidden} more" if hidden > 0 else "")


# --- rules shared by both kinds -------------------------------------------------------------------------


def _object_name_errors(metadata: Metadata, kind: str, use: str) -> Iterator[FieldError]:
    name = metadata.name
    if not is_dns_subdomain(name):
        yield FieldError(
            "metadata.name",
            f"name {name!r} must be {_PATTERN_MEANINGS[DNS_SUBDOMAIN_PATTERN]}, "
            f"at most {MAX_NAME_LENGTH} characters",
        )
    elif len(name) > MAX_LABEL_VALUE_LENGTH:
        yield FieldError(
            "metadata.name",
            f"name {name!r} is {len(name)} characters long; a {kind} name is also {use}, "
            f"so it must be at most {MAX_LABEL_VALUE_LENGTH} characters",
        )


def _label_errors(labels: Mapping[str, str], path: str, reserved: Iterable[str] = ()) -> Iterator[FieldError]:
    reserved_keys = frozenset(reserved)
    for key, value in labels.items():
        entry = _item(path, key)
        label = _leaf(entry)
        if not is_qualified_name(key):
            yield FieldError(
                entry,
                f"{label} has an invalid key: expected [prefix/]name, name at most 63 characters of "
                "letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            )
        elif key in reserved_keys:
            yield FieldError(entry, f"{label} is written by the operator itself; choose another key")
        if not is_label_value(value):
            yield FieldError(
                entry,
                f"{label} value {value!r} is not a valid label value: expected at most 63 characters of "
                "letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            )


def _taint_errors(taints: Sequence[Taint], path: str) -> Iterator[FieldError]:
    first_index: dict[tuple[str, TaintEffect], int] = {}
    for index, taint in enumerate(taints):
        entry = _item(path, index)
        if not is_qualified_name(taint.key):
            yield FieldError(
                _child(entry, "key"), f"key {taint.key!r} is not a valid taint key: expected [prefix/]name"
            )
        if taint.value and not is_label_value(taint.value):
            yield FieldError(
                _child(entry, "value"),
                f"value {taint.value!r} is not a valid taint value: expected a label value (letters, digits, "
                "'-', '_' and '.', at most 63 characters)",
            )
        identity = (taint.key, taint.effect)
        if identity in first_index:
            yield FieldError(
                entry,
                f"{_leaf(entry)} repeats key {taint.key!r} with effect {taint.effect.value} "
                f"(already at index {first_index[identity]}); a Node holds each key and effect once",
            )
        else:
            first_index[identity] = index


def _positive_duration_errors(text: str, path: str, why: str) -> Iterator[FieldError]:
    if parse_duration(text) <= 0:
        yield FieldError(path, f"{_leaf(path)} must be longer than 0s ({why}); got {text!r}")


# --- Group ----------------------------------------------------------------------------------------------


def _template_errors(template: NodeTemplate, path: str) -> Iterator[FieldError]:
    capacity_path = _child(path, "capacity")
    pods = template.capacity.get("pods")
    if pods is None:
        yield FieldError(
            capacity_path,
            "capacity must include pods (e.g. pods: 110): a scale-from-zero template without pods "
            "fits no pod",
        )
    elif parse_quantity(pods) <= 0:
        yield FieldError(
            _item(capacity_path, "pods"),
            f"capacity[pods] must be at least 1 (with 0 pods nothing fits the template); got {pods!r}",
        )
    for resource, allocatable in template.allocatable.items():
        entry = _item(_child(path, "allocatable"), resource)
        capacity = template.capacity.get(resource)
        if capacity is None:
            yield FieldError(
                entry,
                f"allocatable[{resource}] has no capacity[{resource}]; list the resource under capacity too",
            )
        elif parse_quantity(allocatable) > parse_quantity(capacity):
            yield FieldError(
                entry,
                f"allocatable[{resource}] ({allocatable}) must not exceed capacity[{resource}] ({capacity})",
            )
    yield from _label_errors(template.labels, _child(path, "labels"))
    yield from _taint_errors(template.taints, _child(path, "taints"))


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _schedule_errors(schedules: Sequence[Schedule], spec: GroupSpec, path: str) -> Iterator[FieldError]:
    seen: set[str] = set()
    for index, window in enumerate(schedules):
        entry = _item(path, index)
        if window.name in seen:
            yield FieldError(_child(entry, "name"), f"schedule name {window.name!r} is used twice; names must differ")
        seen.add(window.name)
        if not _known_zone(window.time_zone):
            yield FieldError(
                _child(entry, "timeZone"),
                f"timeZone {window.time_zone!r} is not an IANA time zone such as Europe/Berlin or UTC",
            )
        if window.start == window.end:
            yield FieldError(
                _child(entry, "end"), f"end ({window.end}) must differ from start (a window needs a length)"
            )
        if window.min_size is None and window.max_size is None:
            yield FieldError(_child(entry, "minSize"), f"schedule {window.name!r} must set minSize, maxSize or both")
        low = window.min_size if window.min_size is not None else spec.min_size
        high = window.max_size if window.max_size is not None else spec.max_size
        if low > high:
            yield FieldError(
                _child(entry, "minSize" if window.min_size is not None else "maxSize"),
                f"schedule {window.name!r}: minSize ({low}) must not be greater than maxSize ({high}) while it is "
                "active (unset sizes are spec.minSize and spec.maxSize)",
            )


def _exercise_errors(exercise: Exercise, path: str) -> Iterator[FieldError]:
    if parse_duration(exercise.every) < MIN_EXERCISE_INTERVAL_SECONDS:
        yield FieldError(
            _child(path, "every"),
            f"every ({exercise.every}) must be at least 1h: each exercise is a real boot and power-off",
        )
    window = exercise.window
    if window is None:
        return
    window_path = _child(path, "window")
    if not _known_zone(window.time_zone):
        yield FieldError(
            _child(window_path, "timeZone"),
            f"timeZone {window.time_zone!r} is not an IANA time zone such as Europe/Berlin or UTC",
        )
    if window.start == window.end:
        yield FieldError(
            _child(window_path, "end"), f"end ({window.end}) must differ from start (a window needs a length)"
        )


def _group_spec_errors(spec: GroupSpec, path: str) -> Iterator[FieldError]:
    if spec.min_size > spec.max_size:
        yield FieldError(
            _child(path, "minSize"),
            f"minSize ({spec.min_size}) must not be greater than maxSize ({spec.max_size})",
        )
    yield from _positive_duration_errors(
        spec.boot_timeout, _child(path, "bootTimeout"), "no machine boots instantly"
    )
    yield from _positive_duration_errors(
        spec.shutdown_timeout, _child(path, "shutdownTimeout"), "no machine shuts down instantly"
    )
    policy_path = _child(path, "failurePolicy")
    policy = spec.failure_policy
    yield from _positive_duration_errors(
        policy.cooldown_base,
        _child(policy_path, "cooldownBase"),
        "a zero cooldown retries a broken machine at once",
    )
    if parse_duration(policy.cooldown_base) > parse_duration(policy.cooldown_cap):
        yield FieldError(
            _child(policy_path, "cooldownBase"),
            f"cooldownBase ({policy.cooldown_base}) must not be longer than "
            f"cooldownCap ({policy.cooldown_cap})",
        )
    options = spec.autoscaling_options
    if options is not None and options.max_node_provision_time not in (None, AUTO):
        yield from _positive_duration_errors(
            options.max_node_provision_time,
            _child(_child(path, "autoscalingOptions"), "maxNodeProvisionTime"),
            "Cluster Autoscaler would give up on every boot at once",
        )
    if spec.template is not None:
        yield from _template_errors(spec.template, _child(path, "template"))
    if spec.gpu_label is not None and not is_qualified_name(spec.gpu_label):
        yield FieldError(
            _child(path, "gpuLabel"),
            f"gpuLabel {spec.gpu_label!r} must be a label key such as nvidia.com/gpu",
        )
    yield from _label_errors(spec.node_labels, _child(path, "nodeLabels"), reserved=RESERVED_NODE_LABELS)
    yield from _taint_errors(spec.node_taints, _child(path, "nodeTaints"))
    yield from _schedule_errors(spec.schedules, spec, _child(path, "schedules"))
    yield from _readback_policy_errors(spec.power_readback, spec, _child(path, "powerReadback"))
    if spec.exercise is not None:
        yield from _exercise_errors(spec.exercise, _child(path, "exercise"))


def _readback_policy_errors(policy: PowerReadbackPolicy, spec: GroupSpec, path: str) -> Iterator[FieldError]:
    yield from _positive_duration_errors(
        policy.transition_interval, _child(path, "transitionInterval"), "a zero interval polls a BMC without pause"
    )
    yield from _positive_duration_errors(
        policy.steady_interval, _child(path, "steadyInterval"), "a zero interval polls a BMC without pause"
    )
    yield from _positive_duration_errors(
        policy.power_on_grace, _child(path, "powerOnGrace"), "no machine switches on instantly"
    )
    if parse_duration(policy.transition_interval) > parse_duration(policy.steady_interval):
        yield FieldError(
            _child(path, "transitionInterval"),
            f"transitionInterval ({policy.transition_interval}) must not be longer than "
            f"steadyInterval ({policy.steady_interval})",
        )
    if parse_duration(policy.power_on_grace) >= parse_duration(spec.boot_timeout):
        yield FieldError(
            _child(path, "powerOnGrace"),
            f"powerOnGrace ({policy.power_on_grace}) must be shorter than bootTimeout ({spec.boot_timeout}): a "
            "power-on that did not take must be noticed before the boot times out",
        )


def validate_group(group: Group | GroupSpec | Mapping[str, Any]) -> list[FieldError]:
    """Every reason `group` would be refused; empty when it is acceptable. Pure.

    Accepts a whole Group (model, or a dict with `spec`/`metadata` as found in an AdmissionReview) or only
    its spec (model or dict). Paths always start at the object root (`spec.maxSize`); the name rules apply
    only when metadata is given. Field-level errors (types, patterns) are reported first and alone: the
    cross-field rules need a well-formed spec to say anything useful.
    """
    metadata: Metadata | None
    if isinstance(group, Group):
        metadata, spec = group.metadata, group.spec
    elif isinstance(group, GroupSpec):
        metadata, spec = None, group
    else:
        whole = "spec" in group or "metadata" in group
        try:
            if whole:
                parsed = Group.model_validate(group)
                metadata, spec = parsed.metadata, parsed.spec
            else:
                metadata, spec = None, GroupSpec.model_validate(group)
        except ValidationError as error:
            return field_errors_from_validation_error(
                error, Group if whole else GroupSpec, "" if whole else "spec"
            )
    errors: list[FieldError] = []
    if metadata is not None:
        errors.extend(_object_name_errors(metadata, "Group", "the value of the group label on member Nodes"))
    errors.extend(_group_spec_errors(spec, "spec"))
    return errors


# --- Node -----------------------------------------------------------------------------------------------

JOBS_AND_POWER_MESSAGE: Final = (
    "a Node is powered either by Jobs (startupJob and shutdownJob) or natively (power), not both"
)
NEITHER_JOBS_NOR_POWER_MESSAGE: Final = (
    "a Node needs both startupJob and shutdownJob, or power (native Wake-on-LAN, IPMI, Redfish or SSH drivers)"
)
"""The two ways to power a machine, as the webhook and the CRD's CEL rules both say it."""


def _exactly_one_error(
    path: str, what: str, first: tuple[str, bool], second: tuple[str, bool]
) -> FieldError | None:
    (first_name, first_set), (second_name, second_set) = first, second
    if first_set == second_set:
        found = "both" if first_set else "neither"
        return FieldError(
            path, f"{what} must set exactly one of {first_name} or {second_name}; it sets {found}"
        )
    return None


def _toleration_errors(toleration: Toleration, path: str) -> Iterator[FieldError]:
    label = _leaf(path)
    if toleration.operator is TolerationOperator.EXISTS and toleration.value:
        yield FieldError(_child(path, "value"), f"{label} has operator Exists, so value must be empty")
    if not toleration.key and toleration.operator is not TolerationOperator.EXISTS:
        yield FieldError(_child(path, "operator"), f"{label} has no key, so operator must be Exists")
    if toleration.key and not is_qualified_name(toleration.key):
        yield FieldError(
            _child(path, "key"), f"{label} key {toleration.key!r} must be a taint key ([prefix/]name)"
        )
    if toleration.toleration_seconds is not None and toleration.effect is not TaintEffect.NO_EXECUTE:
        yield FieldError(
            _child(path, "tolerationSeconds"), f"{label} sets tolerationSeconds, which needs effect NoExecute"
        )


def _job_errors(job: JobTemplate, path: str) -> Iterator[FieldError]:
    for index, variable in enumerate(job.env):
        entry = _item(_child(path, "env"), index)
        what = f"{_leaf(entry)} ({variable.name})"
        error = _exactly_one_error(
            entry, what, ("value", variable.value is not None), ("valueFrom", variable.value_from is not None)
        )
        if error:
            yield error
        if variable.value_from is not None:
            source = variable.value_from
            error = _exactly_one_error(
                _child(entry, "valueFrom"),
                f"{what} valueFrom",
                ("secretKeyRef", source.secret_key_ref is not None),
                ("configMapKeyRef", source.config_map_key_ref is not None),
            )
            if error:
                yield error
    for index, env_source in enumerate(job.env_from):
        entry = _item(_child(path, "envFrom"), index)
        error = _exactly_one_error(
            entry,
            _leaf(entry),
            ("secretRef", env_source.secret_ref is not None),
            ("configMapRef", env_source.config_map_ref is not None),
        )
        if error:
            yield error
    first_name: dict[str, int] = {}
    first_path: dict[str, int] = {}
    for index, volume in enumerate(job.volumes):
        entry = _item(_child(path, "volumes"), index)
        label = f"{_leaf(entry)} ({volume.name})"
        error = _exactly_one_error(
            entry,
            label,
            ("secretName", volume.secret_name is not None),
            ("configMapName", volume.config_map_name is not None),
        )
        if error:
            yield error
        if volume.name in first_name:
            yield FieldError(
                _child(entry, "name"),
                f"{label} name repeats volumes[{first_name[volume.name]}]; volume names must be unique",
            )
        else:
            first_name[volume.name] = index
        mount_path = volume.mount_path.rstrip("/") or "/"
        if mount_path in first_path:
            yield FieldError(
                _child(entry, "mountPath"),
                f"{label} mountPath {volume.mount_path!r} repeats volumes[{first_path[mount_path]}]; "
                "each volume needs its own mount path",
            )
        else:
            first_path[mount_path] = index
    for index, toleration in enumerate(job.tolerations):
        yield from _toleration_errors(toleration, _item(_child(path, "tolerations"), index))
    yield from _label_errors(job.node_selector, _child(path, "nodeSelector"))
    if job.resources is not None:
        for resource, request in job.resources.requests.items():
            limit = job.resources.limits.get(resource)
            if limit is not None and parse_quantity(request) > parse_quantity(limit):
                yield FieldError(
                    _item(_child(_child(path, "resources"), "requests"), resource),
                    f"requests[{resource}] ({request}) must not exceed limits[{resource}] ({limit})",
                )


def _membership_errors(metadata: Metadata) -> Iterator[FieldError]:
    group = metadata.labels.get(GROUP_LABEL)
    if group is None:
        yield FieldError(
            "metadata.labels",
            f"labels must include {GROUP_LABEL} naming the machine's Group (a Group in the same namespace)",
        )
    elif not (is_dns_subdomain(group) and len(group) <= MAX_LABEL_VALUE_LENGTH):
        yield FieldError(
            _item("metadata.labels", GROUP_LABEL),
            f"labels[{GROUP_LABEL}] {group!r} must be the name of a Group: "
            f"{_PATTERN_MEANINGS[DNS_SUBDOMAIN_PATTERN]}, at most {MAX_LABEL_VALUE_LENGTH} characters",
        )


def _node_spec_errors(spec: NodeSpec, path: str) -> Iterator[FieldError]:
    if spec.provider_id is not None and re.fullmatch(PROVIDER_ID_PATTERN, spec.provider_id) is None:
        yield FieldError(
            _child(path, "providerID"),
            f"providerID {spec.provider_id!r} must look like <scheme>://<id>, e.g. k3s://node1, "
            "exactly as the kubelet registers it",
        )
    pricing = spec.pricing
    if pricing.standby_watts and pricing.power_watts and pricing.standby_watts > pricing.power_watts:
        yield FieldError(
            _child(_child(path, "pricing"), "standbyWatts"),
            f"standbyWatts ({pricing.standby_watts}) must not exceed powerWatts ({pricing.power_watts}): a machine "
            "draws less off than on",
        )
    yield from _power_way_errors(spec, path)
    if spec.startup_job is not None:
        yield from _job_errors(spec.startup_job, _child(path, "startupJob"))
    if spec.shutdown_job is not None:
        yield from _job_errors(spec.shutdown_job, _child(path, "shutdownJob"))


def power_way_errors(spec: NodeSpec) -> tuple[FieldError, ...]:
    """Why `spec` names no single workable way to power the machine (both Jobs, or `power` whose drivers can switch
    it on and off); empty when it does. Pure.

    The operator skips a stored Node with such errors (one the CRD's rules refuse today, stored under an older CRD)
    rather than guess how to power it.
    """
    return tuple(_power_way_errors(spec, "spec"))


def split_power_problem(problem: str) -> tuple[str, str]:
    """`spec.power: nothing can ...` → (`spec.power`, `nothing can ...`): a PowerSpec problem as path and text."""
    where, _, message = problem.partition(": ")
    return (where, message) if message else ("spec.power", problem)


def _power_way_errors(spec: NodeSpec, path: str) -> Iterator[FieldError]:
    """Exactly one way to power the machine: both Jobs, or `power` (whose driver combination must work)."""
    jobs = (spec.startup_job is not None, spec.shutdown_job is not None)
    if spec.power is not None:
        if any(jobs):
            yield FieldError(_child(path, "power"), JOBS_AND_POWER_MESSAGE)
        for problem in spec.power.problems():
            where, message = split_power_problem(problem)
            yield FieldError(where, message)
    elif not all(jobs):
        missing = "startupJob" if not jobs[0] else "shutdownJob"
        yield FieldError(_child(path, missing), NEITHER_JOBS_NOR_POWER_MESSAGE)


def power_job_placement_warnings(spec: NodeSpec) -> tuple[str, ...]:
    """Power Jobs whose pods may be scheduled on any machine, each with what to do about it. Pure.

    A power Job without a nodeSelector may land on a machine this operator powers off, and while its pod is pending
    Cluster Autoscaler counts it like any other pod and may scale a group up just to run it (seen with the real CA).
    A warning, not a refusal: a cluster whose every node stays on has nothing to fear.
    """
    return tuple(
        f"spec.{field} has no nodeSelector: its pod may be scheduled on a machine this operator powers off, and "
        "while it is pending Cluster Autoscaler may scale a group up to run it; pin power Jobs to a machine that "
        "stays on (see examples/)"
        for field, job in (("startupJob", spec.startup_job), ("shutdownJob", spec.shutdown_job))
        if job is not None and not job.node_selector
    )


def validate_node(node: Node | NodeSpec | Mapping[str, Any]) -> list[FieldError]:
    """Every reason `node` would be refused; empty when it is acceptable. Pure.

    Accepts a whole Node (model, or a dict with `spec`/`metadata` as found in an AdmissionReview) or only
    its spec. Name and group-membership rules need metadata, so they apply only to a whole Node: the
    webhook must pass the whole object. Field-level errors are reported first and alone.
    """
    metadata: Metadata | None
    if isinstance(node, Node):
        metadata, spec = node.metadata, node.spec
    elif isinstance(node, NodeSpec):
        metadata, spec = None, node
    else:
        whole = "spec" in node or "metadata" in node
        try:
            if whole:
                parsed = Node.model_validate(node)
                metadata, spec = parsed.metadata, parsed.spec
            else:
                metadata, spec = None, NodeSpec.model_validate(node)
        except ValidationError as error:
            return field_errors_from_validation_error(
                error, Node if whole else NodeSpec, "" if whole else "spec"
            )
    errors: list[FieldError] = []
    if metadata is not None:
        errors.extend(
            _object_name_errors(metadata, "Node", "the value of a label on its Jobs and Kubernetes Node")
        )
        errors.extend(_membership_errors(metadata))
    errors.extend(_node_spec_errors(spec, "spec"))
    return errors
