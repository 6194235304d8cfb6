"""The operator's settings: validated pydantic models in groups, filled from command-line flags, then the environment.

Kept apart from the command so that the flags, their environment variables, their defaults and their help text
come from one place (the groups' fields) and cannot drift: `homelab-autoscaler run --help`,
docs/operations/running.md and the Deployment's arguments all describe these fields. `Settings` holds one group
per concern (Kubernetes, gRPC, metrics, webhook, leader election, logging, energy, shutdown, the pod), read as
`settings.grpc.address`; `--help` shows the same groups. Tests, benchmarks and the demo name settings as their
flags (`Settings.from_flags(grpc_address=...)`), so the grouping is not spelled out at every call.

Precedence: a flag on the command line, else `HOMELAB_AUTOSCALER_<FLAG>` (the flag's name in upper case with
dashes as underscores, e.g. `HOMELAB_AUTOSCALER_WATCH_NAMESPACE`), else the default. `POD_NAME` and
`POD_NAMESPACE` (set by the Deployment from the downward API) are read from the environment only. A bad value is
reported on one line with its flag, its variable, the value and what is expected.

The environment is read here (`settings_from`) rather than by pydantic-settings: its `BaseSettings` maps nested
groups to `PREFIX_GROUP__FIELD` names, not to the flat names the Deployment and users already set, so each group
would have to be a `BaseSettings` of its own with an alias per field, and then every construction of a group (in a
test, a benchmark, the demo) would read the process environment; it has no public way to read a given mapping
instead, and its command-line source names nested flags `--grpc.address`. What it would replace is the short
lookup loop in `settings_from`; the validation and its messages are pydantic's either way.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.config import JsonDict

ENV_PREFIX: Final = "HOMELAB_AUTOSCALER_"
POD_NAME_ENV: Final = "POD_NAME"
POD_NAMESPACE_ENV: Final = "POD_NAMESPACE"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class WebhookCertSource(StrEnum):
    SELF = "self"
    """The operator keeps its own CA and serving certificate in the Secret and fills the webhook's caBundle."""
    CERT_MANAGER = "cert-manager"
    """cert-manager writes the Secret and fills the caBundle; the operator only reads the Secret."""
    FILES = "files"
    """tls.crt and tls.key are already in --webhook-cert-dir (mounted); nothing is read from Kubernetes."""


def _option(default: Any, flag: str, help_text: str, metavar: str | None = None, **constraints: Any) -> Any:
    """A field that is a command-line option: its flag, help text and metavar travel with it."""
    extra: JsonDict = {"flag": flag, "help": help_text, "metavar": metavar}
    return Field(default=default, json_schema_extra=extra, **constraints)


def _address(value: str) -> str:
    host, separator, port = value.rpartition(":")
    if not separator or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not an address of the form HOST:PORT (port 0 picks a free one)")
    return value


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    title: ClassVar[str]
    """The heading of the group's options in `--help`."""


class KubernetesSettings(_Group):
    """Which cluster, which namespaces, and how many threads write to it."""

    title = "Kubernetes"

    kubeconfig: Path | None = _option(
        None, "--kubeconfig",
        "kubeconfig file of the cluster to manage; without it the pod's service account is used in a cluster, "
        "else $KUBECONFIG or ~/.kube/config",
        "FILE",
    )
    context: str | None = _option(
        None, "--context", "kubeconfig context to use; none means the kubeconfig's current one", "NAME"
    )
    namespace: str = _option(
        "homelab-autoscaler", "--namespace",
        "the operator's own namespace: its leader Lease, webhook Secret and pod live there", "NAME", min_length=1,
    )
    watch_namespace: str = _option(
        "", "--watch-namespace",
        "namespace of the Group and Node resources and their power Jobs; empty means every namespace", "NAME",
    )
    writer_workers: int = _option(
        4, "--writer-workers", "threads applying Kubernetes writes (one machine at a time each)", "N", ge=1, le=64
    )


