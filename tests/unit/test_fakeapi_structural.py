"""A CRD schema's verdict on one object, as the real API server words it: the cause table kubectl prints."""

from __future__ import annotations

from typing import Any

import pytest

from sim.fakeapi.errors import FieldCause
from sim.fakeapi.structural import admit

NOT_CHECKED = FieldCause("<nil>", "FieldValueInvalid", "null: some validation rules were not checked because the "
                         "object was invalid; correct the existing errors to complete validation")
SPEC: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 5},
        "image": {"type": "string", "minLength": 1},
        "count": {"type": "integer", "minimum": 1, "maximum": 3},
        "quantity": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "when": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "note": {"type": "string", "nullable": True},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "window": {"type": "object", "properties": {"low": {"type": "integer"}, "high": {"type": "integer"}},
                   "x-kubernetes-validations": [{"rule": "self.low <= self.high", "message": "low above high",
                                                 "fieldPath": ".low"}]},
    },
}
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"spec": SPEC}}


def obj(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.dev/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec}


CASES = [
    pytest.param({"name": "toolong"}, [FieldCause("spec.name", "FieldValueTooLong", "may not be more than 5 bytes"),
                                       NOT_CHECKED], id="max-length-blocks-rules"),
    pytest.param({"image": ""}, [FieldCause("spec.image", "FieldValueInvalid",
                                            '"": spec.image in body should be at least 1 chars long')],
                 id="min-length"),
    pytest.param({"count": 1.5}, [
        FieldCause("spec.count", "FieldValueTypeInvalid",
                   '"number": spec.count in body must be of type integer: "number"'),
        FieldCause("<nil>", "FieldValueInvalid", '"": Checked value must be of type integer (default format) in '
                                                 "spec.count"),
        NOT_CHECKED], id="fraction-for-integer"),
    pytest.param({"count": 4}, [FieldCause("spec.count", "FieldValueInvalid",
                                           "4: spec.count in body should be less than or equal to 3")],
                 id="maximum"),
    pytest.param({"count": 2.0, "quantity": "500m"}, [], id="integral-number-and-int-or-string"),
    pytest.param({"quantity": True}, [
        FieldCause("spec.quantity", "FieldValueTypeInvalid",
                   '"boolean": spec.quantity in body must be of type integer or string: "boolean"'), NOT_CHECKED],
        id="int-or-string"),
    pytest.param({"when": "yesterday"}, [FieldCause("spec.when", "FieldValueInvalid",
                                                    '"yesterday": spec.when in body must be of type date-time: '
                                                    '"yesterday"')], id="date-time"),
    pytest.param({"tags": ["a", "b", "c"]}, [FieldCause("spec.tags", "FieldValueTooMany",
                                                        "3: must have at most 2 items"), NOT_CHECKED], id="max-items"),
    pytest.param({"ports": [{"name": "a"}, {"name": "a"}]},
                 [FieldCause("spec.ports[1]", "FieldValueDuplicate", '{"name": "a"}')], id="list-map-duplicate"),
    pytest.param({"note": None, "free": {"anything": {"goes": 1}}}, [], id="nullable-and-preserved"),
    pytest.param({"window": {"low": 3, "high": 1}},
                 [FieldCause("spec.window.low", "FieldValueInvalid", "low above high")], id="cel-rule-field-path"),
    pytest.param({"window": {"low": 3, "high": 1}, "image": ""}, [
        FieldCause("spec.image", "FieldValueInvalid", '"": spec.image in body should be at least 1 chars long'),
        FieldCause("spec.window.low", "FieldValueInvalid", "low above high"),
    ], id="cel-runs-after-a-non-blocking-error"),
]


@pytest.mark.parametrize(("spec", "causes"), CASES)
def test_the_schemas_causes(spec: dict[str, Any], causes: list[FieldCause]) -> None:
    assert admit(obj(**spec), SCHEMA).causes == causes


def test_unknown_fields_and_disallowed_nulls_are_pruned_and_reported() -> None:
    outcome = admit(obj(image="i", colour="red", count=None, free={"kept": True}), SCHEMA)

    assert outcome.obj["spec"] == {"image": "i", "free": {"kept": True}}
    assert outcome.unknown_fields == ["spec.colour"]


def test_an_update_is_not_blamed_for_what_it_did_not_change() -> None:
    stored_under_an_older_schema = obj(image="", window={"low": 3, "high": 1}, count=2)

    unchanged = admit(obj(image="", window={"low": 3, "high": 1}, count=3), SCHEMA, stored_under_an_older_schema)
    changed = admit(obj(image="", window={"low": 4, "high": 1}, count=3), SCHEMA, stored_under_an_older_schema)

    assert unchanged.causes == []
    assert changed.causes == [FieldCause("spec.window.low", "FieldValueInvalid", "low above high")]


def test_a_bad_value_under_a_map_key_with_dots_is_reported_on_update() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"capacity": {
        "type": "object", "additionalProperties": {"type": "string", "pattern": "^[0-9]+$"}}}}}}
    old = {"spec": {"capacity": {"nvidia.com/gpu": "1"}}}

    outcome = admit({"spec": {"capacity": {"nvidia.com/gpu": "one"}}}, schema, old)

    assert [cause.field for cause in outcome.causes] == ["spec.capacity.nvidia.com/gpu"]


def test_unknown_fields_are_reported_sorted_metadata_included() -> None:
    thing = obj(image="i", zebra=1, apple=2)
    thing["metadata"]["colour"] = "red"

    outcome = admit(thing, SCHEMA)

    assert outcome.unknown_fields == ["metadata.colour", "spec.apple", "spec.zebra"]
    assert outcome.obj["metadata"] == {"name": "t"}
