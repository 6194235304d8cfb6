"""The generated CRDs: committed copies are current, and a real API server would accept and enforce them.

No API server runs here, so its checks are written out: the structural-schema rules (a checker defined
in this file, itself tested on broken schemas), defaulting and pruning, CEL rules evaluated with celpy on
sample objects, printer columns, and validation of sample objects with jsonschema.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml

from homelab_autoscaler import __version__, commands
from homelab_autoscaler.cli import build_parser, main
from schemas.crds import (
    GROUP_CRD_NAME,
    NODE_CRD_NAME,
    REGENERATE_COMMAND,
    apply_defaults,
    render_crd_files,
    render_crds,
    render_crds_yaml,
)
from schemas.labels import GROUP_LABEL
from schemas.validation import validate_group, validate_node

REPOSITORY = Path(__file__).resolve().parents[2]
COMMITTED_CRDS = REPOSITORY / "manifests" / "crds"
CRDS = {crd["metadata"]["name"]: crd for crd in render_crds()}
SCHEMAS = {name: crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for name, crd in CRDS.items()}

Schema = Mapping[str, Any]
Change = Callable[[dict[str, Any]], None]

# --- sample objects ---------------------------------------------------------------------------------------


def sample_group() -> dict[str, Any]:
    return {
        "apiVersion": "infra.homecluster.dev/v1alpha1",
        "kind": "Group",
        "metadata": {"name": "workers", "namespace": "homelab"},
        "spec": {
            "maxSize": 3,
            "autoscalingOptions": {"scaleDownUtilizationThreshold": 0.4, "scaleDownUnneededTime": "15m"},
            "template": {
                "capacity": {"cpu": 8, "memory": "32Gi", "pods": 110},
                "taints": [{"key": "dedicated", "effect": "NoSchedule"}],
            },
            "schedules": [{"name": "office", "days": ["Mon"], "start": "08:00", "end": "18:00", "minSize": 2,
                           "maxSize": 3}],
        },
        "status": {
            "targetSize": 1,
            "conditions": [{"type": "Healthy", "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z"}],
        },
    }


def sample_job() -> dict[str, Any]:
    return {
        "image": "ghcr.io/example/wol:1",
        "env": [
            {"name": "MAC", "value": "aa:bb:cc:dd:ee:ff"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "bmc", "key": "password"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "power"}}],
        "volumes": [{"name": "ssh", "mountPath": "/etc/ssh-key", "secretName": "ssh"}],
        "resources": {"limits": {"memory": "64Mi"}},
        "hostNetwork": True,
    }


def sample_node() -> dict[str, Any]:
    return {
        "apiVersion": "infra.homecluster.dev/v1alpha1",
        "kind": "Node",
        "metadata": {"name": "node1", "namespace": "homelab", "labels": {GROUP_LABEL: "workers"}},
        "spec": {"providerID": "k3s://node1", "startupJob": sample_job(), "shutdownJob": sample_job()},
        "status": {"state": "Ready", "providerID": "k3s://node1", "since": "2026-01-02T03:04:05Z"},
    }


SAMPLES: dict[str, Callable[[], dict[str, Any]]] = {GROUP_CRD_NAME: sample_group, NODE_CRD_NAME: sample_node}
VALIDATORS: dict[str, Callable[[Any], list[Any]]] = {GROUP_CRD_NAME: validate_group, NODE_CRD_NAME: validate_node}


def at(*path: str | int, value: object) -> Change:
    def change(obj: dict[str, Any]) -> None:
        target: Any = obj
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
        target[path[-1]] = value

    return change


def without(*path: str | int) -> Change:
    def change(obj: dict[str, Any]) -> None:
        target: Any = obj
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


IPMI = {"host": "10.0.0.5", "credentials": {"name": "bmc-m1"}}
REDFISH = {"endpoint": "https://10.0.0.6", "credentials": {"name": "bmc-m1"}}
WAKE_ON_LAN = {"macAddress": "aa:bb:cc:dd:ee:ff"}
SSH = {"host": "10.0.0.7", "user": "power", "privateKey": {"name": "ssh-m1", "key": "id"}, "knownHosts": "h k"}


def powered_natively(**power: object) -> Change:
    """The sample Node powered by `power` instead of its Jobs."""

    def change(obj: dict[str, Any]) -> None:
        del obj["spec"]["startupJob"], obj["spec"]["shutdownJob"]
        obj["spec"]["power"] = power

    return change


def changes(*steps: Change) -> Change:
    def change(obj: dict[str, Any]) -> None:
        for one in steps:
            one(obj)

    return change


def changed(crd_name: str, change: Change) -> dict[str, Any]:
    obj = SAMPLES[crd_name]()
    change(obj)
    return obj


# --- walking schemas ------------------------------------------------------------------------------------


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with a readable path (`.spec.env[]`), the node itself first."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), Mapping):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def all_nodes() -> Iterator[tuple[str, str, Schema]]:
    for crd_name, schema in SCHEMAS.items():
        for path, node in walk(schema):
            yield crd_name, path, node


# --- a structural-schema checker, as the API server applies it -----------------------------------------

JSON_SCHEMA_PROPS_KEYS = frozenset(
    {
        "description", "type", "format", "title", "default", "maximum", "exclusiveMaximum", "minimum",
        "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
        "multipleOf", "enum", "maxProperties", "minProperties", "required", "items", "allOf", "oneOf", "anyOf",
        "not", "properties", "additionalProperties", "example", "externalDocs", "nullable",
        "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string",
        "x-kubernetes-list-map-keys", "x-kubernetes-list-type", "x-kubernetes-map-type",
        "x-kubernetes-validations",
    }
)  # fmt: skip
NOT_ALLOWED_IN_CRDS = frozenset({"$ref", "$schema", "id", "definitions", "patternProperties", "dependencies"})
# Keys that give a junctor (anyOf/allOf/oneOf/not) a structure of its own, which structural schemas forbid.
STRUCTURE_KEYS = frozenset(
    {"type", "properties", "items", "additionalProperties", "default", "description", "nullable", "title"}
)
INT_OR_STRING_FORM = [{"type": "integer"}, {"type": "string"}]
SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


# jsonschema checks date-time only with an optional package installed; the API server always checks it.
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(datetime.fromisoformat(value).tzinfo)


def pruned(value: Any, schema: Schema) -> Any:
    """`value` with every field the schema does not know removed, as the API server prunes."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            return {key: pruned(item, additional) for key, item in value.items()}
        return {key: pruned(item, properties[key]) for key, item in value.items() if key in properties}
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [pruned(item, schema["items"]) for item in value]
    return value


