"""The three PATCH dialects the API server accepts, as pure functions over JSON values.

Separate because each dialect has its own RFC or Kubernetes rulebook and its own error classes, and the
store only needs "old object + patch bytes -> new object". ``PatchFormatError`` means the patch itself is
malformed (the server answers 400); ``PatchApplyError`` means a well-formed patch does not apply to this
object, e.g. a failed JSON-patch ``test`` (the server answers 422).

Strategic merge is driven by a table of list paths (dotted, list items add no segment) mapped to their merge
key, or to ``None`` for lists of scalars that are merged as sets (``metadata.finalizers``). Lists not in the
table are atomic and replaced whole, exactly like the real server: note that Node ``spec.taints`` is atomic.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

JsonValue = Any


class PatchFormatError(ValueError):
    """The patch document is not a valid patch of its declared type (HTTP 400)."""


class PatchApplyError(ValueError):
    """The patch is well formed but cannot be applied to the current object (HTTP 422)."""


def json_equal(left: JsonValue, right: JsonValue) -> bool:
    """JSON equality: ``true`` is not ``1``, ``1`` equals ``1.0``, objects compare key by key."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left == right
    return type(left) is type(right) and bool(left == right)


# --- RFC 7386 JSON merge patch -------------------------------------------------------------------------


def merge_patch(target: JsonValue, patch: JsonValue) -> JsonValue:
    """Apply an RFC 7386 merge patch; ``null`` deletes, objects merge, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 JSON patch -------------------------------------------------------------------------------


def _pointer_tokens(pointer: Any) -> list[str]:
    if not isinstance(pointer, str):
        raise PatchFormatError(f"JSON pointer must be a string, got {pointer!r}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchFormatError(f"JSON pointer {pointer!r} must start with '/'")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _list_index(container: list[Any], token: str, *, allow_end: bool, pointer: str) -> int:
    if allow_end and token == "-":
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchApplyError(f"invalid array index {token!r} in {pointer!r}")
    index = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if index > limit:
        raise PatchApplyError(f"array index {index} out of bounds in {pointer!r}")
    return index


def _resolve_parent(document: JsonValue, tokens: list[str], pointer: str) -> JsonValue:
    current = document
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise PatchApplyError(f"doc is missing path: {pointer!r}")
            current = current[token]
        elif isinstance(current, list):
            current = current[_list_index(current, token, allow_end=False, pointer=pointer)]
        else:
            raise PatchApplyError(f"doc is missing path: {pointer!r}")
    return current


def _get(document: JsonValue, pointer: str) -> JsonValue:
    tokens = _pointer_tokens(pointer)
    if not tokens:
        return document
    parent = _resolve_parent(document, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchApplyError(f"doc is missing path: {pointer!r}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_list_index(parent, last, allow_end=False, pointer=pointer)]
    raise PatchApplyError(f"doc is missing path: {pointer!r}")


def _add(document: JsonValue, pointer: str, value: JsonValue) -> JsonValue:
    tokens = _pointer_tokens(pointer)
    if not tokens:
        return value
    parent = _resolve_parent(document, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_list_index(parent, last, allow_end=True, pointer=pointer), value)
    else:
        raise PatchApplyError(f"doc is missing path: {pointer!r}")
    return document


def _remove(document: JsonValue, pointer: str) -> tuple[JsonValue, JsonValue]:
    tokens = _pointer_tokens(pointer)
    if not tokens:
        raise PatchApplyError("cannot remove the whole document")
    parent = _resolve_parent(document, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchApplyError(f"unable to remove nonexistent key: {last} (path {pointer!r})")
        return document, parent.pop(last)
    if isinstance(parent, list):
        return document, parent.pop(_list_index(parent, last, allow_end=False, pointer=pointer))
    raise PatchApplyError(f"doc is missing path: {pointer!r}")


def _required(operation: Mapping[str, Any], key: str) -> Any:
    if key not in operation:
        raise PatchFormatError(f"operation {operation.get('op')!r} is missing {key!r}")
    return operation[key]


def json_patch(document: JsonValue, operations: JsonValue) -> JsonValue:
    """Apply an RFC 6902 JSON patch (add, remove, replace, move, copy, test) to a copy of ``document``."""
    if not isinstance(operations, list):
        raise PatchFormatError("a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict):
            raise PatchFormatError(f"a JSON patch operation must be an object, got {operation!r}")
        kind = operation.get("op")
        path = _required(operation, "path")
        _pointer_tokens(path)
        if kind == "add":
            result = _add(result, path, copy.deepcopy(_required(operation, "value")))
        elif kind == "remove":
            result, _ = _remove(result, path)
        elif kind == "replace":
            value = copy.deepcopy(_required(operation, "value"))
            _get(result, path)
            if _pointer_tokens(path):
                result, _ = _remove(result, path)
                result = _add(result, path, value)
            else:
                result = value
        elif kind in ("move", "copy"):
            source = _required(operation, "from")
            _pointer_tokens(source)
            if kind == "move":
                if path != source and path.startswith(source + "/"):
                    raise PatchApplyError(f"cannot move {source!r} into its own child {path!r}")
                result, value = _remove(result, source)
            else:
                value = copy.deepcopy(_get(result, source))
            result = _add(result, path, value)
        elif kind == "test":
            expected = _required(operation, "value")
            if not json_equal(_get(result, path), expected):
                raise PatchApplyError(f"testing value {path} failed: test operation does not apply")
        else:
            raise PatchFormatError(f"unexpected operation {kind!r}")
    return result


# --- Kubernetes strategic merge patch ------------------------------------------------------------------

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_ELEMENT_ORDER_PREFIX = "$setElementOrder/"
_DELETE_FROM_PRIMITIVE_PREFIX = "$deleteFromPrimitiveList/"

MergeStrategies = Mapping[str, str | None]


def strategic_merge_patch(original: JsonValue, patch: JsonValue, strategies: MergeStrategies) -> JsonValue:
    """Apply a strategic merge patch; ``strategies`` names the list paths that merge instead of replace."""
    if not isinstance(patch, dict):
        raise PatchFormatError("a strategic merge patch must be a JSON object")
    merged = _merge_map(original if isinstance(original, dict) else {}, patch, strategies, "")
    return {} if merged is _DELETED else merged


class _Deleted:
    """Marker for a map removed by ``$patch: delete``."""


_DELETED = _Deleted()


def _join(path: str, key: str) -> str:
    return key if not path else f"{path}.{key}"


def _merge_map(original: dict[str, Any], patch: dict[str, Any], strategies: MergeStrategies, path: str) -> Any:
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return _DELETED
    if directive == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != _DIRECTIVE})
    if directive is not None:
        raise PatchFormatError(f"unknown patch directive {directive!r} at {path or '<root>'}")
    result = copy.deepcopy(original)
    for key, value in patch.items():
        if key == _RETAIN_KEYS or key.startswith(_ELEMENT_ORDER_PREFIX):
            continue
        if key.startswith(_DELETE_FROM_PRIMITIVE_PREFIX):
            field_name = key[len(_DELETE_FROM_PRIMITIVE_PREFIX) :]
            if not isinstance(value, list):
                raise PatchFormatError(f"{key} must be a list")
            if isinstance(result.get(field_name), list):
                result[field_name] = [item for item in result[field_name] if item not in value]
            continue
        field_path = _join(path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            existing = result.get(key)
            merged = _merge_map(existing if isinstance(existing, dict) else {}, value, strategies, field_path)
            if merged is _DELETED:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and field_path in strategies:
            existing = result.get(key)
            result[key] = _merge_list(existing if isinstance(existing, list) else [], value, strategies, field_path)
        else:
            result[key] = _strip_directives(value)
    retained = patch.get(_RETAIN_KEYS)
    if isinstance(retained, list):
        result = {k: v for k, v in result.items() if k in retained}
    return result


def _merge_list(original: list[Any], patch: list[Any], strategies: MergeStrategies, path: str) -> list[Any]:
    merge_key = strategies[path]
    if merge_key is None:
        merged = list(original)
        for item in patch:
            if item not in merged:
                merged.append(item)
        return merged
    if any(isinstance(item, dict) and item.get(_DIRECTIVE) == "replace" for item in patch):
        return [
            _strip_directives(item)
            for item in patch
            if not (isinstance(item, dict) and item.get(_DIRECTIVE) == "replace")
        ]
    result = [copy.deepcopy(item) for item in original]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchFormatError(f"list {path} merges by {merge_key!r}; every patch item needs that key")
        position = next(
            (
                i
                for i, existing in enumerate(result)
                if isinstance(existing, dict) and existing.get(merge_key) == item[merge_key]
            ),
            None,
        )
        if item.get(_DIRECTIVE) == "delete":
            if position is not None:
                del result[position]
            continue
        if position is None:
            result.append(_strip_directives(item))
        else:
            merged = _merge_map(result[position], item, strategies, path)
            if merged is _DELETED:
                del result[position]
            else:
                result[position] = merged
    return result


def _strip_directives(value: JsonValue) -> JsonValue:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(item) for item in value]
    return copy.deepcopy(value)
