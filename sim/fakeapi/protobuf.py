"""Decoding the Kubernetes protobuf bodies kubectl sends for built-in kinds into the JSON form the store keeps.

Separate because it exists for one client behaviour: kubectl 1.32's generators (``kubectl create namespace``,
``create secret generic``, ``create configmap``, ``create serviceaccount``, ``create job``, ``create pdb``)
send ``application/vnd.kubernetes.protobuf`` and do not fall back to JSON when a server answers 415. The
envelope is ``k8s\\x00`` plus a ``runtime.Unknown`` (type meta, raw message); the raw message is decoded by
the field numbers of k8s.io/api's ``generated.proto`` for the kinds below, and nothing else. Decoding is
strict on purpose: a field this table does not know is refused (415 naming it) rather than dropped, so a
create never silently loses what the user asked for. Defaults of the Go types (empty strings, zero numbers,
empty messages) are left out, as the JSON encoding omits them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sim.fakeapi.admission import format_timestamp
from sim.fakeapi.errors import ApiError, bad_request

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"


@dataclass(frozen=True)
class Field:
    """One field of a message: its JSON name and how to read its wire value."""

    name: str
    kind: str  # string, bool, int, time, message, map, map-bytes, map-quantity, intorstring, ignored
    repeated: bool = False
    message: Callable[[], Mapping[int, Field]] | None = None


# The status a client sends with a Job or a budget: the server resets it on create, so it is not decoded.
_CREATE_IGNORES_STATUS = Field("status", "ignored")


def _owner_reference() -> Mapping[int, Field]:
    return {
        1: Field("kind", "string"),
        3: Field("name", "string"),
        4: Field("uid", "string"),
        5: Field("apiVersion", "string"),
        6: Field("controller", "bool"),
        7: Field("blockOwnerDeletion", "bool"),
    }


def _object_meta() -> Mapping[int, Field]:
    return {
        1: Field("name", "string"),
        2: Field("generateName", "string"),
        3: Field("namespace", "string"),
        4: Field("selfLink", "string"),
        5: Field("uid", "string"),
        6: Field("resourceVersion", "string"),
        7: Field("generation", "int"),
        8: Field("creationTimestamp", "time"),
        9: Field("deletionTimestamp", "time"),
        10: Field("deletionGracePeriodSeconds", "int"),
        11: Field("labels", "map"),
        12: Field("annotations", "map"),
        13: Field("ownerReferences", "message", True, _owner_reference),
        14: Field("finalizers", "string", True),
    }


def _label_requirement() -> Mapping[int, Field]:
    return {1: Field("key", "string"), 2: Field("operator", "string"), 3: Field("values", "string", True)}


def _label_selector() -> Mapping[int, Field]:
    return {1: Field("matchLabels", "map"), 2: Field("matchExpressions", "message", True, _label_requirement)}


def _namespace() -> Mapping[int, Field]:
    return {
        1: Field("metadata", "message", message=_object_meta),
        2: Field("spec", "message", message=lambda: {1: Field("finalizers", "string", True)}),
        3: Field("status", "message", message=lambda: {1: Field("phase", "string")}),
    }


def _config_map() -> Mapping[int, Field]:
    return {
        1: Field("metadata", "message", message=_object_meta),
        2: Field("data", "map"),
        3: Field("binaryData", "map-bytes"),
        4: Field("immutable", "bool"),
    }


def _secret() -> Mapping[int, Field]:
    return {
        1: Field("metadata", "message", message=_object_meta),
        2: Field("data", "map-bytes"),
        3: Field("type", "string"),
        4: Field("immutable", "bool"),
        5: Field("stringData", "map"),
    }


def _object_reference() -> Mapping[int, Field]:
    return {
        1: Field("kind", "string"),
        2: Field("namespace", "string"),
        3: Field("name", "string"),
        4: Field("uid", "string"),
        5: Field("apiVersion", "string"),
        6: Field("resourceVersion", "string"),
        7: Field("fieldPath", "string"),
    }


def _service_account() -> Mapping[int, Field]:
    return {
        1: Field("metadata", "message", message=_object_meta),
        2: Field("secrets", "message", True, _object_reference),
        3: Field("imagePullSecrets", "message", True, lambda: {1: Field("name", "string")}),
        4: Field("automountServiceAccountToken", "bool"),
    }


def _budget() -> Mapping[int, Field]:
    spec = {
        1: Field("minAvailable", "intorstring"),
        2: Field("selector", "message", message=_label_selector),
        3: Field("maxUnavailable", "intorstring"),
        4: Field("unhealthyPodEvictionPolicy", "string"),
    }
    return {
        1: Field("metadata", "message", message=_object_meta),
        2: Field("spec", "message", message=lambda: spec),
        3: _CREATE_IGNORES_STATUS,
    }


def _resource_requirements() -> Mapping[int, Field]:
    return {1: Field("limits", "map-quantity"), 2: Field("requests", "map-quantity")}


def _container() -> Mapping[int, Field]:
    return {
        1: Field("name", "string"),
        2: Field("image", "string"),
        3: Field("command", "string", True),
        4: Field("args", "string", True),
        5: Field("workingDir", "string"),
        7: Field("env", "message", True, lambda: {1: Field("name", "string"), 2: Field("value", "string")}),
        8: Field("resources", "message", message=_resource_requirements),
        13: Field("terminationMessagePath", "string"),
        14: Field("imagePullPolicy", "string"),
        20: Field("terminationMessagePolicy", "string"),
    }


def _pod_spec() -> Mapping[int, Field]:
    return {
        2: Field("containers", "message", True, _container),
        3: Field("restartPolicy", "string"),
        8: Field("serviceAccountName", "string"),
        10: Field("nodeName", "string"),
        20: Field("initContainers", "message", True, _container),
    }


def _job() -> Mapping[int, Field]:
    template = {1: Field("metadata", "message", message=_object_meta), 2: Field("spec", "message", message=_pod_spec)}
    spec = {
        1: Field("parallelism", "int"),
        2: Field("completions", "int"),
        3: Field("activeDeadlineSeconds", "int"),
        4: Field("selector", "message", message=_label_selector),
        5: Field("manualSelector", "bool"),
        6: Field("template", "message", message=lambda: template),
        7: Field("backoffLimit", "int"),
        8: Field("ttlSecondsAfterFinished", "int"),
        10: Field("suspend", "bool"),
    }
    return {
        1: Field("metadata", "message", message=_object_meta),
        2: Field("spec", "message", message=lambda: spec),
        3: _CREATE_IGNORES_STATUS,
    }


_KINDS: dict[tuple[str, str], Callable[[], Mapping[int, Field]]] = {
    ("v1", "Namespace"): _namespace,
    ("v1", "ConfigMap"): _config_map,
    ("v1", "Secret"): _secret,
    ("v1", "ServiceAccount"): _service_account,
    ("policy/v1", "PodDisruptionBudget"): _budget,
    ("batch/v1", "Job"): _job,
}
# Fields whose presence means "set" even at their zero value (Go pointers), so `false`/0 must survive.
_POINTER_FIELDS = {
    "immutable",
    "automountServiceAccountToken",
    "controller",
    "blockOwnerDeletion",
    "manualSelector",
    "suspend",
    "parallelism",
    "completions",
    "backoffLimit",
    "activeDeadlineSeconds",
    "ttlSecondsAfterFinished",
    "deletionGracePeriodSeconds",
}


class _UndecodableError(Exception):
    """A body this module cannot decode faithfully; answered 415."""


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise ValueError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value): varints as int, length-delimited as bytes."""
    fields: list[tuple[int, int, Any]] = []
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == 0:
            value, position = _varint(data, position)
        elif wire_type == 2:
            length, position = _varint(data, position)
            if position + length > len(data):
                raise ValueError("truncated field")
            value, position = data[position : position + length], position + length
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            value, position = int.from_bytes(data[position : position + size], "little"), position + size
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        fields.append((number, wire_type, value))
    return fields


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _entry(data: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for number, _, raw in _fields(data):
        if number == 1:
            key = raw.decode("utf-8")
        elif number == 2:
            value = raw
    return key, value


def _quantity(data: bytes) -> str:
    return next((raw.decode("utf-8") for number, _, raw in _fields(data) if number == 1), "")


def _value(field: Field, wire_type: int, raw: Any, path: str) -> Any:
    if (
        field.kind in ("string", "bytes", "message", "map", "map-bytes", "map-quantity", "intorstring", "time")
        and wire_type != 2
    ):
        raise _UndecodableError(f"{path}: unexpected wire type {wire_type}")
    if field.kind == "string":
        return raw.decode("utf-8")
    if field.kind == "bool":
        return bool(raw)
    if field.kind == "int":
        return _signed(raw)
    if field.kind == "time":
        seconds = next((_signed(v) for n, _, v in _fields(raw) if n == 1), 0)
        if not seconds:
            return None
        return format_timestamp(float(seconds))
    if field.kind == "intorstring":
        parts = {n: v for n, _, v in _fields(raw)}
        return parts.get(3, b"").decode("utf-8") if parts.get(1) == 1 else _signed(parts.get(2, 0))
    if field.kind == "message":
        assert field.message is not None
        return _message(raw, field.message(), path)
    raise _UndecodableError(f"{path}: unknown field kind {field.kind}")


def _message(data: bytes, schema: Mapping[int, Field], path: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for number, wire_type, raw in _fields(data):
        field = schema.get(number)
        if field is None:
            if (wire_type == 2 and not raw) or (wire_type == 0 and not raw):
                continue  # an unset field of a type this table does not describe: nothing is lost
            raise _UndecodableError(f"field {number} of {path or 'the object'} is not understood by the fake API")
        where = f"{path}.{field.name}" if path else field.name
        if field.kind == "ignored":
            continue
        if field.kind in ("map", "map-bytes", "map-quantity"):
            key, value = _entry(raw)
            decoded: Any = (
                base64.b64encode(value).decode("ascii")
                if field.kind == "map-bytes"
                else _quantity(value)
                if field.kind == "map-quantity"
                else value.decode("utf-8")
            )
            result.setdefault(field.name, {})[key] = decoded
        elif field.repeated:
            result.setdefault(field.name, []).append(_value(field, wire_type, raw, where))
        else:
            result[field.name] = _value(field, wire_type, raw, where)
    return {
        key: value for key, value in result.items() if key in _POINTER_FIELDS or value not in ("", 0, None, {}, False)
    }


def decode(body: bytes, accepted: tuple[str, ...]) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded built-in object; 415 for kinds or fields not decoded here."""

    def refuse(why: str) -> ApiError:
        return ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - {why}; "
            "accepted media types include: " + ", ".join(accepted),
        )

    if not body.startswith(_MAGIC):
        raise bad_request("the request body is not a Kubernetes protobuf message (no k8s\\x00 prefix)")
    try:
        envelope = {number: raw for number, _, raw in _fields(body[len(_MAGIC) :])}
        type_meta = {number: raw.decode("utf-8") for number, _, raw in _fields(envelope.get(1, b""))}
        api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
        schema = _KINDS.get((api_version, kind))
        if schema is None:
            raise refuse(
                f"the fake API decodes protobuf only for {', '.join(k for _, k in _KINDS)}, not {api_version} {kind}"
            )
        if envelope.get(3):
            raise refuse("content encodings are not supported")
        return {"apiVersion": api_version, "kind": kind, **_message(envelope.get(2, b""), schema(), "")}
    except _UndecodableError as error:
        raise refuse(str(error)) from error
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"the request body is not a valid protobuf message: {error}") from error