def _type_matches(value: Any, type_name: str) -> bool:
    if isinstance(value, bool) and type_name in ("integer", "number"):
        return False
    return isinstance(value, PYTHON_TYPES[type_name])


def node_violations(node: Schema, path: str) -> Iterator[str]:
    """Structural-schema violations of one node (not its children)."""
    where = path or "<root>"
    for key in node:
        if key in NOT_ALLOWED_IN_CRDS:
            yield f"{where}: {key} is not allowed in a CRD schema"
        elif key not in JSON_SCHEMA_PROPS_KEYS:
            yield f"{where}: unknown keyword {key}"
    if node.get("uniqueItems") is True:
        yield f"{where}: uniqueItems: true is forbidden (quadratic)"
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    if "type" not in node and not (int_or_string or node.get("x-kubernetes-preserve-unknown-fields")):
        yield f"{where}: no type"
    if int_or_string:
        if "type" in node:
            yield f"{where}: x-kubernetes-int-or-string must not also set type"
        if "anyOf" in node and node["anyOf"] != INT_OR_STRING_FORM:
            yield f"{where}: x-kubernetes-int-or-string allows only anyOf [integer, string]"
    for junctor in ("anyOf", "oneOf", "allOf"):
        if junctor in node and not (int_or_string and junctor == "anyOf"):
            for member in node[junctor]:
                if STRUCTURE_KEYS & set(member):
                    yield f"{where}: {junctor} member introduces {sorted(STRUCTURE_KEYS & set(member))}"
    if "not" in node and STRUCTURE_KEYS & set(node["not"]):
        yield f"{where}: not introduces structure"
    if "properties" in node and "additionalProperties" in node:
        yield f"{where}: both properties and additionalProperties"
    if "additionalProperties" in node and not isinstance(node["additionalProperties"], Mapping):
        yield f"{where}: additionalProperties must be a schema, not {node['additionalProperties']!r}"
    if node.get("type") == "object" and not (
        "properties" in node or "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
    ):
        yield f"{where}: object without properties or additionalProperties (everything would be pruned)"
    if node.get("type") == "array" and not isinstance(node.get("items"), Mapping):
        yield f"{where}: array without a single items schema"
    for name in node.get("required", []):
        if name not in node.get("properties", {}):
            yield f"{where}: required field {name} is not a property"
    for value in node.get("enum", []):
        if "type" in node and not _type_matches(value, node["type"]):
            yield f"{where}: enum value {value!r} is not of type {node['type']}"
    if "default" in node:
        default = node["default"]
        if default is None and not node.get("nullable"):
            yield f"{where}: null default on a field that is not nullable"
        elif pruned(default, node) != default:
            yield f"{where}: default has fields the schema would prune: {default!r}"
    yield from _list_type_violations(node, where)
    for rule in node.get("x-kubernetes-validations", []):
        if not (isinstance(rule.get("rule"), str) and isinstance(rule.get("message"), str)):
            yield f"{where}: validation rule without rule and message"
        field_path = rule.get("fieldPath")
        if field_path is not None:
            name = field_path.removeprefix(".")
            if not field_path.startswith(".") or name not in node.get("properties", {}):
                yield f"{where}: fieldPath {field_path} does not name a property of this object"