class GrpcSettings(_Group):
    """The Cluster Autoscaler's externalgrpc endpoint and its TLS."""

    title = "gRPC (the Cluster Autoscaler's calls)"

    address: str = _option(
        "0.0.0.0:50051", "--grpc-address", "where the Cluster Autoscaler's externalgrpc calls are served", "HOST:PORT"
    )
    cert: Path | None = _option(None, "--grpc-cert", "PEM certificate for gRPC TLS (plaintext without it)", "FILE")
    key: Path | None = _option(None, "--grpc-key", "PEM private key of --grpc-cert", "FILE")
    client_ca: Path | None = _option(
        None, "--grpc-client-ca",
        "PEM CA certificate; when given, gRPC clients must present a certificate it signed (mutual TLS)", "FILE",
    )

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        return _address(value)

    @model_validator(mode="after")
    def _check_tls(self) -> GrpcSettings:
        if (self.cert is None) != (self.key is None):
            raise ValueError("--grpc-cert and --grpc-key go together")
        if self.client_ca is not None and self.cert is None:
            raise ValueError("--grpc-client-ca (mutual TLS) needs --grpc-cert and --grpc-key")
        return self


class MetricsSettings(_Group):
    """The plain-HTTP endpoint of /metrics, /healthz and /readyz."""

    title = "metrics and health (HTTP)"

    address: str = _option(
        "0.0.0.0:8080", "--metrics-address", "where /metrics, /healthz and /readyz are served (HTTP)", "HOST:PORT"
    )

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        return _address(value)


class WebhookSettings(_Group):
    """The validating admission webhook and where its certificate comes from."""

    title = "admission webhook"

    # Off unless asked for: a run on a workstation has no ValidatingWebhookConfiguration pointing at it, and an HTTPS
    # port on every interface that nobody calls is only exposure. The Deployment passes its address explicitly.
    address: str = _option(
        "", "--webhook-address",
        "where the validating admission webhook is served (HTTPS), e.g. 0.0.0.0:9443; empty (the default) serves "
        "no webhook",
        "HOST:PORT",
    )
    cert_dir: Path = _option(
        Path("/tmp/homelab-autoscaler-webhook"), "--webhook-cert-dir",
        "directory the webhook's tls.crt and tls.key are written to (or read from, with --webhook-cert-source=files)",
        "DIR",
    )
    secret: str = _option(
        "homelab-autoscaler-webhook-tls", "--webhook-secret",
        "Secret (in --namespace) holding the webhook's certificate", "NAME", min_length=1,
    )
    config: str = _option(
        "homelab-autoscaler", "--webhook-config",
        "ValidatingWebhookConfiguration whose caBundle the operator fills", "NAME", min_length=1,
    )
    service: str = _option(
        "homelab-autoscaler-webhook", "--webhook-service",
        "Service (in --namespace) the API server calls the webhook through; the serving certificate covers its DNS "
        "names",
        "NAME", min_length=1,
    )
    cert_source: WebhookCertSource = _option(
        WebhookCertSource.SELF, "--webhook-cert-source",
        "who provides the webhook certificate: self (the operator keeps it in the Secret and fills the caBundle), "
        "cert-manager (it writes both; the operator reads the Secret) or files (already in --webhook-cert-dir)",
    )

    @field_validator("address")
    @classmethod
    def _check_optional_address(cls, value: str) -> str:
        return _address(value) if value else value

    @property
    def enabled(self) -> bool:
        return bool(self.address)


