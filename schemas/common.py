"""Value types shared by the Group and Node resources: durations, quantities, taints, conditions.

Durations are Go duration strings (`90s`, `10m`, `1h30m`) because that is what every Kubernetes user
already writes in CA flags; quantities are Kubernetes quantity strings (`8`, `31Gi`, `500m`). Both stay
strings on the wire and are parsed by the pure helpers here, so the CRD schema, the webhook and the
state machines agree on one grammar.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Final, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
AUTO: Final = "auto"
"""The value of a `DurationOrAuto` that asks the operator to choose the duration from what it has observed."""
DURATION_OR_AUTO_PATTERN: Final = r"^(auto|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"
QUANTITY_PATTERN: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# RFC 1123 subdomain (object names) and RFC 1123 label (container and volume names).
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

_DURATION_UNITS: Final = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_DURATION_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_QUANTITY_SUFFIXES: Final = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string; raises ValueError naming the bad text. Pure."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 90s, 10m or 1h30m")
    return float(sum(Decimal(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(text)))


def format_duration(seconds: float) -> str:
    """A compact Go duration string for a number of seconds (`1h30m`, `45s`, `1.5s`). Pure."""
    if seconds < 0:
        raise ValueError("durations are never negative")
    whole = int(seconds)
    fraction = seconds - whole
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs or fraction or not parts:
        text = f"{secs + fraction:.3f}".rstrip("0").rstrip(".")
        parts.append(f"{text}s")
    return "".join(parts)


def human_duration(seconds: float) -> str:
    """A duration for people: the two largest units, whole seconds (`45s`, `1m42s`, `2h5m`, `3d4h`). Pure.

    Unlike `format_duration` (a Go duration for specs), it never shows fractions: nobody acts on 0.3 s.
    Negative counts as 0.
    """
    whole = max(0, math.floor(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    for big, big_unit, small, small_unit in (
        (days, "d", hours, "h"),
        (hours, "h", minutes, "m"),
        (minutes, "m", secs, "s"),
    ):
        if big:
            return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"
    return f"{secs}s"


def human_moment(moment: datetime, now: datetime) -> str:
    """A moment for people, relative to `now`: `06:01:13 UTC (in 1m42s)`, with the date when it is another day. Pure.

    Shown in Events, statuses and refusals instead of an ISO timestamp with microseconds; both are UTC, the
    operator's clock and the API server's.
    """
    moment_utc, now_utc = _utc(moment), _utc(now)
    clock = moment_utc.strftime("%H:%M:%S UTC")
    if moment_utc.date() != now_utc.date():
        clock = f"{moment_utc.date().isoformat()} {clock}"
    seconds = (moment_utc - now_utc).total_seconds()
    relative = f"in {human_duration(seconds)}" if seconds >= 0 else f"{human_duration(-seconds)} ago"
    return f"{clock} ({relative})"


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_quantity(text: str) -> Decimal:
    """The numeric value of a Kubernetes quantity string (`31Gi` → bytes, `500m` → 0.5). Pure."""
    if not re.fullmatch(QUANTITY_PATTERN, text):
        raise ValueError(f"{text!r} is not a Kubernetes quantity such as 8, 500m or 31Gi")
    match = re.fullmatch(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)", text)
    assert match is not None  # guaranteed by QUANTITY_PATTERN
    number, suffix = match.groups()
    try:
        if suffix in _QUANTITY_SUFFIXES:
            return Decimal(number) * _QUANTITY_SUFFIXES[suffix]
        return Decimal(number + suffix)  # decimal exponent form such as 1e3
    except InvalidOperation as error:
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from error


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


def _check_duration_or_auto(text: str) -> str:
    return text if text == AUTO else _check_duration(text)


def _check_quantity(text: str) -> str:
    parse_quantity(text)
    return text


def _quantity_from_integer(value: object) -> object:
    # YAML users write `cpu: 8` and `pods: 110` unquoted, as they do in every core Kubernetes object;
    # refusing the integer would make the most common spelling an error. bool is an int subclass: refused.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


# The pattern comes before the validator: pydantic keeps a constraint in the JSON schema (and so in the CRD)
# only when it applies to the plain string, not to a validator's result.
Duration = Annotated[str, Field(pattern=DURATION_PATTERN), AfterValidator(_check_duration)]
DurationOrAuto = Annotated[str, Field(pattern=DURATION_OR_AUTO_PATTERN), AfterValidator(_check_duration_or_auto)]
"""A duration, or `auto`: one string type (not a union), so the CRD keeps a plain string with one pattern."""
Quantity = Annotated[
    str,
    Field(pattern=QUANTITY_PATTERN),
    AfterValidator(_check_quantity),
    BeforeValidator(_quantity_from_integer),  # outermost, so it runs first
    # The CRD spelling of a core/v1 Quantity: an integer or a quantity string (validation mode only).
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        },
        mode="validation",
    ),
]


_SHARED_FIELDS_SETS: dict[frozenset[str], set[str]] = {}
_MAX_SHARED_FIELDS_SETS: Final = 4096
"""Distinct field sets seen in practice number in the tens; the bound only keeps odd input from growing the table."""


def _share_fields_set(model: BaseModel) -> None:
    # pydantic gives each instance its own set of the fields it was given (216 bytes, 728 once it holds more than
    # four names), and a parsed Node resource is a dozen models: at 5000 machines the sets alone were ~20 MiB.
    # One set per distinct content is shared instead. Safe because these models are frozen: pydantic never changes
    # an existing instance's set (`model_copy` copies it before adding to it), and an equal set answers
    # `model_fields_set` and `exclude_unset` exactly as before.
    fields_set = model.__pydantic_fields_set__
    key = frozenset(fields_set)
    shared = _SHARED_FIELDS_SETS.get(key)
    if shared is None:
        if len(_SHARED_FIELDS_SETS) < _MAX_SHARED_FIELDS_SETS:
            _SHARED_FIELDS_SETS[key] = fields_set
    elif shared is not fields_set:
        object.__setattr__(model, "__pydantic_fields_set__", shared)


def _intern_strings(model: BaseModel) -> None:
    # Every machine's resource repeats most of its strings (image, scripts, env names, namespace, condition
    # reasons), and JSON decoding makes a new object of each: ~1.5 KB per machine. Interned strings are shared
    # and, since Python 3.10, freed with their last user. Only exact `str` values are touched (enum members are
    # singletons already); a replaced value is equal to the old one, so the frozen model reads the same.
    values = model.__dict__
    for name, value in values.items():
        if type(value) is str:
            values[name] = sys.intern(value)
        elif type(value) is tuple and value and type(value[0]) is str:
            values[name] = tuple(sys.intern(item) if type(item) is str else item for item in value)
        elif type(value) is dict and value:
            for key, item in value.items():
                if type(item) is str:
                    value[key] = sys.intern(item)


class Model(BaseModel):
    """Base for every resource part: immutable, camelCase on the wire, unknown fields refused.

    Every instance is compacted once built (`model_post_init`, `model_copy`): the memory of 5000 parsed machines
    is most of the operator's budget, and frozen models can share equal parts without anyone noticing.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_enum_values=False,
    )

    def model_post_init(self, context: Any, /) -> None:
        _share_fields_set(self)
        _intern_strings(self)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copied = super().model_copy(update=update, deep=deep)
        _share_fields_set(copied)
        return copied