def _list_type_violations(node: Schema, where: str) -> Iterator[str]:
    list_type = node.get("x-kubernetes-list-type")
    if list_type is None:
        if "x-kubernetes-list-map-keys" in node:
            yield f"{where}: list-map keys without x-kubernetes-list-type: map"
        return
    if list_type not in ("atomic", "set", "map"):
        yield f"{where}: unknown x-kubernetes-list-type {list_type}"
    items = node.get("items", {})
    if list_type == "set" and items.get("type") not in SCALAR_TYPES:
        yield f"{where}: a set needs scalar items"
    if list_type == "map":
        keys = node.get("x-kubernetes-list-map-keys") or []
        if not keys:
            yield f"{where}: list-map without x-kubernetes-list-map-keys"
        for key in keys:
            key_schema = items.get("properties", {}).get(key)
            if key_schema is None or key_schema.get("type") not in SCALAR_TYPES:
                yield f"{where}: list-map key {key} is not a scalar property of the items"
            elif key not in items.get("required", []) and "default" not in key_schema:
                yield f"{where}: list-map key {key} must be required or defaulted"


def structural_violations(root: Schema) -> list[str]:
    """Everything an API server would refuse in a CRD's openAPIV3Schema, as readable sentences."""
    problems: list[str] = []
    if root.get("type") != "object":
        problems.append("<root>: must be of type object")
    properties = root.get("properties", {})
    if set(properties) - {"apiVersion", "kind", "metadata", "spec", "status"}:
        problems.append(f"<root>: unexpected top-level properties {sorted(set(properties) - set(SAMPLE_ROOT))}")
    metadata = properties.get("metadata", {"type": "object"})
    if set(metadata) - {"type", "properties"} or set(metadata.get("properties", {})) - {"name", "generateName"}:
        problems.append("<root>.metadata: only restrictions of name and generateName are allowed")
    for name, child in metadata.get("properties", {}).items():
        if set(child) - {"type", "maxLength", "minLength", "pattern", "format"}:
            problems.append(f"<root>.metadata.{name}: only value validations are allowed")
    for path, node in walk(root):
        if path == ".metadata":
            continue
        problems.extend(node_violations(node, path))
    return problems


SAMPLE_ROOT: Schema = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "default": 1},
                "items": {
                    "type": "array",
                    "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                },
                "quantity": {"anyOf": INT_OR_STRING_FORM, "x-kubernetes-int-or-string": True},
            },
            "x-kubernetes-validations": [{"rule": "self.size > 0", "message": "size", "fieldPath": ".size"}],
        },
    },
}


def broken(change: Change) -> dict[str, Any]:
    schema = copy.deepcopy(dict(SAMPLE_ROOT))
    change(schema)
    return schema


def test_the_checker_accepts_a_structural_schema() -> None:
    assert structural_violations(SAMPLE_ROOT) == []


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        pytest.param(broken(at("properties", "spec", "$ref", value="#/x")), "$ref is not allowed", id="ref"),
        pytest.param(broken(without("properties", "spec", "properties", "size", "type")), "no type", id="no-type"),
        pytest.param(
            broken(at("properties", "spec", "anyOf", value=[{"type": "string"}, {"type": "integer"}])),
            "anyOf member introduces",
            id="typed-anyOf",
        ),
        pytest.param(
            broken(at("properties", "spec", "additionalProperties", value={"type": "string"})),
            "both properties and additionalProperties",
            id="properties-and-additional",
        ),
        pytest.param(
            broken(at("properties", "spec", "properties", "items", "items", "additionalProperties", value=False)),
            "additionalProperties must be a schema",
            id="additional-false",
        ),
        pytest.param(
            broken(at("properties", "metadata", "properties", value={"labels": {"type": "object"}})),
            "only restrictions of name and generateName",
            id="metadata-labels",
        ),
        pytest.param(
            broken(at("properties", "metadata", "properties", value={"name": {"type": "string", "default": "x"}})),
            "only value validations",
            id="metadata-default",
        ),
        pytest.param(
            broken(at("properties", "spec", "default", value={"size": 1, "unknown": 2})),
            "default has fields the schema would prune",
            id="unpruned-default",
        ),
        pytest.param(
            broken(at("properties", "spec", "properties", "size", "default", value=None)),
            "null default",
            id="null-default",
        ),
        pytest.param(
            broken(at("properties", "spec", "properties", "items", "items", "required", value=[])),
            "must be required or defaulted",
            id="list-map-key-optional",
        ),
        pytest.param(
            broken(at("properties", "spec", "properties", "items", "uniqueItems", value=True)),
            "uniqueItems",
            id="unique-items",
        ),
        pytest.param(
            broken(without("properties", "spec", "properties", "items", "items")),
            "array without a single items schema",
            id="array-without-items",
        ),
        pytest.param(
            broken(at("properties", "spec", "required", value=["size", "colour"])),
            "required field colour is not a property",
            id="required-unknown",
        ),
        pytest.param(
            broken(at("properties", "spec", "x-kubernetes-validations", 0, "fieldPath", value=".colour")),
            "fieldPath .colour does not name a property",
            id="field-path",
        ),
        pytest.param(
            broken(at("properties", "spec", "properties", "quantity", "type", value="string")),
            "must not also set type",
            id="int-or-string-typed",
        ),
        pytest.param(
            broken(at("properties", "spec", "properties", "flags", value={"type": "object"})),
            "everything would be pruned",
            id="empty-object",
        ),
        pytest.param(
            broken(at("properties", "spec", "properties", "size", "const", value=1)),
            "unknown keyword const",
            id="const",
        ),
    ],
)
def test_the_checker_catches_what_an_api_server_refuses(schema: Schema, fragment: str) -> None:
    problems = structural_violations(schema)
    assert any(fragment in problem for problem in problems), problems


