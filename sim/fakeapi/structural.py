"""A CRD's structural schema applied to a custom resource as the real API server applies it: prune, default,
validate, and the CEL rules (``x-kubernetes-validations``).

Separate from ``admission`` because it is driven entirely by the CRD's ``openAPIV3Schema`` rather than by
per-kind code, and because its messages must be the real server's word for word (``spec.minSize: Invalid
value: -1: spec.minSize in body should be greater than or equal to 0``): users read them in ``kubectl
apply`` output. The order is the real one: unknown fields are pruned (reported to the caller, who refuses
them under ``fieldValidation=Strict`` or warns), nulls of non-nullable fields are dropped, defaults are
filled where a field is absent, the schema is checked, and the CEL rules run (when the schema check
fails in a way that would keep the rules from reading it, the real server's "some validation rules were not
checked" cause is added instead).
On update, as with the real server's validation ratcheting, a problem in a part of the object the update
did not change is not reported, so an object stored under an older schema can still be updated.

Pure functions only; CEL programs are compiled once per rule text and cached.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from sim.fakeapi.errors import FieldCause

Schema = Mapping[str, Any]
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# The fields of ObjectMeta: a custom resource's metadata is decoded as ObjectMeta whatever its schema says.
_OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
# Schema problems after which the real server does not run the CEL rules (its ``hasBlockingErr``): the rules
# could not read the object. A bad pattern or an out-of-range number does not block them.
_BLOCKING = frozenset(
    {"FieldValueNotSupported", "FieldValueRequired", "FieldValueTooLong", "FieldValueTooMany", "FieldValueTypeInvalid"}
)
_NOT_CHECKED = FieldCause(
    "<nil>",
    "FieldValueInvalid",
    "null: some validation rules were not checked because the "
    "object was invalid; correct the existing errors to complete validation",
)


@dataclass
class Outcome:
    """The object as it will be stored, what was wrong with it, and the unknown fields pruned from it."""

    obj: dict[str, Any]
    causes: list[FieldCause] = field(default_factory=list)
    unknown_fields: list[str] = field(default_factory=list)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _shown(value: Any) -> str:
    """A value as the real server prints it in a cause: strings quoted, numbers bare."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "null" if value is None else str(value)


# ------------------------------------------------------------------------------------------ prune + default


