"""The Group and Node CustomResourceDefinitions, generated from the pydantic models.

The original project wrote its CRDs by hand beside its types and they drifted: no defaults, no validation,
documentation describing fields that did not exist. Here the models in `schemas/` are the only source: this
module walks their JSON schema and rewrites it into the dialect the Kubernetes API server accepts, a
*structural* OpenAPI v3 schema: every `$ref` inlined, `X | None` turned into "not required", titles dropped,
defaults kept inside the schema (so `kubectl get -o yaml` shows the effective values), and the cheap
cross-field rules of `schemas.validation` added as CEL `x-kubernetes-validations` so the API server refuses a
bad object even when the admission webhook is not installed.

What the API server needs besides the schema (names, printer columns, status subresource) is written out
here too. The committed files under `manifests/crds/` must equal `render_crd_files()`; a test checks that and
names the command that regenerates them (`REGENERATE_COMMAND`). Pure apart from returning text: the CLI
writes the files.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from schemas import API_GROUP, API_VERSION
from schemas.group import (
    Exercise,
    ExerciseWindow,
    FailurePolicy,
    Group,
    GroupSpec,
    GroupStatus,
    NodeTemplate,
    PowerReadbackPolicy,
    Schedule,
)
from schemas.labels import GROUP_LABEL
from schemas.node import (
    EnvFromSource,
    EnvVar,
    EnvVarSource,
    JobTemplate,
    Node,
    NodeSpec,
    NodeStatus,
    VolumeMount,
)
from schemas.power import CertificateAuthorityReference, PowerSpec
from schemas.validation import (
    JOBS_AND_POWER_MESSAGE,
    MAX_LABEL_VALUE_LENGTH,
    NEITHER_JOBS_NOR_POWER_MESSAGE,
    PROVIDER_ID_PATTERN,
)

CRD_API_VERSION: Final = "apiextensions.k8s.io/v1"
GROUP_CRD_NAME: Final = f"groups.{API_GROUP}"
NODE_CRD_NAME: Final = f"nodes.{API_GROUP}"
CATEGORY: Final = "homelab"
REGENERATE_COMMAND: Final = "homelab-autoscaler crds --write manifests/crds"

_FILE_HEADER: Final = (
    "# Generated from the pydantic models in schemas/ by schemas/crds.py. Do not edit by hand:\n"
    f"# change the models, then run `{REGENERATE_COMMAND}`.\n"
)


class CrdGenerationError(ValueError):
    """A model uses a construct that has no structural-schema spelling; the message names the field."""


@dataclass(frozen=True)
class CelRule:
    """One `x-kubernetes-validations` entry; `field_path` (relative, `.minSize`) is where kubectl points."""

    rule: str
    message: str
    field_path: str | None = None

    def as_schema(self) -> dict[str, str]:
        entry = {"rule": self.rule, "message": self.message}
        if self.field_path is not None:
            entry["fieldPath"] = self.field_path
        return entry


def _exactly_one(first: str, second: str, what: str) -> CelRule:
    return CelRule(
        f"has(self.{first}) != has(self.{second})", f"{what} must set exactly one of {first} or {second}"
    )


WINDOW_HAS_A_LENGTH: Final = CelRule(
    "self.start != self.end", "end must differ from start (a window needs a length)", ".end"
)
"""Every weekly window's (a schedule's, an exercise window's) one rule of its own."""

# PowerSpec.problems()' messages without their path (kubectl prints the path itself); a test holds them equal.
POWER_ONE_BMC_MESSAGE: Final = "name at most one BMC (ipmi or redfish), not both"
POWER_NO_ON_DRIVER_MESSAGE: Final = "nothing can power the machine on: add wakeOnLan, ipmi or redfish"
POWER_NO_OFF_DRIVER_MESSAGE: Final = "nothing can power the machine off: add ssh, ipmi or redfish"
POWER_CA_BUNDLE_MESSAGE: Final = "set exactly one of secretKeyRef and configMapKeyRef"