@pytest.mark.parametrize("crd_name", list(SCHEMAS))
def test_generated_schemas_are_structural(crd_name: str) -> None:
    assert structural_violations(SCHEMAS[crd_name]) == []


@pytest.mark.parametrize("crd_name", list(CRDS))
@pytest.mark.parametrize("kubernetes_version", ["1.29", "1.37"])
def test_crds_are_valid_custom_resource_definitions(crd_name: str, kubernetes_version: str) -> None:
    kubernetes_validate.validate(CRDS[crd_name], kubernetes_version, strict=True)


@pytest.mark.parametrize("crd_name", list(CRDS))
def test_crd_shape(crd_name: str) -> None:
    spec = CRDS[crd_name]["spec"]
    (version,) = spec["versions"]
    assert spec["group"] == "infra.homecluster.dev"
    assert spec["scope"] == "Namespaced"
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert spec["names"]["categories"] == ["homelab"]
    # Short names must not shadow built-in resources (`no`, `node`, `nodes`, `group` of RBAC subjects…).
    assert not {"no", "node", "nodes", "ng"} & set(spec["names"]["shortNames"])
    assert "status" in SCHEMAS[crd_name]["properties"], "status is its own property, behind the subresource"
    assert "default" not in SCHEMAS[crd_name]["properties"]["status"]


def test_every_spec_and_status_field_is_described_for_kubectl_explain() -> None:
    undescribed = [
        f"{crd_name}{path}"
        for crd_name, path, node in all_nodes()
        if path.startswith((".spec", ".status")) and not path.endswith(("[]", "{}")) and not node.get("description")
    ]
    assert undescribed == []


# --- defaults -------------------------------------------------------------------------------------------

DEFAULTS = [
    pytest.param(node, id=f"{crd_name.split('.')[0]}{path}")
    for crd_name, path, node in all_nodes()
    if "default" in node
]


@pytest.mark.parametrize("node", DEFAULTS)
def test_every_default_validates_against_its_own_schema(node: Schema) -> None:
    default = apply_defaults(copy.deepcopy(node["default"]), node)
    jsonschema.Draft4Validator(node, format_checker=FORMATS).validate(default)
    assert cel_violations(node, default) == []


@pytest.mark.parametrize(
    ("crd_name", "path", "expected"),
    [
        pytest.param(GROUP_CRD_NAME, ("spec", "minSize"), 0, id="minSize"),
        pytest.param(GROUP_CRD_NAME, ("spec", "bootTimeout"), "10m", id="bootTimeout"),
        pytest.param(GROUP_CRD_NAME, ("spec", "failurePolicy", "cooldownCap"), "30m", id="nested-from-{}"),
        pytest.param(GROUP_CRD_NAME, ("spec", "powerOffNodePolicy"), "Delete", id="powerOffNodePolicy"),
        pytest.param(NODE_CRD_NAME, ("spec", "powerPolicy"), "Auto", id="powerPolicy"),
        pytest.param(NODE_CRD_NAME, ("spec", "startupJob", "ttlSecondsAfterFinished"), 600, id="ttl"),
        pytest.param(NODE_CRD_NAME, ("spec", "startupJob", "env", 1, "valueFrom", "secretKeyRef", "optional"), False,
                     id="in-list-items"),
    ],
)  # fmt: skip
def test_the_api_server_fills_the_documented_defaults(
    crd_name: str, path: tuple[str | int, ...], expected: object
) -> None:
    value: Any = apply_defaults(SAMPLES[crd_name](), SCHEMAS[crd_name])
    for key in path:
        value = value[key]
    assert value == expected


