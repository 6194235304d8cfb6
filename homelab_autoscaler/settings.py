"""The operator's settings: one validated pydantic model, filled from command-line flags, then the environment.

Kept apart from the command so that the flags, their environment variables, their defaults and their help text
come from one place (the model's fields) and cannot drift: `homelab-autoscaler run --help`,
docs/operations/running.md and the Deployment's arguments all describe these fields. Tests and benchmarks build
a `Settings` directly.

Precedence: a flag on the command line, else `HOMELAB_AUTOSCALER_<FLAG>` (the flag's name in upper case with
dashes as underscores, e.g. `HOMELAB_AUTOSCALER_WATCH_NAMESPACE`), else the default. `POD_NAME` and
`POD_NAMESPACE` (set by the Deployment from the downward API) are read from the environment only.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


def _flag(name: str, help_text: str, metavar: str | None = None) -> Any:
    return {"flag": name, "help": help_text, "metavar": metavar}


def _address(value: str) -> str:
    host, separator, port = value.rpartition(":")
    if not separator or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not an address of the form HOST:PORT (port 0 picks a free one)")
    return value


class Settings(BaseModel):
    """Everything `homelab-autoscaler run` can be told. Field order is the order of `--help`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kubeconfig: Path | None = Field(
        default=None,
        json_schema_extra=_flag(
            "--kubeconfig",
            "kubeconfig file of the cluster to manage; without it the pod's service account is used in a cluster, "
            "else $KUBECONFIG or ~/.kube/config",
            "FILE",
        ),
    )
    context: str | None = Field(
        default=None,
        json_schema_extra=_flag("--context", "kubeconfig context to use; none means the kubeconfig's current one",
                                "NAME"),
    )
    namespace: str = Field(
        default="homelab-autoscaler",
        min_length=1,
        json_schema_extra=_flag(
            "--namespace", "the operator's own namespace: its leader Lease, webhook Secret and pod live there",
            "NAME",
        ),
    )
    watch_namespace: str = Field(
        default="",
        json_schema_extra=_flag(
            "--watch-namespace",
            "namespace of the Group and Node resources and their power Jobs; empty means every namespace",
            "NAME",
        ),
    )
    grpc_address: str = Field(
        default="0.0.0.0:50051",
        json_schema_extra=_flag("--grpc-address", "where the Cluster Autoscaler's externalgrpc calls are served",
                                "HOST:PORT"),
    )
    grpc_cert: Path | None = Field(
        default=None,
        json_schema_extra=_flag("--grpc-cert", "PEM certificate for gRPC TLS (plaintext without it)", "FILE"),
    )
    grpc_key: Path | None = Field(
        default=None, json_schema_extra=_flag("--grpc-key", "PEM private key of --grpc-cert", "FILE")
    )
    grpc_client_ca: Path | None = Field(
        default=None,
        json_schema_extra=_flag(
            "--grpc-client-ca", "PEM CA certificate; when given, gRPC clients must present a certificate it signed "
            "(mutual TLS)", "FILE"
        ),
    )
    metrics_address: str = Field(
        default="0.0.0.0:8080",
        json_schema_extra=_flag("--metrics-address", "where /metrics, /healthz and /readyz are served (HTTP)",
                                "HOST:PORT"),
    )
    # Off unless asked for: a run on a workstation has no ValidatingWebhookConfiguration pointing at it, and an HTTPS
    # port on every interface that nobody calls is only exposure. The Deployment passes its address explicitly.
    webhook_address: str = Field(
        default="",
        json_schema_extra=_flag(
            "--webhook-address", "where the validating admission webhook is served (HTTPS), e.g. 0.0.0.0:9443; "
            "empty (the default) serves no webhook",
            "HOST:PORT",
        ),
    )
    webhook_cert_dir: Path = Field(
        default=Path("/tmp/homelab-autoscaler-webhook"),
        json_schema_extra=_flag(
            "--webhook-cert-dir", "directory the webhook's tls.crt and tls.key are written to (or read from, with "
            "--webhook-cert-source=files)", "DIR"
        ),
    )
    webhook_secret: str = Field(
        default="homelab-autoscaler-webhook-tls",
        min_length=1,
        json_schema_extra=_flag(
            "--webhook-secret", "Secret (in --namespace) holding the webhook's certificate", "NAME"
        ),
    )
    webhook_config: str = Field(
        default="homelab-autoscaler",
        min_length=1,
        json_schema_extra=_flag(
            "--webhook-config", "ValidatingWebhookConfiguration whose caBundle the operator fills", "NAME"
        ),
    )
    webhook_service: str = Field(
        default="homelab-autoscaler-webhook",
        min_length=1,
        json_schema_extra=_flag(
            "--webhook-service", "Service (in --namespace) the API server calls the webhook through; the serving "
            "certificate covers its DNS names", "NAME"
        ),
    )
    webhook_cert_source: WebhookCertSource = Field(
        default=WebhookCertSource.SELF,
        json_schema_extra=_flag(
            "--webhook-cert-source", "who provides the webhook certificate: self (the operator keeps it in the "
            "Secret and fills the caBundle), cert-manager (it writes both; the operator reads the Secret) or files "
            "(already in --webhook-cert-dir)"
        ),
    )
    leader_elect: bool = Field(
        default=False,
        json_schema_extra=_flag(
            "--leader-elect", "elect one acting replica through a Lease; the others serve health, metrics and the "
            "webhook and wait"
        ),
    )
    leader_election_lease: str = Field(
        default="homelab-autoscaler",
        min_length=1,
        json_schema_extra=_flag(
            "--leader-election-lease", "name of the Lease (in --namespace) used for election", "NAME"
        ),
    )
    leader_election_lease_seconds: float = Field(
        default=15.0,
        gt=0,
        json_schema_extra=_flag(
            "--leader-election-lease-seconds", "how long a Lease outlives its last renewal; a standby takes over "
            "within this time after the leader dies", "SECONDS"
        ),
    )
    leader_election_renew_seconds: float = Field(
        default=5.0,
        gt=0,
        json_schema_extra=_flag("--leader-election-renew-seconds", "how often the leader renews its Lease",
                                "SECONDS"),
    )
    leader_election_retry_seconds: float = Field(
        default=2.0,
        gt=0,
        json_schema_extra=_flag("--leader-election-retry-seconds", "how often a standby tries to take the Lease",
                                "SECONDS"),
    )
    log_format: LogFormat = Field(
        default=LogFormat.TEXT,
        json_schema_extra=_flag("--log-format", "text (one line per record) or json (one JSON object per line)"),
    )
    log_level: LogLevel = Field(
        default=LogLevel.INFO, json_schema_extra=_flag("--log-level", "least severe level that is logged")
    )
    price_per_kwh: Decimal | None = Field(
        default=None,
        ge=0,
        json_schema_extra=_flag(
            "--price-per-kwh", "electricity price (currency per kWh), to price machines that declare only their "
            "power draw for CA's price expander", "PRICE"
        ),
    )
    shutdown_grace_seconds: float = Field(
        default=15.0,
        ge=0,
        json_schema_extra=_flag(
            "--shutdown-grace-seconds", "on SIGTERM, how long Kubernetes writes already decided may take to finish "
            "(keep it below the pod's terminationGracePeriodSeconds)", "SECONDS"
        ),
    )
    writer_workers: int = Field(
        default=4,
        ge=1,
        le=64,
        json_schema_extra=_flag("--writer-workers", "threads applying Kubernetes writes (one machine at a time "
                                "each)", "N"),
    )
    pod_name: str = Field(default="", description="This replica's pod (env POD_NAME); labelled while it leads.")
    pod_namespace: str = Field(default="", description="This replica's namespace (env POD_NAMESPACE).")

    @field_validator("grpc_address", "metrics_address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        return _address(value)

    @field_validator("webhook_address")
    @classmethod
    def _check_optional_address(cls, value: str) -> str:
        return _address(value) if value else value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if (self.grpc_cert is None) != (self.grpc_key is None):
            raise ValueError("--grpc-cert and --grpc-key go together")
        if self.grpc_client_ca is not None and self.grpc_cert is None:
            raise ValueError("--grpc-client-ca (mutual TLS) needs --grpc-cert and --grpc-key")
        if self.leader_election_renew_seconds >= self.leader_election_lease_seconds:
            raise ValueError("--leader-election-renew-seconds must be shorter than --leader-election-lease-seconds")
        return self

    @property
    def webhook_enabled(self) -> bool:
        return bool(self.webhook_address)


class SettingsError(ValueError):
    """The flags or environment do not make valid settings; the message names the flag and its variable."""


def env_name(flag: str) -> str:
    """`--watch-namespace` → `HOMELAB_AUTOSCALER_WATCH_NAMESPACE`. Pure."""
    return ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()


def _flags() -> dict[str, dict[str, Any]]:
    """Field name → its flag metadata, in field order."""
    flags: dict[str, dict[str, Any]] = {}
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and "flag" in extra:
            flags[name] = extra
    return flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one option per setting; every default is None, meaning "not given" (see `settings_from`)."""
    for name, extra in _flags().items():
        field = Settings.model_fields[name]
        default = field.default
        shown = "none" if default is None else '""' if default == "" else str(getattr(default, "value", default))
        help_text = f"{extra['help']} [env {env_name(extra['flag'])}; default {shown}]".replace("%", "%%")
        options: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        if field.annotation is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            if extra.get("metavar"):
                options["metavar"] = extra["metavar"]
            choices = _choices(name)
            if choices:
                options["choices"] = choices
        parser.add_argument(extra["flag"], **options)


def _choices(name: str) -> list[str] | None:
    enums = {"log_format": LogFormat, "log_level": LogLevel, "webhook_cert_source": WebhookCertSource}
    enum = enums.get(name)
    return [member.value for member in enum] if enum is not None else None


def settings_from(arguments: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from parsed flags, then `environ` (default: the process environment), then the defaults.

    Raises SettingsError naming the flag and environment variable of every invalid value.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, extra in _flags().items():
        given = getattr(arguments, name, None)
        if given is not None:
            values[name] = given
            continue
        from_env = environ.get(env_name(extra["flag"]))
        if from_env is None:
            continue
        if from_env == "" and Settings.model_fields[name].default is None:
            continue  # an empty variable means "unset" for an optional file or price
        values[name] = from_env
    values["pod_name"] = environ.get(POD_NAME_ENV, "")
    values["pod_namespace"] = environ.get(POD_NAMESPACE_ENV, "")
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        raise SettingsError(describe(error)) from None


def describe(error: ValidationError) -> str:
    """Each problem as `--flag (env VAR): message`. Pure."""
    flags = _flags()
    problems = []
    for problem in error.errors():
        location = problem["loc"][0] if problem["loc"] else ""
        extra = flags.get(str(location))
        message = problem["msg"].removeprefix("Value error, ")
        if extra:
            problems.append(f"{extra['flag']} (env {env_name(extra['flag'])}): {message}")
        elif location:
            problems.append(f"{location}: {message}")
        else:
            # A rule over several flags names them itself; the caller already says "invalid settings".
            problems.append(message)
    return "; ".join(problems)