def _preserves(schema: Schema) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def prune(value: Any, schema: Schema, path: str, unknown: list[str]) -> Any:
    """``value`` without the fields the schema does not declare (unless it preserves unknown fields) and
    without nulls of non-nullable fields; every pruned field's path is appended to ``unknown``."""
    if isinstance(value, dict) and (
        schema.get("type") == "object" or "properties" in schema or "additionalProperties" in schema
    ):
        properties: Mapping[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        result: dict[str, Any] = {}
        for key, item in value.items():
            child = properties.get(key) if key in properties else additional if isinstance(additional, dict) else None
            if child is None:
                if _preserves(schema) or additional is True:
                    result[key] = item
                else:
                    unknown.append(_join(path, key))
                continue
            if item is None and not child.get("nullable"):
                continue  # the real server drops nulls it may not store before defaulting
            result[key] = prune(item, child, _join(path, key), unknown)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"], f"{path}[{index}]", unknown) for index, item in enumerate(value)]
    return value


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Fill ``default`` wherever a declared property is absent, then recurse (defaults are defaulted too)."""
    if isinstance(value, dict):
        properties: Mapping[str, Schema] = schema.get("properties") or {}
        result = dict(value)
        for key, child in properties.items():
            if key not in result and "default" in child:
                result[key] = copy.deepcopy(child["default"])
        additional = schema.get("additionalProperties")
        for key, item in result.items():
            found = properties.get(key) if key in properties else additional if isinstance(additional, dict) else None
            if found is not None:
                result[key] = apply_defaults(item, found)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


# -------------------------------------------------------------------------------------------------- validate


def _type_causes(value: Any, schema: Schema, path: str) -> list[FieldCause]:
    wanted = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            return []
        wanted = "integer or string"
    if not wanted:
        return []
    actual = _json_type(value)
    if value is None and schema.get("nullable"):
        return []
    if actual == wanted or (wanted == "number" and actual == "integer"):
        return []
    if wanted == "integer" and actual == "number" and float(value).is_integer():
        return []
    causes = [
        FieldCause(path, "FieldValueTypeInvalid", f'"{actual}": {path} in body must be of type {wanted}: "{actual}"')
    ]
    if wanted == "integer" and actual == "number":
        # The real server adds this second cause for a fractional number where an integer belongs.
        causes.append(
            FieldCause(
                "<nil>", "FieldValueInvalid", f'"": Checked value must be of type integer (default format) in {path}'
            )
        )
    return causes


def _value_causes(value: Any, schema: Schema, path: str) -> list[FieldCause]:
    causes: list[FieldCause] = []
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        supported = ", ".join(_shown(item) for item in enum)
        causes.append(FieldCause(path, "FieldValueNotSupported", f"{_shown(value)}: supported values: {supported}"))
    if isinstance(value, str):
        pattern = schema.get("pattern")
        if pattern is not None and re.search(pattern, value) is None:
            causes.append(
                FieldCause(path, "FieldValueInvalid", f"{_shown(value)}: {path} in body should match '{pattern}'")
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            causes.append(
                FieldCause(
                    path,
                    "FieldValueInvalid",
                    f"{_shown(value)}: {path} in body should be at least {schema['minLength']} chars long",
                )
            )
        if "maxLength" in schema and len(value.encode()) > schema["maxLength"]:
            causes.append(FieldCause(path, "FieldValueTooLong", f"may not be more than {schema['maxLength']} bytes"))
        if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
            causes.append(
                FieldCause(
                    path,
                    "FieldValueInvalid",
                    f"{_shown(value)}: {path} in body must be of type date-time: {_shown(value)}",
                )
            )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema:
            exclusive = bool(schema.get("exclusiveMinimum"))
            if value < schema["minimum"] or (exclusive and value == schema["minimum"]):
                relation = "greater than" if exclusive else "greater than or equal to"
                causes.append(
                    FieldCause(
                        path,
                        "FieldValueInvalid",
                        f"{_shown(value)}: {path} in body should be {relation} {_shown(schema['minimum'])}",
                    )
                )
        if "maximum" in schema:
            exclusive = bool(schema.get("exclusiveMaximum"))
            if value > schema["maximum"] or (exclusive and value == schema["maximum"]):
                relation = "less than" if exclusive else "less than or equal to"
                causes.append(
                    FieldCause(
                        path,
                        "FieldValueInvalid",
                        f"{_shown(value)}: {path} in body should be {relation} {_shown(schema['maximum'])}",
                    )
                )
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            causes.append(
                FieldCause(path, "FieldValueTooMany", f"{len(value)}: must have at most {schema['maxItems']} items")
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            causes.append(
                FieldCause(
                    path,
                    "FieldValueInvalid",
                    f"{len(value)}: {path} in body should have at least {schema['minItems']} items",
                )
            )
        causes.extend(_list_map_causes(value, schema, path))
    return causes


def _list_map_causes(value: list[Any], schema: Schema, path: str) -> list[FieldCause]:
    """``x-kubernetes-list-type: map``/``set``: no two items with the same keys (or the same value)."""
    list_type = schema.get("x-kubernetes-list-type")
    if list_type not in ("map", "set"):
        return []
    keys = schema.get("x-kubernetes-list-map-keys") or []
    seen: list[Any] = []
    causes: list[FieldCause] = []
    for index, item in enumerate(value):
        identity = {key: item.get(key) for key in keys} if list_type == "map" and isinstance(item, dict) else item
        if identity in seen:
            shown = json.dumps(identity, sort_keys=True) if isinstance(identity, dict) else _shown(identity)
            causes.append(FieldCause(f"{path}[{index}]", "FieldValueDuplicate", shown))
        else:
            seen.append(identity)
    return causes


def validate(value: Any, schema: Schema, path: str) -> list[FieldCause]:
    """Every schema problem of ``value`` (already pruned and defaulted), depth first."""
    causes = _type_causes(value, schema, path)
    if causes:
        return causes
    causes = _value_causes(value, schema, path)
    if isinstance(value, dict):
        for required in schema.get("required") or []:
            if required not in value:
                causes.append(FieldCause(_join(path, required), "FieldValueRequired", ""))
        properties: Mapping[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            child = properties.get(key) if key in properties else additional if isinstance(additional, dict) else None
            if child is not None:
                causes.extend(validate(item, child, _join(path, key)))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            causes.extend(validate(item, schema["items"], f"{path}[{index}]"))
    return causes


def _has_rules(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "x-kubernetes-validations" in schema or any(_has_rules(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_rules(v) for v in schema)
    return False


# ------------------------------------------------------------------------------------------------------- CEL

_CEL = celpy.Environment()


@functools.lru_cache(maxsize=512)
def _program(rule: str) -> Callable[[dict[str, Any]], Any]:
    program = _CEL.program(_CEL.compile(rule))
    return lambda activation: program.evaluate(activation)


def _rule_field(path: str, field_path: str) -> str:
    """A rule's ``fieldPath`` (``.cooldownBase``, ``['a.b']``) joined to where the rule sits."""
    if not field_path:
        return path
    parts = re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\['([^']*)'\]|\[(\d+)\]", field_path)
    result = path
    for name, quoted, index in parts:
        result = f"{result}[{index}]" if index else _join(result, name or quoted)
    return result