@pytest.mark.parametrize(
    ("crd_name", "path"),
    [
        pytest.param(GROUP_CRD_NAME, ("spec", "nodeLabels"), id="empty-map"),
        pytest.param(NODE_CRD_NAME, ("spec", "startupJob", "command"), id="empty-list"),
        pytest.param(NODE_CRD_NAME, ("spec", "pricing"), id="object-of-nothing"),
        pytest.param(NODE_CRD_NAME, ("spec", "startupJob", "activeDeadlineSeconds"), id="optional-number"),
        pytest.param(NODE_CRD_NAME, ("spec", "startupJob", "envFrom", 0, "prefix"), id="empty-string"),
    ],
)
def test_empty_defaults_stay_out_of_stored_objects(crd_name: str, path: tuple[str | int, ...]) -> None:
    value: Any = apply_defaults(SAMPLES[crd_name](), SCHEMAS[crd_name])
    for key in path[:-1]:
        value = value[key]
    assert path[-1] not in value


# --- CEL rules ------------------------------------------------------------------------------------------

CEL = celpy.Environment()
ALLOWED_CEL_FUNCTIONS = frozenset({"has", "size", "duration", "exists", "all", "exists_one", "int", "string"})


def cel_rules() -> Iterator[tuple[str, str, dict[str, str]]]:
    for crd_name, path, node in all_nodes():
        for rule in node.get("x-kubernetes-validations", []):
            yield crd_name, path, rule


RULES = [
    pytest.param(rule, id=f"{crd_name.split('.')[0]}{path}:{rule['rule']}") for crd_name, path, rule in cel_rules()
]


def cel_violations(schema: Schema, value: Any) -> list[str]:
    """Messages of the CEL rules `value` breaks, evaluated at every level as the API server does."""
    messages: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        program = CEL.program(CEL.compile(rule["rule"]))
        try:
            passed = bool(program.evaluate({"self": celpy.json_to_cel(value)}))
        except celpy.CELEvalError:
            passed = False
        if not passed:
            messages.append(rule["message"])
    if isinstance(value, dict):
        for name, item in value.items():
            child = schema.get("properties", {}).get(name) or schema.get("additionalProperties")
            if isinstance(child, Mapping):
                messages.extend(cel_violations(child, item))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            messages.extend(cel_violations(schema["items"], item))
    return messages


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_compiles_and_uses_only_cheap_functions(rule: dict[str, str]) -> None:
    CEL.compile(rule["rule"])
    called = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", rule["rule"]))
    assert called <= ALLOWED_CEL_FUNCTIONS


def test_rules_inside_lists_are_bounded_so_the_api_server_can_cost_them() -> None:
    # The API server multiplies a rule's cost by how many list items may hold it; unbounded lists blow
    # the budget and the whole CRD is refused.
    unbounded = [
        f"{crd_name}{path}"
        for crd_name, path, node in all_nodes()
        if node.get("type") == "array"
        and "maxItems" not in node
        and any("x-kubernetes-validations" in child for _, child in walk(node["items"]))
    ]
    assert unbounded == []