class LeaderElectionSettings(_Group):
    """Whether replicas elect one acting leader through a Lease, and its timings."""

    title = "leader election"

    enabled: bool = _option(
        False, "--leader-elect",
        "elect one acting replica through a Lease; the others serve health, metrics and the webhook and wait",
    )
    lease: str = _option(
        "homelab-autoscaler", "--leader-election-lease", "name of the Lease (in --namespace) used for election",
        "NAME", min_length=1,
    )
    lease_seconds: float = _option(
        15.0, "--leader-election-lease-seconds",
        "how long a Lease outlives its last renewal; a standby takes over within this time after the leader dies",
        "SECONDS", gt=0,
    )
    renew_seconds: float = _option(
        5.0, "--leader-election-renew-seconds", "how often the leader renews its Lease", "SECONDS", gt=0
    )
    retry_seconds: float = _option(
        2.0, "--leader-election-retry-seconds", "how often a standby tries to take the Lease", "SECONDS", gt=0
    )

    @model_validator(mode="after")
    def _check_timings(self) -> LeaderElectionSettings:
        if self.renew_seconds >= self.lease_seconds:
            raise ValueError("--leader-election-renew-seconds must be shorter than --leader-election-lease-seconds")
        return self


class LoggingSettings(_Group):
    """How log records are written."""

    title = "logging"

    format: LogFormat = _option(
        LogFormat.TEXT, "--log-format", "text (one line per record) or json (one JSON object per line)"
    )
    level: LogLevel = _option(LogLevel.INFO, "--log-level", "least severe level that is logged")


class EnergySettings(_Group):
    """What electricity costs, for CA's price expander."""

    title = "energy"

    price_per_kwh: Decimal | None = _option(
        None, "--price-per-kwh",
        "electricity price (currency per kWh), to price machines that declare only their power draw for CA's price "
        "expander",
        "PRICE", ge=0,
    )


class ShutdownSettings(_Group):
    """What happens on SIGTERM."""

    title = "shutdown"

    grace_seconds: float = _option(
        15.0, "--shutdown-grace-seconds",
        "on SIGTERM, how long Kubernetes writes already decided may take to finish (keep it below the pod's "
        "terminationGracePeriodSeconds)",
        "SECONDS", ge=0,
    )


class PodSettings(_Group):
    """This replica's pod, from the Deployment's downward API (environment only, no flags)."""

    title = "pod"

    name: str = Field(default="", description="This replica's pod (env POD_NAME); labelled while it leads.")
    namespace: str = Field(default="", description="This replica's namespace (env POD_NAMESPACE).")