def cel_causes(value: Any, schema: Schema, path: str, old: Any = None) -> list[FieldCause]:
    """The ``x-kubernetes-validations`` rules ``value`` breaks, at every level of the schema.

    A subtree equal to its old version is skipped: ratcheting would drop whatever it found there, and this
    keeps a ``/status`` write from re-evaluating every rule of an unchanged spec.
    """
    if old is not None and value == old:
        return []
    causes: list[FieldCause] = []
    for rule in schema.get("x-kubernetes-validations") or []:
        text = rule.get("rule", "")
        if "oldSelf" in text and old is None:
            continue  # a transition rule is checked only on update
        activation: dict[str, Any] = {"self": json_to_cel(value)}
        if old is not None:
            activation["oldSelf"] = json_to_cel(old)
        try:
            outcome = _program(text)(activation)
            passed = bool(outcome) and not isinstance(outcome, CELEvalError)
        except (CELEvalError, CELParseError, TypeError, ValueError):
            passed = False
        if not passed:
            message = rule.get("message") or f"failed rule: {text}"
            causes.append(
                FieldCause(
                    _rule_field(path, rule.get("fieldPath", "")), rule.get("reason") or "FieldValueInvalid", message
                )
            )
    properties: Mapping[str, Schema] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    if isinstance(value, dict):
        for key, item in value.items():
            child = properties.get(key) if key in properties else additional if isinstance(additional, dict) else None
            if child is not None:
                old_item = old.get(key) if isinstance(old, dict) else None
                causes.extend(cel_causes(item, child, _join(path, key), old_item))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            causes.extend(cel_causes(item, schema["items"], f"{path}[{index}]", _correlated(item, old, schema)))
    return causes


def _correlated(item: Any, old: Any, schema: Schema) -> Any:
    """The old version of a list item, found as the real server finds it: by key in a list-map, else none."""
    keys = schema.get("x-kubernetes-list-map-keys") or []
    if (
        schema.get("x-kubernetes-list-type") != "map"
        or not keys
        or not isinstance(old, list)
        or not isinstance(item, dict)
    ):
        return None
    return next(
        (
            candidate
            for candidate in old
            if isinstance(candidate, dict) and all(candidate.get(key) == item.get(key) for key in keys)
        ),
        None,
    )


# ----------------------------------------------------------------------------------------------------- entry


def _value_at(obj: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at a cause's field path such as ``spec.env[0].name``."""
    current = obj
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        if index:
            if not isinstance(current, list) or int(index) >= len(current):
                return False, None
            current = current[int(index)]
        else:
            if not isinstance(current, dict) or name not in current:
                return False, None
            current = current[name]
    return True, current


def admit(obj: dict[str, Any], schema: Schema, old: dict[str, Any] | None = None) -> Outcome:
    """Prune, default and validate a custom resource against its version's ``openAPIV3Schema``."""
    unknown: list[str] = []
    body = {key: value for key, value in obj.items() if key not in _ROOT_FIELDS}
    root_properties = {key: value for key, value in (schema.get("properties") or {}).items() if key not in _ROOT_FIELDS}
    body_schema = {**schema, "properties": root_properties}
    pruned = apply_defaults(prune(body, body_schema, "", unknown), body_schema)
    result = {**{key: obj[key] for key in _ROOT_FIELDS if key in obj}, **pruned}
    metadata = result.get("metadata")
    if isinstance(metadata, dict) and not set(metadata) <= _OBJECT_META_FIELDS:
        unknown += [f"metadata.{key}" for key in metadata if key not in _OBJECT_META_FIELDS]
        result["metadata"] = {key: value for key, value in metadata.items() if key in _OBJECT_META_FIELDS}
    unknown.sort()  # the real server lists them sorted
    metadata_schema = (schema.get("properties") or {}).get("metadata") or {}
    causes = [
        cause
        for key in ("name", "generateName")
        if key in (metadata_schema.get("properties") or {}) and key in result.get("metadata", {})
        for cause in _value_causes(result["metadata"][key], metadata_schema["properties"][key], f"metadata.{key}")
    ]
    causes = _ratchet(causes + validate(pruned, body_schema, ""), result, old)
    if any(cause.reason in _BLOCKING for cause in causes):
        return Outcome(result, causes + ([_NOT_CHECKED] if _has_rules(schema) else []), unknown)
    old_body = {key: value for key, value in old.items() if key not in _ROOT_FIELDS} if old is not None else None
    return Outcome(result, causes + _ratchet(cel_causes(pruned, body_schema, "", old_body), result, old), unknown)


def _ratchet(causes: list[FieldCause], new: dict[str, Any], old: dict[str, Any] | None) -> list[FieldCause]:
    """On update, drop problems at fields the update left as they were (the real server's ratcheting)."""
    if old is None:
        return causes

    def unchanged(path: str) -> bool:
        # A path this walk cannot follow (a map key with dots in it) counts as changed: better a true report
        # than a problem let through.
        found_old, old_value = _value_at(old, path)
        found_new, new_value = _value_at(new, path)
        return found_old and found_new and old_value == new_value

    return [cause for cause in causes if cause.field == "<nil>" or not unchanged(cause.field)]