CEL_CASES = [
    pytest.param(GROUP_CRD_NAME, lambda _: None, [], id="group-valid"),
    pytest.param(GROUP_CRD_NAME, at("spec", "minSize", value=3), [], id="min-equals-max"),
    pytest.param(
        GROUP_CRD_NAME, at("spec", "minSize", value=4), ["minSize must not be greater than maxSize"], id="min>max"
    ),
    pytest.param(
        GROUP_CRD_NAME,
        at("spec", "failurePolicy", value={"cooldownBase": "1h30m", "cooldownCap": "1h"}),
        ["cooldownBase must not be longer than cooldownCap"],
        id="cooldown>cap",
    ),
    pytest.param(
        GROUP_CRD_NAME,
        at("spec", "failurePolicy", value={"cooldownBase": "90s", "cooldownCap": "2m"}),
        [],
        id="cooldown<cap-mixed-units",
    ),
    pytest.param(
        GROUP_CRD_NAME,
        without("spec", "template", "capacity", "pods"),
        ["capacity must include pods (e.g. pods: 110): a scale-from-zero template without pods fits no pod"],
        id="no-pods",
    ),
    pytest.param(
        GROUP_CRD_NAME,
        at("spec", "schedules", 0, "end", value="08:00"),
        ["end must differ from start (a window needs a length)"],
        id="schedule-end-equals-start",
    ),
    pytest.param(
        GROUP_CRD_NAME,
        without("spec", "schedules", 0, "maxSize"),
        [],
        id="schedule-min-against-spec-max",
    ),
    pytest.param(
        GROUP_CRD_NAME,
        at("spec", "schedules", 0, "minSize", value=5),
        ["a schedule's minSize (or spec.minSize) must not be greater than its maxSize (or spec.maxSize)"],
        id="schedule-min>max",
    ),
    pytest.param(
        GROUP_CRD_NAME,
        at("spec", "schedules", 0, value={"name": "night", "days": ["Sun"], "start": "22:00", "end": "06:00"}),
        ["a schedule must set minSize, maxSize or both"],
        id="schedule-overrides-nothing",
    ),
    pytest.param(
        GROUP_CRD_NAME,
        at("spec", "exercise", value={"every": "1h", "window": {"days": ["Sat"], "start": "02:00", "end": "06:00"}}),
        [],
        id="exercise-hourly-in-a-window",
    ),
    pytest.param(
        GROUP_CRD_NAME,
        at("spec", "exercise", value={"every": "59m"}),
        ["every must be at least 1h: each exercise is a real boot and power-off"],
        id="exercise-too-often",
    ),
    pytest.param(
        GROUP_CRD_NAME,
        at("spec", "exercise", value={"window": {"days": ["Sat"], "start": "02:00", "end": "02:00"}}),
        ["end must differ from start (a window needs a length)"],
        id="exercise-window-without-length",
    ),
    pytest.param(NODE_CRD_NAME, lambda _: None, [], id="node-valid"),
    pytest.param(NODE_CRD_NAME, powered_natively(ipmi=IPMI), [], id="power-ipmi"),
    pytest.param(NODE_CRD_NAME, powered_natively(redfish=REDFISH), [], id="power-redfish"),
    pytest.param(NODE_CRD_NAME, powered_natively(wakeOnLan=WAKE_ON_LAN, ssh=SSH), [], id="power-wol-ssh"),
    pytest.param(NODE_CRD_NAME, powered_natively(wakeOnLan=WAKE_ON_LAN, ipmi=IPMI), [], id="power-wol-ipmi"),
    pytest.param(NODE_CRD_NAME, powered_natively(redfish=REDFISH, ssh=SSH), [], id="power-redfish-ssh"),
    pytest.param(
        NODE_CRD_NAME,
        at("spec", "power", value={"ipmi": IPMI}),
        ["a Node is powered either by Jobs (startupJob and shutdownJob) or natively (power), not both"],
        id="jobs-and-power",
    ),
    pytest.param(
        NODE_CRD_NAME,
        without("spec", "shutdownJob"),
        [
            "a Node needs both startupJob and shutdownJob, or power (native Wake-on-LAN, IPMI, Redfish or SSH "
            "drivers)"
        ],
        id="one-job-only",
    ),
    pytest.param(
        NODE_CRD_NAME,
        powered_natively(ipmi=IPMI, redfish=REDFISH),
        ["name at most one BMC (ipmi or redfish), not both"],
        id="two-bmcs",
    ),
    pytest.param(
        NODE_CRD_NAME,
        powered_natively(ssh=SSH),
        ["nothing can power the machine on: add wakeOnLan, ipmi or redfish"],
        id="no-on-driver",
    ),
    pytest.param(
        NODE_CRD_NAME,
        powered_natively(wakeOnLan=WAKE_ON_LAN),
        ["nothing can power the machine off: add ssh, ipmi or redfish"],
        id="no-off-driver",
    ),
    pytest.param(
        NODE_CRD_NAME,
        powered_natively(redfish={**REDFISH, "caBundle": {}}),
        ["set exactly one of secretKeyRef and configMapKeyRef"],
        id="ca-bundle-neither",
    ),
    pytest.param(
        NODE_CRD_NAME,
        powered_natively(
            redfish={
                **REDFISH,
                "caBundle": {
                    "secretKeyRef": {"name": "ca", "key": "pem"},
                    "configMapKeyRef": {"name": "ca", "key": "pem"},
                },
            }
        ),
        ["set exactly one of secretKeyRef and configMapKeyRef"],
        id="ca-bundle-both",
    ),
    pytest.param(
        GROUP_CRD_NAME,
        at("spec", "powerReadback", value={"transitionInterval": "10m", "steadyInterval": "5m"}),
        ["transitionInterval must not be longer than steadyInterval"],
        id="readback-fast>slow",
    ),
    pytest.param(
        NODE_CRD_NAME,
        at("spec", "startupJob", "env", 0, value={"name": "MAC"}),
        ["an env entry must set exactly one of value or valueFrom"],
        id="env-neither",
    ),
    pytest.param(
        NODE_CRD_NAME,
        at("spec", "shutdownJob", "env", 1, "value", value="x"),
        ["an env entry must set exactly one of value or valueFrom"],
        id="env-both",
    ),
    pytest.param(
        NODE_CRD_NAME,
        at("spec", "startupJob", "env", 1, "valueFrom", "configMapKeyRef", value={"name": "c", "key": "k"}),
        ["valueFrom must set exactly one of secretKeyRef or configMapKeyRef"],
        id="valueFrom-both",
    ),
    pytest.param(
        NODE_CRD_NAME,
        at("spec", "startupJob", "envFrom", 0, value={"prefix": "X_"}),
        ["an envFrom entry must set exactly one of secretRef or configMapRef"],
        id="envFrom-neither",
    ),
    pytest.param(
        NODE_CRD_NAME,
        at("spec", "startupJob", "volumes", 0, "configMapName", value="c"),
        ["a volume must set exactly one of secretName or configMapName"],
        id="volume-both",
    ),
]