# Only rules whose cost does not grow with the size of the object belong here (has(), in, comparisons):
# the API server refuses a CRD whose rules might exceed its cost budget. Everything dearer, such as
# allocatable against capacity or unique mount paths, stays in schemas.validation, run by the webhook.
MODEL_RULES: Final[Mapping[type[BaseModel], tuple[CelRule, ...]]] = {
    GroupSpec: (
        CelRule(
            "!has(self.minSize) || self.minSize <= self.maxSize",
            "minSize must not be greater than maxSize",
            ".minSize",
        ),
        # Bounded by schedules' maxItems, so its cost is too. The zone itself is checked by the webhook (CEL
        # has no tz database list).
        CelRule(
            "!has(self.schedules) || self.schedules.all(s, "
            "(has(s.minSize) ? s.minSize : (has(self.minSize) ? self.minSize : 0)) <= "
            "(has(s.maxSize) ? s.maxSize : self.maxSize))",
            "a schedule's minSize (or spec.minSize) must not be greater than its maxSize (or spec.maxSize)",
            ".schedules",
        ),
    ),
    Schedule: (
        WINDOW_HAS_A_LENGTH,
        CelRule("has(self.minSize) || has(self.maxSize)", "a schedule must set minSize, maxSize or both"),
    ),
    Exercise: (
        CelRule(
            "!has(self.every) || duration(self.every) >= duration('1h')",
            "every must be at least 1h: each exercise is a real boot and power-off",
            ".every",
        ),
    ),
    ExerciseWindow: (WINDOW_HAS_A_LENGTH,),
    FailurePolicy: (
        CelRule(
            "!has(self.cooldownBase) || !has(self.cooldownCap) || "
            "duration(self.cooldownBase) <= duration(self.cooldownCap)",
            "cooldownBase must not be longer than cooldownCap",
            ".cooldownBase",
        ),
    ),
    NodeTemplate: (
        CelRule(
            "'pods' in self.capacity",
            "capacity must include pods (e.g. pods: 110): a scale-from-zero template without pods fits "
            "no pod",
            ".capacity",
        ),
    ),
    PowerReadbackPolicy: (
        CelRule(
            "!has(self.transitionInterval) || !has(self.steadyInterval) || "
            "duration(self.transitionInterval) <= duration(self.steadyInterval)",
            "transitionInterval must not be longer than steadyInterval",
            ".transitionInterval",
        ),
    ),
    # The two ways to power a machine, and the driver combinations of PowerSpec.problems(), in the webhook's words.
    NodeSpec: (
        CelRule("!has(self.power) || (!has(self.startupJob) && !has(self.shutdownJob))", JOBS_AND_POWER_MESSAGE),
        CelRule("has(self.power) || (has(self.startupJob) && has(self.shutdownJob))", NEITHER_JOBS_NOR_POWER_MESSAGE),
    ),
    PowerSpec: (
        CelRule("!has(self.ipmi) || !has(self.redfish)", POWER_ONE_BMC_MESSAGE),
        CelRule("has(self.wakeOnLan) || has(self.ipmi) || has(self.redfish)", POWER_NO_ON_DRIVER_MESSAGE),
        CelRule("has(self.ssh) || has(self.ipmi) || has(self.redfish)", POWER_NO_OFF_DRIVER_MESSAGE),
    ),
    CertificateAuthorityReference: (
        CelRule("has(self.secretKeyRef) != has(self.configMapKeyRef)", POWER_CA_BUNDLE_MESSAGE),
    ),
    EnvVar: (_exactly_one("value", "valueFrom", "an env entry"),),
    EnvVarSource: (_exactly_one("secretKeyRef", "configMapKeyRef", "valueFrom"),),
    EnvFromSource: (_exactly_one("secretRef", "configMapRef", "an envFrom entry"),),
    VolumeMount: (_exactly_one("secretName", "configMapName", "a volume"),),
}

_LIST_MAP_BY_TYPE: Final = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}

