"""Label and field selector parsing and matching, as pure functions.

Separate because list, watch and deletecollection all filter by the same rules, and because selector syntax
is easy to get subtly wrong (``!=`` and ``notin`` match objects *without* the label; commas inside ``in (a,b)``
do not split requirements). A syntax error is reported as ``SelectorError`` and turned into 400 by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

LabelOperator = Literal["=", "!=", "in", "notin", "exists", "!exists", "gt", "lt"]
FieldOperator = Literal["=", "!="]

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_NAME})?$")
_SET_TERM = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_BINARY_TERM = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s*(?P<op>==|=|!=|>|<)\s*(?P<value>[^\s!=<>(),]*)$")


class SelectorError(ValueError):
    """The selector text does not parse; the message is what the client sees."""


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    operator: LabelOperator
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: FieldOperator
    value: str


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside a ``( … )`` value set."""
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for character in text:
        if character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unable to parse requirement: unbalanced parentheses in {text!r}")
        if character == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(character)
    if depth != 0:
        raise SelectorError(f"unable to parse requirement: unbalanced parentheses in {text!r}")
    terms.append("".join(current))
    return [term.strip() for term in terms]


def _checked_key(key: str) -> str:
    if len(key) > 316 or not _LABEL_KEY.match(key):
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r}")
    return key


def _checked_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise SelectorError(f"unable to parse requirement: invalid label value {value!r}")
    return value


def parse_label_selector(text: str) -> tuple[LabelRequirement, ...]:
    """Parse the ``labelSelector`` query syntax; an empty selector matches everything."""
    if not text.strip():
        return ()
    requirements: list[LabelRequirement] = []
    for term in _split_top_level(text):
        if not term:
            raise SelectorError(f"unable to parse requirement: empty term in {text!r}")
        requirements.append(_parse_label_term(term))
    return tuple(requirements)


def _parse_label_term(term: str) -> LabelRequirement:
    if term.startswith("!"):
        return LabelRequirement(_checked_key(term[1:].strip()), "!exists")
    set_match = _SET_TERM.match(term)
    if set_match:
        values = tuple(_checked_value(v.strip()) for v in set_match["values"].split(",") if v.strip())
        if not values:
            raise SelectorError(f"unable to parse requirement: {term!r} needs at least one value")
        operator: LabelOperator = "in" if set_match["op"] == "in" else "notin"
        return LabelRequirement(_checked_key(set_match["key"]), operator, values)
    binary_match = _BINARY_TERM.match(term)
    if binary_match:
        key = _checked_key(binary_match["key"])
        symbol = binary_match["op"]
        value = binary_match["value"]
        if symbol in ("<", ">"):
            if not re.fullmatch(r"-?\d+", value):
                raise SelectorError(f"unable to parse requirement: {term!r} needs an integer value")
            return LabelRequirement(key, "gt" if symbol == ">" else "lt", (value,))
        return LabelRequirement(key, "!=" if symbol == "!=" else "=", (_checked_value(value),))
    return LabelRequirement(_checked_key(term), "exists")


def _label_requirement_holds(requirement: LabelRequirement, labels: Mapping[str, str]) -> bool:
    present = requirement.key in labels
    value = labels.get(requirement.key)
    match requirement.operator:
        case "=" | "in":
            return present and value in requirement.values
        case "!=" | "notin":
            # Kubernetes semantics: an object without the label satisfies "!=" and "notin".
            return not present or value not in requirement.values
        case "exists":
            return present
        case "!exists":
            return not present
        case "gt" | "lt":
            if value is None or not re.fullmatch(r"-?\d+", value):
                return False
            bound = int(requirement.values[0])
            return int(value) > bound if requirement.operator == "gt" else int(value) < bound
    return False  # pragma: no cover - every operator is handled above


def labels_match(requirements: tuple[LabelRequirement, ...], labels: Mapping[str, str]) -> bool:
    return all(_label_requirement_holds(requirement, labels) for requirement in requirements)


def parse_field_selector(text: str) -> tuple[FieldRequirement, ...]:
    """Parse the ``fieldSelector`` syntax (``a=b``, ``a==b``, ``a!=b``, comma-joined)."""
    if not text.strip():
        return ()
    requirements: list[FieldRequirement] = []
    for term in (part.strip() for part in text.split(",")):
        if "!=" in term:
            field_name, value = term.split("!=", 1)
            requirements.append(FieldRequirement(field_name.strip(), "!=", value.strip()))
        elif "==" in term:
            field_name, value = term.split("==", 1)
            requirements.append(FieldRequirement(field_name.strip(), "=", value.strip()))
        elif "=" in term:
            field_name, value = term.split("=", 1)
            requirements.append(FieldRequirement(field_name.strip(), "=", value.strip()))
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        if not requirements[-1].field:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
    return tuple(requirements)


def field_value(obj: Mapping[str, Any], dotted_path: str) -> str:
    """The string form of a field the way field selectors compare it (missing → empty string)."""
    current: Any = obj
    for part in dotted_path.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def fields_match(requirements: tuple[FieldRequirement, ...], lookup: Callable[[str], str]) -> bool:
    for requirement in requirements:
        actual = lookup(requirement.field)
        if (actual == requirement.value) != (requirement.operator == "="):
            return False
    return True