class StatusModel(Model):
    """Base for status parts: unknown fields are ignored so an older operator can read a newer status."""

    model_config = ConfigDict(extra="ignore")


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Taint(Model):
    """A Kubernetes Node taint, as in core/v1."""

    key: str = Field(min_length=1, max_length=316, description="Taint key, e.g. `dedicated`.")
    value: str = Field(default="", max_length=63, description="Taint value; may be empty.")
    effect: TaintEffect = Field(description="NoSchedule, PreferNoSchedule or NoExecute.")


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class Toleration(Model):
    """A pod toleration, as in core/v1 (used to place power Jobs)."""

    key: str | None = Field(default=None, description="Taint key the toleration matches; empty matches all.")
    operator: TolerationOperator = Field(default=TolerationOperator.EQUAL, description="Exists or Equal.")
    value: str | None = Field(default=None, description="Value to match when operator is Equal.")
    effect: TaintEffect | None = Field(default=None, description="Effect to match; empty matches all.")
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="How long a NoExecute taint is tolerated; unset means forever."
    )


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """A status condition following Kubernetes conventions (one entry per type, never appended twice)."""

    type: str = Field(description="Condition type, e.g. Ready or Quarantined.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One CamelCase word saying why.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: datetime | None = Field(
        default=None, description="When status last changed (not when the condition was last written)."
    )
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation this condition was computed from."
    )


def set_condition(conditions: tuple[Condition, ...], new: Condition, now: datetime) -> tuple[Condition, ...]:
    """Conditions with `new` replacing any of its type; the transition time moves only when status flips."""
    previous = next((c for c in conditions if c.type == new.type), None)
    stamped_time = previous.last_transition_time if previous and previous.status == new.status else now
    stamped = new.model_copy(update={"last_transition_time": stamped_time})
    return (*(c for c in conditions if c.type != new.type), stamped)


class Metadata(StatusModel):
    """The slice of Kubernetes object metadata the operator reasons about."""

    name: str = Field(description="Object name.")
    namespace: str = Field(default="", description="Namespace; empty for cluster-scoped objects.")
    uid: str = Field(default="", description="Unique id assigned by the API server.")
    resource_version: str = Field(default="", description="Opaque version used for optimistic concurrency.")
    generation: int = Field(default=0, description="Incremented by the API server on every spec change.")
    labels: dict[str, str] = Field(default_factory=dict, description="Object labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Object annotations.")
    deletion_timestamp: datetime | None = Field(default=None, description="Set once deletion has begun.")