# Schema keywords a field gains in the CRD only. The list-map on volumes makes the API server refuse two
# volumes of one name (and lets server-side apply merge by name).
FIELD_EXTRAS: Final[Mapping[tuple[type[BaseModel], str], Mapping[str, Any]]] = {
    (GroupStatus, "conditions"): _LIST_MAP_BY_TYPE,
    (NodeStatus, "conditions"): _LIST_MAP_BY_TYPE,
    (GroupSpec, "schedules"): {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    (JobTemplate, "volumes"): {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    (NodeSpec, "provider_id"): {"pattern": PROVIDER_ID_PATTERN},
}

# The keywords of apiextensions.k8s.io/v1 JSONSchemaProps we emit, in the order they are written out.
_KEY_ORDER: Final = (
    "description",
    "type",
    "format",
    "enum",
    "pattern",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "anyOf",
    "default",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
)
_RULE_KEY_ORDER: Final = ("rule", "message", "fieldPath", "reason")
# JSON Schema keywords with no meaning to the API server; dropping them changes nothing it checks.
_DROPPED_KEYS: Final = frozenset({"title", "examples", "readOnly", "writeOnly", "deprecated", "$defs"})
_ABSENT: Final = object()


class _CrdJsonSchema(GenerateJsonSchema):
    """pydantic's JSON schema plus factory defaults, CEL rules and CRD-only field keywords."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()  # type: ignore[call-arg]
        return super().get_default_value(schema)

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        model: type[BaseModel] = schema["cls"]
        properties = json_schema.get("properties", {})
        for field_name, info in model.model_fields.items():
            extras = FIELD_EXTRAS.get((model, field_name))
            if extras:
                properties[info.alias or field_name].update(copy.deepcopy(dict(extras)))
        rules = MODEL_RULES.get(model)
        if rules:
            json_schema["x-kubernetes-validations"] = [rule.as_schema() for rule in rules]
        return json_schema


class _StructuralConverter:
    """Rewrites a pydantic JSON schema into a structural schema, one node at a time."""

    def __init__(self, definitions: Mapping[str, Any]) -> None:
        self._definitions = definitions

    def convert(self, node: Mapping[str, Any], path: str) -> dict[str, Any]:
        node = self._flatten(node, path)
        result: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED_KEYS:
                continue
            if key == "additionalProperties" and value is False:
                continue  # forbidden in structural schemas; the API server prunes unknown fields instead
            if key == "const":
                result["enum"] = [value]
            elif key == "exclusiveMinimum" and not isinstance(value, bool):
                result["minimum"], result["exclusiveMinimum"] = value, True
            elif key == "exclusiveMaximum" and not isinstance(value, bool):
                result["maximum"], result["exclusiveMaximum"] = value, True
            elif key == "properties":
                result[key] = {name: self.convert(child, f"{path}.{name}") for name, child in value.items()}
            elif key in ("items", "additionalProperties"):
                result[key] = self.convert(value, f"{path}[]")
            elif key == "x-kubernetes-validations":
                # pydantic sorts keys alphabetically; a reader expects the rule first.
                result[key] = [
                    {name: rule[name] for name in _RULE_KEY_ORDER if name in rule} for rule in value
                ]
            elif key in _KEY_ORDER:
                result[key] = copy.deepcopy(value)
            else:
                raise CrdGenerationError(
                    f"{path or '<root>'}: JSON schema keyword {key!r} has no CRD spelling"
                )
        if not result.get("required"):
            result.pop("required", None)
        if "default" in result:
            default = _normalise_default(result.pop("default"), result)
            if default is not _ABSENT:
                result["default"] = default
        if "type" not in result and not result.get("x-kubernetes-int-or-string"):
            raise CrdGenerationError(f"{path or '<root>'}: no type could be derived for this field")
        return {key: result[key] for key in _KEY_ORDER if key in result}

    def _flatten(self, node: Mapping[str, Any], path: str) -> dict[str, Any]:
        """Inline `$ref`s and fold `X | None` (and one-member allOf) into the node itself; outer keys win."""
        flat = dict(node)
        while True:
            if "$ref" in flat:
                reference = flat.pop("$ref")
                name = reference.removeprefix("#/$defs/")
                if name not in self._definitions:
                    raise CrdGenerationError(f"{path}: unresolvable reference {reference}")
                flat = {**self._definitions[name], **flat}
            elif "anyOf" in flat and not flat.get("x-kubernetes-int-or-string"):
                members = [member for member in flat.pop("anyOf") if member != {"type": "null"}]
                if len(members) != 1:
                    raise CrdGenerationError(
                        f"{path}: a union of {len(members)} types cannot be written as a structural schema"
                    )
                flat = {**members[0], **flat}
            elif "allOf" in flat and len(flat["allOf"]) == 1:
                flat = {**flat.pop("allOf")[0], **flat}
            elif "oneOf" in flat or "allOf" in flat:
                raise CrdGenerationError(f"{path}: oneOf/allOf cannot be written as a structural schema")
            else:
                return flat


def _normalise_default(value: Any, schema: Mapping[str, Any]) -> Any:
    """The default as the CRD should carry it, or _ABSENT when stating it would add nothing.

    None, "", [] and {} are left out: every reader treats an absent field exactly so, and the API server
    would otherwise write them into every stored object. An object default that the defaults of its own
    properties reproduce becomes `{}`, which lets the API server fill the nested defaults itself.
    """
    value = _without_empty(value)
    if value is _ABSENT:
        return _ABSENT
    if isinstance(value, dict) and "properties" in schema and value == apply_defaults({}, schema):
        return {} if value else _ABSENT
    return value


def _without_empty(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {key: _without_empty(item) for key, item in value.items()}
        kept = {key: item for key, item in kept.items() if item is not _ABSENT}
        return kept if kept else _ABSENT
    if isinstance(value, list):
        return value if value else _ABSENT
    if value is None or value == "":
        return _ABSENT
    return value


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """`value` with the schema's defaults filled in, as the API server's structural defaulting does. Pure.

    Missing properties take their default (then their own nested defaults); objects inside lists and maps
    are defaulted item by item. Used to normalise defaults here and by tests to build sample objects.
    """
    if isinstance(value, dict):
        result = dict(value)
        properties: Mapping[str, Any] = schema.get("properties", {})
        for name, child in properties.items():
            if name not in result and "default" in child:
                result[name] = copy.deepcopy(child["default"])
            if name in result:
                result[name] = apply_defaults(result[name], child)
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            for name in result:
                if name not in properties:
                    result[name] = apply_defaults(result[name], additional)
        return result
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of `model` (no apiVersion/kind/metadata handling). Pure."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_CrdJsonSchema)
    definitions = raw.pop("$defs", {})
    return _StructuralConverter(definitions).convert(raw, "")


def _resource_schema(model: type[BaseModel], description: str) -> dict[str, Any]:
    generated = openapi_schema(model)
    properties = generated["properties"]
    status = properties["status"]
    status.pop("default", None)  # status belongs to the operator; the API server should not invent one
    return {
        "description": description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource.",
                "type": "string",
            },
            # Names become label values on Kubernetes Nodes and Jobs, and label values stop at 63 characters.
            "metadata": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": MAX_LABEL_VALUE_LENGTH}},
            },
            "spec": properties["spec"],
            "status": status,
        },
    }


def _column(name: str, json_path: str, column_type: str, description: str) -> dict[str, str]:
    return {"name": name, "type": column_type, "jsonPath": json_path, "description": description}


_AGE_COLUMN: Final = _column(
    "AGE", ".metadata.creationTimestamp", "date", "Time since the resource was created."
)


def _crd(
    plural: str,
    kind: str,
    short_name: str,
    schema: dict[str, Any],
    columns: list[dict[str, str]],
) -> dict[str, Any]:
    return {
        "apiVersion": CRD_API_VERSION,
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{API_GROUP}",
            "labels": {"app.kubernetes.io/name": "homelab-autoscaler", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def render_crds() -> list[dict[str, Any]]:
    """The two CustomResourceDefinitions as plain dicts, Group first. Pure and deterministic."""
    group = _crd(
        "groups",
        "Group",
        "hgroup",
        _resource_schema(
            Group,
            "A Group is one Cluster Autoscaler node group of interchangeable physical machines that "
            "homelab-autoscaler powers on and off. Its members are the Node resources of the same namespace "
            f"labelled {GROUP_LABEL}=<group name>.",
        ),
        [
            _column("MIN", ".spec.minSize", "integer", "The autoscaler never goes below this many machines."),
            _column("MAX", ".spec.maxSize", "integer", "The autoscaler never goes above this many machines."),
            _column("TARGET", ".status.targetSize", "integer", "Machines the Cluster Autoscaler wants on."),
            _column("READY", ".status.readyCount", "integer", "Machines that are on and Ready."),
            _AGE_COLUMN,
        ],
    )
    escaped_group_label = GROUP_LABEL.replace(".", "\\.")
    node = _crd(
        "nodes",
        "Node",
        "hnode",
        _resource_schema(
            Node,
            "A Node is one physical machine that homelab-autoscaler powers on and off with a startup and a "
            "shutdown Job, and the durable record of its power state. Not to be confused with the core "
            "Kubernetes Node the machine registers as.",
        ),
        [
            _column("GROUP", f".metadata.labels.{escaped_group_label}", "string", "The machine's Group."),
            _column("STATE", ".status.state", "string", "Power state of the machine."),
            _column("POLICY", ".spec.powerPolicy", "string", "Auto, On, Off or Maintenance."),
            _column("PROVIDER-ID", ".status.providerID", "string", "providerID the Kubernetes Node uses."),
            _AGE_COLUMN,
        ],
    )
    return [group, node]


def _dump(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(
        dict(document), sort_keys=False, allow_unicode=True, width=110, default_flow_style=False
    )


def render_crd_files() -> dict[str, str]:
    """File name (`<crd name>.yaml`) → file text, exactly as committed under manifests/crds/. Pure."""
    return {f"{crd['metadata']['name']}.yaml": _FILE_HEADER + "---\n" + _dump(crd) for crd in render_crds()}


def render_crds_yaml() -> str:
    """Both CRDs as one multi-document YAML stream, ready for `kubectl apply -f -`. Pure."""
    return "".join(render_crd_files().values())
