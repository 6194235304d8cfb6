"""Markdown reference pages for the Group and Node custom resources, rendered from the pydantic models.

The original project wrote its API reference by hand and it drifted: it documented fields its types did not
have and missed ones they did. Here the pages are rendered from the same models the CRDs are generated from
(`schemas.crds`), so a field, its default, its limits and its description exist in exactly one place. Each page
has one table row per field, named by its wire path (`spec.failurePolicy.cooldownBase`), followed by every
enumeration with its values and the docstring written under each member.

Kept apart from `schemas.crds` because the two outputs have different readers (the API server there, people
here) and change for different reasons. The committed pages under `docs/api-reference/crds/` must equal
`render_reference_pages()`; a test checks that and names `REGENERATE_COMMAND`.

Pure apart from one read: Python keeps no docstring for an enum member, so the source of each enum class is
parsed (`inspect.getsource`) to find the string literal written under each member.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Final

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from schemas import GROUP_VERSION
from schemas.common import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, QUANTITY_PATTERN
from schemas.crds import FIELD_EXTRAS, MODEL_RULES, render_crds
from schemas.group import Group
from schemas.labels import GROUP_LABEL, RESET_ANNOTATION
from schemas.node import Node
from schemas.validation import MAX_LABEL_VALUE_LENGTH, PROVIDER_ID_PATTERN

REGENERATE_COMMAND: Final = "homelab-autoscaler docs --write docs/"

_PATTERN_MEANINGS: Final = {
    DNS_SUBDOMAIN_PATTERN: "a DNS subdomain name (lowercase letters, digits, `-` and `.`)",
    DNS_LABEL_PATTERN: "a DNS label (lowercase letters, digits and `-`)",
    PROVIDER_ID_PATTERN: "`<scheme>://<id>`, such as `k3s://node1` or `homelab://homelab/node1`",
}
# Strings with these patterns are value types of their own, named in the type column instead.
_TYPE_PATTERNS: Final = {DURATION_PATTERN: "duration", QUANTITY_PATTERN: "quantity"}
_SCALAR_TYPES: Final[Mapping[type, str]] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    datetime: "timestamp",
}


class ReferenceGenerationError(ValueError):
    """A model uses a type the reference cannot describe; the message names the field."""


@dataclass(frozen=True)
class FieldRow:
    """One documented field: where it lives on the wire and what it accepts."""

    path: str
    """Wire path from the resource root, camelCase, `[]` for list items: `spec.startupJob.env[].name`."""
    model: type[BaseModel]
    field_name: str
    """The Python attribute name on `model`."""
    type_text: str
    default_text: str
    required: bool
    description: str


@dataclass(frozen=True)
class ObjectSection:
    """The fields of one object at one wire path (the resource's spec or status, or an object nested in it)."""

    path: str
    model: type[BaseModel]
    rows: tuple[FieldRow, ...]


@dataclass(frozen=True)
class ResourcePage:
    """What one page documents: a resource model, its kind, and what to say about its metadata."""

    relative_path: str
    """Where the page lives, relative to the docs directory."""
    model: type[BaseModel]
    kind: str
    metadata_notes: tuple[str, ...]


PAGES: Final = (
    ResourcePage(
        "api-reference/crds/group.md",
        Group,
        "Group",
        (
            f"`metadata.name`: at most {MAX_LABEL_VALUE_LENGTH} characters, because it becomes the value of the "
            f"label `{GROUP_LABEL}` on member Nodes, Kubernetes Nodes and power Jobs.",
            "The id Cluster Autoscaler sees for the group is `<namespace>/<name>`.",
        ),
    ),
    ResourcePage(
        "api-reference/crds/node.md",
        Node,
        "Node",
        (
            f"`metadata.name`: at most {MAX_LABEL_VALUE_LENGTH} characters, because it becomes a label value on "
            "the machine's Kubernetes Node and power Jobs.",
            f"`metadata.labels[{GROUP_LABEL}]` (required): the name of the machine's Group, in the same "
            "namespace.",
            f"`metadata.annotations[{RESET_ANNOTATION}]`: set it to a value not used before to clear a "
            "quarantine and the failure count; the value handled last is kept in `status.handledReset`.",
        ),
    ),
)


# --- types ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """What a field's annotation means for the reference: a type text and the object or enum to expand."""

    text: str
    model: type[BaseModel] | None = None
    enum: type[Enum] | None = None
    path_suffix: str = ""
    """Added to the field's path to reach the nested object: `[]` for list items, `.<key>` for map values."""
    collection: bool = False


def _flat_metadata(items: Iterable[object]) -> list[object]:
    """Metadata with nested FieldInfos (how pydantic stores `Annotated[str, Field(...)]`) opened up."""
    flat: list[object] = []
    for item in items:
        if isinstance(item, FieldInfo):
            flat.extend(_flat_metadata(item.metadata))
        else:
            flat.append(item)
    return flat


def _pattern(metadata: Iterable[object]) -> str | None:
    for item in metadata:
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str):
            return pattern
    return None