class Settings(BaseModel):
    """Everything `homelab-autoscaler run` can be told, in groups. Group and field order is the order of `--help`.

    Build it from flags and the environment with `settings_from`, or from values named as their flags with
    `Settings.from_flags` (tests, benchmarks and the demo); each group's fields are read as `settings.grpc.address`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    grpc: GrpcSettings = Field(default_factory=GrpcSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    leader_election: LeaderElectionSettings = Field(default_factory=LeaderElectionSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    energy: EnergySettings = Field(default_factory=EnergySettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    pod: PodSettings = Field(default_factory=PodSettings)

    @classmethod
    def from_flags(cls, **values: Any) -> Settings:
        """Settings from values named as their flags (`grpc_address` for `--grpc-address`, `pod_name` for
        POD_NAME), each missing one at its default.

        Raises SettingsError naming the flag and environment variable of every invalid value, and of every name
        that is no setting.
        """
        unknown = sorted(set(values) - set(_OPTIONS_BY_NAME))
        if unknown:
            raise SettingsError(f"no such setting: {', '.join(unknown)}")
        nested: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            option = _OPTIONS_BY_NAME[name]
            nested.setdefault(option.group, {})[option.field] = value
        try:
            return cls.model_validate(nested)
        except ValidationError as error:
            raise SettingsError(describe(error)) from None


class SettingsError(ValueError):
    """The flags or environment do not make valid settings; the message names the flag and its variable."""


@dataclass(frozen=True)
class Option:
    """One setting as a person gives it: a flag (none for the downward API's two) and an environment variable."""

    group: str
    """The `Settings` field holding its group, e.g. `grpc`."""
    group_title: str
    field: str
    """Its field in the group, e.g. `address`."""
    flag: str | None
    """E.g. `--grpc-address`; None for the pod's name and namespace, which come from the environment only."""
    env: str
    """E.g. `HOMELAB_AUTOSCALER_GRPC_ADDRESS`."""
    help: str
    metavar: str | None
    default: Any
    annotation: Any

    @property
    def name(self) -> str:
        """The name `Settings.from_flags` and argparse know it by: the flag's with underscores, e.g. `grpc_address`."""
        return (self.flag or self.env.lower()).removeprefix("--").replace("-", "_")


def env_name(flag: str) -> str:
    """`--watch-namespace` → `HOMELAB_AUTOSCALER_WATCH_NAMESPACE`. Pure."""
    return ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()


def _options() -> tuple[Option, ...]:
    found: list[Option] = []
    for group_name, group_field in Settings.model_fields.items():
        group = group_field.annotation
        if not isinstance(group, type) or not issubclass(group, _Group):
            raise TypeError(f"Settings.{group_name} is not a group of settings")
        for field_name, field in group.model_fields.items():
            extra = field.json_schema_extra
            if isinstance(extra, dict) and "flag" in extra:
                flag = str(extra["flag"])
                env, help_text = env_name(flag), str(extra["help"])
                metavar = str(extra["metavar"]) if extra.get("metavar") else None
            else:
                flag, env, help_text, metavar = None, _POD_ENV[field_name], field.description or "", None
            found.append(Option(
                group_name, group.title, field_name, flag, env, help_text, metavar, field.default, field.annotation
            ))
    return tuple(found)


_POD_ENV: Final = {"name": POD_NAME_ENV, "namespace": POD_NAMESPACE_ENV}
OPTIONS: Final = _options()
"""Every setting, in `--help` order."""
_OPTIONS_BY_NAME: Final = {option.name: option for option in OPTIONS}
_OPTIONS_BY_LOCATION: Final = {(option.group, option.field): option for option in OPTIONS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one option per setting, under a heading per group; every default is None, meaning "not given"."""
    headings: dict[str, Any] = {}
    for option in OPTIONS:
        if option.flag is None:
            continue
        if option.group not in headings:
            headings[option.group] = parser.add_argument_group(option.group_title)
        default = option.default
        shown = "none" if default is None else '""' if default == "" else str(getattr(default, "value", default))
        help_text = f"{option.help} [env {option.env}; default {shown}]".replace("%", "%%")
        options: dict[str, Any] = {"dest": option.name, "default": None, "help": help_text}
        if option.annotation is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            if option.metavar:
                options["metavar"] = option.metavar
            if isinstance(option.annotation, type) and issubclass(option.annotation, StrEnum):
                options["choices"] = [member.value for member in option.annotation]
        headings[option.group].add_argument(option.flag, **options)


def settings_from(arguments: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from parsed flags, then `environ` (default: the process environment), then the defaults.

    Raises SettingsError naming the flag and environment variable of every invalid value.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for option in OPTIONS:
        given = getattr(arguments, option.name, None) if option.flag is not None else None
        if given is not None:
            values[option.name] = given
            continue
        from_env = environ.get(option.env)
        if from_env is None:
            continue
        if from_env == "" and option.default is None:
            continue  # an empty variable means "unset" for an optional file or price
        values[option.name] = from_env
    return Settings.from_flags(**values)


def describe(error: ValidationError) -> str:
    """Each problem on one line: `--flag (env VAR): 'value' is invalid: what is expected`. Pure."""
    problems = []
    for problem in error.errors():
        message = problem["msg"].removeprefix("Value error, ")
        location = tuple(str(part) for part in problem["loc"][:2])
        option = _OPTIONS_BY_LOCATION.get((location[0], location[1])) if len(location) == 2 else None
        if option is None:
            # A rule over several flags names them itself; the caller already says "invalid settings".
            problems.append(message)
            continue
        given = problem["input"]
        if repr(str(given)) not in message:  # the address check already quotes the value
            message = f"{str(given)!r} is invalid: {message[:1].lower()}{message[1:]}"
        named = f"{option.flag} (env {option.env})" if option.flag else option.env
        problems.append(f"{named}: {message}")
    return "; ".join(problems)