@pytest.mark.parametrize(("crd_name", "change", "expected"), CEL_CASES)
def test_cel_rules_refuse_exactly_the_bad_objects(crd_name: str, change: Change, expected: list[str]) -> None:
    obj = apply_defaults(changed(crd_name, change), SCHEMAS[crd_name])
    assert cel_violations(SCHEMAS[crd_name], obj) == expected
    webhook_errors = VALIDATORS[crd_name](obj)
    assert bool(webhook_errors) == bool(expected), "the webhook agrees with the API server"


POWER_CASES = frozenset({
    "power-ipmi", "power-redfish", "power-wol-ssh", "power-wol-ipmi", "power-redfish-ssh", "jobs-and-power",
    "one-job-only", "two-bmcs", "no-on-driver", "no-off-driver", "ca-bundle-neither", "ca-bundle-both",
})


def test_the_power_rules_say_what_the_webhook_says() -> None:
    power_cases = [case for case in CEL_CASES if case.id in POWER_CASES]
    assert len(power_cases) == len(POWER_CASES)
    for case in power_cases:
        webhook_messages = [error.message for error in validate_node(changed(NODE_CRD_NAME, case.values[1]))]
        assert webhook_messages == case.values[2], case.id


def test_every_cel_rule_has_a_case_that_breaks_it() -> None:
    broken_messages = {message for case in CEL_CASES for message in case.values[2]}
    assert {rule["message"] for _, _, rule in cel_rules()} == broken_messages


# --- printer columns ------------------------------------------------------------------------------------

OBJECT_META_FIELDS = {"name", "namespace", "labels", "annotations", "creationTimestamp", "generation", "uid"}
COLUMN_TYPES = {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean", "date": "string"}


def _json_path_parts(json_path: str) -> list[str]:
    return [part.replace("\\.", ".") for part in re.split(r"(?<!\\)\.", json_path.removeprefix("."))]


COLUMNS = [
    pytest.param(crd_name, column, id=f"{crd_name.split('.')[0]}-{column['name']}")
    for crd_name, crd in CRDS.items()
    for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]
]


@pytest.mark.parametrize(("crd_name", "column"), COLUMNS)
def test_printer_columns_point_at_fields_that_exist(crd_name: str, column: dict[str, str]) -> None:
    first, *rest = _json_path_parts(column["jsonPath"])
    if first == "metadata":
        assert rest[0] in OBJECT_META_FIELDS
        assert len(rest) == 1 or (rest[0] in ("labels", "annotations") and len(rest) == 2)
        return
    node: Schema = SCHEMAS[crd_name]["properties"][first]
    for part in rest:
        assert part in node.get("properties", {}), f"{column['jsonPath']} is not in the schema"
        node = node["properties"][part]
    assert node["type"] == COLUMN_TYPES[column["type"]]


def test_printer_columns_are_the_documented_ones() -> None:
    names = {
        name: [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]] for name, crd in CRDS.items()
    }
    assert names == {
        GROUP_CRD_NAME: ["MIN", "MAX", "TARGET", "READY", "AGE"],
        NODE_CRD_NAME: ["GROUP", "STATE", "POLICY", "PROVIDER-ID", "AGE"],
    }


def test_the_group_column_reads_the_membership_label() -> None:
    (group_column,) = [c for c in COLUMNS if c.values[1]["name"] == "GROUP"]
    assert _json_path_parts(group_column.values[1]["jsonPath"]) == ["metadata", "labels", GROUP_LABEL]


# --- sample objects against the schema ------------------------------------------------------------------