def _shape(annotation: object, metadata: Sequence[object], where: str) -> _Shape:
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _shape(arguments[0], [*metadata, *_flat_metadata(arguments[1:])], where)
    if origin in (typing.Union, types.UnionType):
        members = [argument for argument in arguments if argument is not type(None)]
        if len(members) != 1:
            raise ReferenceGenerationError(f"{where}: a union of {len(members)} types has no reference spelling")
        return _shape(members[0], metadata, where)
    if origin in (tuple, list):
        if origin is tuple and (len(arguments) != 2 or arguments[1] is not Ellipsis):
            raise ReferenceGenerationError(f"{where}: only variable-length tuples (`tuple[X, ...]`) are lists")
        item = _shape(arguments[0], (), where)
        return _Shape(f"list of {item.text}", item.model, item.enum, "[]" + item.path_suffix, collection=True)
    if origin is dict:
        key, value = (_shape(argument, (), where) for argument in arguments)
        item = value
        return _Shape(f"map of {key.text} to {item.text}", item.model, item.enum, ".<key>" + item.path_suffix, True)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _Shape("object", model=annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _Shape(f"[`{annotation.__name__}`](#{enum_anchor(annotation)})", enum=annotation)
    if isinstance(annotation, type) and annotation in _SCALAR_TYPES:
        named = _TYPE_PATTERNS.get(_pattern(metadata) or "") if annotation is str else None
        return _Shape(named or _SCALAR_TYPES[annotation])
    raise ReferenceGenerationError(f"{where}: type {annotation!r} has no reference spelling")


# Constraint attributes as pydantic stores them (annotated_types' Ge, Le, MinLen, ... and pydantic's own
# general metadata), read by name so that this module needs nothing beyond pydantic.
_BOUNDS: Final = (("ge", "at least {}"), ("gt", "more than {}"), ("le", "at most {}"), ("lt", "less than {}"))


def _limits(info: FieldInfo, shape: _Shape, extra_pattern: str | None) -> list[str]:
    """Plain-words limits of a field: ranges, lengths and (for ordinary strings) the pattern."""
    unit = "items" if shape.collection else "characters"
    limits: list[str] = []
    for item in info.metadata:
        for attribute, text in _BOUNDS:
            bound = getattr(item, attribute, None)
            if bound is not None:
                limits.append(text.format(bound))
        shortest = getattr(item, "min_length", None)
        if shortest is not None:
            limits.append("not empty" if shortest == 1 else f"at least {shortest} {unit}")
        longest = getattr(item, "max_length", None)
        if longest is not None:
            limits.append(f"at most {longest} {unit}")
    pattern = extra_pattern or _pattern(info.metadata)
    if pattern is not None and pattern not in _TYPE_PATTERNS and not shape.collection:
        limits.append(_PATTERN_MEANINGS.get(pattern) or f"matches `{pattern}`")
    return limits


def _wire_value(value: object) -> str:
    """A default as it appears in YAML or JSON on the wire, in a code span; `—` for no value."""
    if value is None:
        return "—"
    if isinstance(value, BaseModel):
        return "`{}`"  # the object's own fields then take their defaults, listed in its section
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value, separators=(', ', ': '))}`"


def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "—"
    return _wire_value(info.get_default(call_default_factory=True, validated_data={}))


# --- anchors and Markdown ---------------------------------------------------------------------------------


def heading_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading: lowercase, punctuation dropped. Pure."""
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def _section_heading(path: str) -> str:
    return f"`{path}`"


def enum_anchor(enum_class: type[Enum]) -> str:
    return heading_anchor(_enum_heading(enum_class))


def _enum_heading(enum_class: type[Enum]) -> str:
    return f"`{enum_class.__name__}` values"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _docstring(owner: type) -> str | None:
    # __doc__ is looked up on the class itself: a class without a docstring must not show its base's.
    text = owner.__dict__.get("__doc__")
    return inspect.cleandoc(text) if isinstance(text, str) and text.strip() else None


def enum_member_docs(enum_class: type[Enum]) -> dict[str, str]:
    """Member name → the docstring written on the line(s) under the member in the enum's source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(enum_class)))
    class_definition = tree.body[0]
    if not isinstance(class_definition, ast.ClassDef):
        raise ReferenceGenerationError(f"{enum_class.__name__}: source is not a class definition")
    documented: dict[str, str] = {}
    member: str | None = None
    for statement in class_definition.body:
        if (
            member is not None
            and isinstance(statement, ast.Expr)
            and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str)
        ):
            documented[member] = inspect.cleandoc(statement.value.value)
        member = None
        if (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
        ):
            member = statement.targets[0].id
    return documented


# --- walking the models -----------------------------------------------------------------------------------


def object_sections(roots: Sequence[tuple[str, type[BaseModel]]]) -> tuple[ObjectSection, ...]:
    """Every object reachable from `roots` (wire path, model), depth first, each model expanded once.

    A model met again at another path (the shutdown Job has the startup Job's fields) gets a row pointing at
    the first section instead of a copy of it.
    """
    sections: list[ObjectSection] = []
    expanded: dict[type[BaseModel], str] = {}

    def visit(path: str, model: type[BaseModel]) -> None:
        rows: list[FieldRow] = []
        children: list[tuple[str, type[BaseModel]]] = []
        for name, info in model.model_fields.items():
            wire_name = info.alias or name
            field_path = f"{path}.{wire_name}"
            shape = _shape(info.annotation, info.metadata, f"{model.__name__}.{name}")
            type_text = shape.text
            description = info.description or ""
            if shape.model is not None:
                child_path = field_path + shape.path_suffix
                if shape.model in expanded:
                    child_path = expanded[shape.model]
                    description = f"{description} Same fields as `{child_path}`.".strip()
                else:
                    expanded[shape.model] = child_path
                    children.append((child_path, shape.model))
                type_text = type_text.replace("object", f"[object](#{heading_anchor(_section_heading(child_path))})")
            extra_pattern = FIELD_EXTRAS.get((model, name), {}).get("pattern")
            limits = _limits(info, shape, extra_pattern)
            if limits:
                description = f"{description} Allowed: {', '.join(limits)}.".strip()
            rows.append(
                FieldRow(
                    field_path, model, name, type_text, _default_text(info), info.is_required(), description
                )
            )
        sections.append(ObjectSection(path, model, tuple(rows)))
        for child_path, child in children:
            visit(child_path, child)

    for path, model in roots:
        expanded[model] = path
        visit(path, model)
    return tuple(sections)


def _resource_roots(model: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    roots = []
    for part in ("spec", "status"):
        shape = _shape(model.model_fields[part].annotation, (), f"{model.__name__}.{part}")
        if shape.model is None:
            raise ReferenceGenerationError(f"{model.__name__}.{part} is not an object")
        roots.append((part, shape.model))
    return roots


def field_rows(model: type[BaseModel]) -> tuple[FieldRow, ...]:
    """Every documented field of a resource model's spec and status, in page order. Pure."""
    return tuple(row for section in object_sections(_resource_roots(model)) for row in section.rows)


def _enums_in_order(sections: Iterable[ObjectSection]) -> list[type[Enum]]:
    found: dict[type[Enum], None] = {}
    for section in sections:
        for name, info in section.model.model_fields.items():
            enum_class = _shape(info.annotation, info.metadata, f"{section.model.__name__}.{name}").enum
            if enum_class is not None:
                found.setdefault(enum_class, None)
    return list(found)


# --- rendering --------------------------------------------------------------------------------------------


def _crd_of(kind: str) -> Mapping[str, Any]:
    for crd in render_crds():
        if crd["spec"]["names"]["kind"] == kind:
            return crd
    raise ReferenceGenerationError(f"no CRD has kind {kind}")


def _render_section(section: ObjectSection, level: str) -> list[str]:
    lines = [f"{level} {_section_heading(section.path)}", ""]
    if section.path == "status":
        lines += ["Written by the operator through the status subresource; do not set it yourself.", ""]
    docstring = _docstring(section.model)
    if docstring:
        lines += [docstring, ""]
    lines += ["| field | type | default | required | description |", "|---|---|---|---|---|"]
    for row in section.rows:
        lines.append(
            f"| `{row.path}` | {_cell(row.type_text)} | {_cell(row.default_text)} | "
            f"{'yes' if row.required else 'no'} | {_cell(row.description)} |"
        )
    rules = MODEL_RULES.get(section.model, ())
    if rules:
        lines += ["", "The API server also refuses an object where these rules fail:", ""]
        lines += [f"- {rule.message}" for rule in rules]
    return [*lines, ""]


def _render_enum(enum_class: type[Enum]) -> list[str]:
    lines = [f"### {_enum_heading(enum_class)}", ""]
    docstring = _docstring(enum_class)
    if docstring:
        lines += [docstring, ""]
    member_docs = enum_member_docs(enum_class)
    if not member_docs:
        values = ", ".join(f"`{member.value}`" for member in enum_class)
        return [*lines, f"One of {values}.", ""]
    lines += ["| value | meaning |", "|---|---|"]
    for member in enum_class:
        lines.append(f"| `{member.value}` | {_cell(member_docs.get(member.name, ''))} |")
    return [*lines, ""]


def render_reference_page(page: ResourcePage) -> str:
    """The Markdown reference of one custom resource. Pure apart from reading enum sources."""
    crd = _crd_of(page.kind)
    names = crd["spec"]["names"]
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    sections = object_sections(_resource_roots(page.model))
    lines = [
        "<!-- Generated from the pydantic models in schemas/ by schemas/reference.py. Do not edit by hand:",
        f"     change the models, then run `{REGENERATE_COMMAND}`. -->",
        f"# {page.kind} reference",
        "",
        "| | |",
        "|---|---|",
        f"| apiVersion | `{GROUP_VERSION}` |",
        f"| kind | `{page.kind}` |",
        f"| CRD | `{crd['metadata']['name']}` |",
        f"| short name | `{', '.join(names['shortNames'])}` (category `{', '.join(names['categories'])}`) |",
        f"| scope | {crd['spec']['scope']} |",
        "",
        schema["description"],
        "",
        f"`kubectl explain {names['shortNames'][0]}.spec` prints the same descriptions from the installed CRD. "
        "Durations are Go duration strings (`90s`, `10m`, `1h30m`); quantities are Kubernetes quantities "
        "(`8`, `500m`, `31Gi`). Fields without a default may be left out.",
        "",
        "## `kubectl get` columns",
        "",
        "| column | shows | from |",
        "|---|---|---|",
    ]
    lines += [
        f"| `{column['name']}` | {_cell(column['description'])} | `{column['jsonPath']}` |"
        for column in version["additionalPrinterColumns"]
    ]
    lines += ["", "## `metadata`", ""]
    lines += [f"- {note}" for note in page.metadata_notes]
    lines.append("")
    for section in sections:
        lines += _render_section(section, "##" if "." not in section.path else "###")
    lines += [
        "## Enumerations",
        "",
        "Values are case-sensitive and written exactly as below.",
        "",
    ]
    for enum_class in _enums_in_order(sections):
        lines += _render_enum(enum_class)
    return "\n".join(lines).rstrip("\n") + "\n"


def render_reference_pages() -> dict[str, str]:
    """Page path (relative to the docs directory) → page text, for every resource. Pure (see the module)."""
    return {page.relative_path: render_reference_page(page) for page in PAGES}