def schema_errors(crd_name: str, obj: Mapping[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(SCHEMAS[crd_name], format_checker=FORMATS)
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(obj)]


@pytest.mark.parametrize("crd_name", list(SAMPLES))
def test_sample_objects_validate(crd_name: str) -> None:
    assert schema_errors(crd_name, SAMPLES[crd_name]()) == []
    assert VALIDATORS[crd_name](SAMPLES[crd_name]()) == []


@pytest.mark.parametrize(
    ("crd_name", "change", "where"),
    [
        pytest.param(GROUP_CRD_NAME, without("spec"), "$", id="no-spec"),
        pytest.param(GROUP_CRD_NAME, at("spec", "maxSize", value="three"), "$.spec.maxSize", id="maxSize-text"),
        pytest.param(GROUP_CRD_NAME, at("spec", "maxSize", value=-1), "$.spec.maxSize", id="maxSize-negative"),
        pytest.param(
            GROUP_CRD_NAME, at("spec", "powerOffNodePolicy", value="Destroy"), "$.spec.powerOffNodePolicy", id="enum"
        ),
        pytest.param(
            GROUP_CRD_NAME, at("spec", "bootTimeout", value="10 minutes"), "$.spec.bootTimeout", id="duration"
        ),
        pytest.param(
            GROUP_CRD_NAME,
            at("spec", "template", "capacity", "cpu", value="lots"),
            "$.spec.template.capacity.cpu",
            id="quantity",
        ),
        pytest.param(
            GROUP_CRD_NAME,
            at("spec", "autoscalingOptions", "scaleDownUtilizationThreshold", value=2),
            "$.spec.autoscalingOptions.scaleDownUtilizationThreshold",
            id="threshold",
        ),
        pytest.param(GROUP_CRD_NAME, at("metadata", "name", value="g" * 64), "$.metadata.name", id="long-name"),
        pytest.param(NODE_CRD_NAME, at("spec", "providerID", value="node1"), "$.spec.providerID", id="providerID"),
        pytest.param(
            NODE_CRD_NAME,
            at("spec", "startupJob", "volumes", 0, "name", value="Bad_Name"),
            "$.spec.startupJob.volumes[0].name",
            id="volume-name",
        ),
        pytest.param(
            NODE_CRD_NAME,
            at("spec", "startupJob", "env", value=[{"name": f"V{index}", "value": "x"} for index in range(65)]),
            "$.spec.startupJob.env",
            id="too-many-env",
        ),
        pytest.param(
            NODE_CRD_NAME,
            powered_natively(wakeOnLan={"macAddress": "not-a-mac"}, ssh=SSH),
            "$.spec.power.wakeOnLan.macAddress",
            id="mac-address",
        ),
        pytest.param(NODE_CRD_NAME, at("status", "since", value="yesterday"), "$.status.since", id="date-time"),
    ],
)
def test_bad_objects_are_refused_by_the_schema_and_by_the_webhook(crd_name: str, change: Change, where: str) -> None:
    obj = changed(crd_name, change)
    errors = schema_errors(crd_name, obj)
    assert any(error.startswith(f"{where}: ") for error in errors), errors
    assert VALIDATORS[crd_name](obj) != []


# --- committed files and the CLI ------------------------------------------------------------------------


@pytest.mark.parametrize("file_name", list(render_crd_files()))
def test_committed_crds_are_up_to_date(file_name: str) -> None:
    committed = COMMITTED_CRDS / file_name
    expected = render_crd_files()[file_name]
    regenerate = f"{committed.relative_to(REPOSITORY)} is stale: regenerate it with `{REGENERATE_COMMAND}`"
    assert committed.exists(), regenerate
    assert committed.read_text(encoding="utf-8") == expected, regenerate


def test_the_yaml_stream_holds_both_crds() -> None:
    assert list(yaml.safe_load_all(render_crds_yaml())) == render_crds()
    assert [name for name in CRDS] == [GROUP_CRD_NAME, NODE_CRD_NAME]


def test_cli_prints_the_crds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    assert capsys.readouterr().out == render_crds_yaml()


def test_cli_writes_and_checks_the_crds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds", "--write", str(tmp_path / "crds")]) == 0
    assert {path.name: path.read_text(encoding="utf-8") for path in (tmp_path / "crds").iterdir()} == render_crd_files()
    assert main(["crds", "--check", str(tmp_path / "crds")]) == 0
    capsys.readouterr()

    stale = tmp_path / "crds" / f"{NODE_CRD_NAME}.yaml"
    stale.write_text(stale.read_text(encoding="utf-8").replace("hnode", "hn"), encoding="utf-8")
    assert main(["crds", "--check", str(tmp_path / "crds")]) == 1
    output = capsys.readouterr()
    assert "-    - hn\n+    - hnode" in output.out
    assert REGENERATE_COMMAND in output.err


def test_cli_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"homelab-autoscaler {__version__}\n"


def test_version_and_dash_dash_version_print_the_same_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    command = capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == command


def test_cli_without_a_command_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_a_command_module_needs_only_add_parser_and_run() -> None:
    def add_parser(subparsers: Any) -> None:
        subparsers.add_parser("hello")

    def run(args: Any) -> int:
        return 7

    parser = build_parser([SimpleNamespace(add_parser=add_parser, run=run)])  # type: ignore[list-item]
    args = parser.parse_args(["hello"])
    assert args.handler(args) == 7


def test_help_lists_every_shipped_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = re.findall(r"^    (\w+) ", capsys.readouterr().out, flags=re.MULTILINE)
    shipped = sorted(path.stem for path in Path(commands.__file__).parent.glob("[!_]*.py"))
    assert listed == shipped
