"""The webhook certificate's I/O: the Secret that keeps it, the caBundle that trusts it, the files that serve it.

The API server calls the admission webhook over TLS and trusts only the CA in the ValidatingWebhookConfiguration's
`caBundle`, so somebody must keep a certificate in a Secret, keep the bundle in step with it and rotate it before
it expires. Which certificate to make is a pure decision (`webhooks.certs`, reached through the
`CertificateIssuer` the composition root passes in, because actors may not import the webhook package); this
module does everything around it that touches Kubernetes or the disk, and decides when:

- `WebhookCertificateStore`: read and write the Secret (`tls.crt`, `tls.key`, `ca.crt`, `ca.key`), create or
  update with the resourceVersion read, and patch the caBundle of every webhook in our configuration when it
  differs (with the resourceVersion read, so a concurrent edit is a 409, never a lost update);
- `write_files`: the serving pair into the certificate directory, atomically (a reader never sees half a key);
- `WebhookCertificates`: the keeper. One round runs at start (so the server has files before it binds), then on
  a thread every `check_seconds` (12 h), sooner (`retry_seconds`) while something is wrong, and at once when this
  replica gains leadership. The source decides what a round may do:

  | source | Secret | caBundle | files |
  |---|---|---|---|
  | `self`, leading (or no election) | created, rotated 30 days before expiry | kept equal to our CA | from the Secret |
  | `self`, standby | read only | untouched | from the Secret, or a temporary certificate |
  | `cert-manager` | read only (cert-manager writes it) | untouched (its cainjector fills it) | from the Secret |
  | `files` | not used | not used | already there (mounted); reloaded when they change |

  A temporary certificate (never stored) lets a standby, or a replica whose Secret does not exist yet, bind and
  serve at once; the API server does not trust it, and no traffic reaches a standby anyway.

After files change, `on_change` (the webhook server's `reload_certificate`) is called.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from kubernetes.client import ApiClient

from actors import metrics
from kubeapi import kube_client
from kubeapi.kube_client import MERGE_PATCH, KubeApi, KubeConflict, KubeError, KubeNotFound
from kubeapi.reachability import ApiReachability

LOGGER = logging.getLogger(__name__)

CERT_KEY: Final = "tls.crt"
PRIVATE_KEY_KEY: Final = "tls.key"
CA_KEY: Final = "ca.crt"
CA_PRIVATE_KEY_KEY: Final = "ca.key"
SECRETS: Final = "secrets"
WEBHOOK_CONFIGURATIONS: Final = "validatingwebhookconfigurations"
DEFAULT_CHECK_SECONDS: Final = 12 * 3600.0
DEFAULT_RETRY_SECONDS: Final = 10.0


@dataclass(frozen=True)
class CertificateMaterial:
    """A serving certificate, its key and the CA that signed it (PEM); the CA's key when we made the CA."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    ca_key_pem: bytes | None = None


@dataclass(frozen=True)
class StoredSecret:
    """The Secret as read: its material (None when incomplete) and its resourceVersion."""

    material: CertificateMaterial | None
    resource_version: str


class CertificateIssuer(Protocol):
    """The pure decisions about certificates (implemented over `webhooks.certs` by the composition root)."""

    def problem(self, stored: CertificateMaterial | None, now: datetime) -> str | None:
        """Why `stored` must be replaced (missing, unreadable, expiring, wrong names), or None to keep it."""
        ...

    def issue(self, stored: CertificateMaterial | None, now: datetime) -> CertificateMaterial:
        """New material; keeps the stored CA when it is still good, so the caBundle need not change."""
        ...

    def temporary(self, now: datetime) -> CertificateMaterial:
        """A throwaway certificate to serve with until a real one exists (never stored)."""
        ...


class WebhookCertificateStore:
    """The Secret and the webhook configuration, over the Kubernetes API."""

    def __init__(self, api_client: ApiClient, namespace: str, secret_name: str, webhook_config: str) -> None:
        self._api = KubeApi(api_client)
        self.namespace = namespace
        self.secret_name = secret_name
        self.webhook_config = webhook_config

    @property
    def _secrets(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets"

    @property
    def _configuration(self) -> str:
        return f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{self.webhook_config}"

    def read_secret(self) -> StoredSecret | None:
        """The Secret, or None when it does not exist."""
        try:
            secret = self._api.get(f"{self._secrets}/{self.secret_name}", what=f"get Secret {self.secret_name}")
        except KubeNotFound:
            return None
        return StoredSecret(material_from_secret(secret), str((secret.get("metadata") or {}).get("resourceVersion")
                                                              or ""))

    def write_secret(self, material: CertificateMaterial, previous: StoredSecret | None) -> None:
        """Create the Secret, or replace it guarded by the resourceVersion read (409 when someone else wrote)."""
        body = secret_manifest(self.namespace, self.secret_name, material)
        if previous is None:
            self._write("create", "POST", self._secrets, body)
            return
        body["metadata"]["resourceVersion"] = previous.resource_version
        self._write("update", "PUT", f"{self._secrets}/{self.secret_name}", body)

    def ensure_ca_bundle(self, bundle: bytes) -> bool:
        """Make every webhook of our configuration trust exactly `bundle`; True when it had to be changed.

        Raises KubeNotFound when the configuration does not exist (not installed, or a local run).
        """
        configuration = self._api.get(self._configuration, what=f"get webhook configuration {self.webhook_config}")
        wanted = base64.b64encode(bundle).decode()
        webhooks = configuration.get("webhooks") or []
        if all((webhook.get("clientConfig") or {}).get("caBundle") == wanted for webhook in webhooks):
            return False
        patched = [
            {**webhook, "clientConfig": {**(webhook.get("clientConfig") or {}), "caBundle": wanted}}
            for webhook in webhooks
        ]
        # webhooks is a list, which a merge patch replaces whole: the resourceVersion makes a concurrent edit a 409.
        version = (configuration.get("metadata") or {}).get("resourceVersion") or ""
        patch = {"metadata": {"resourceVersion": version}, "webhooks": patched}
        self._write("patch", "PATCH", self._configuration, patch, content_type=MERGE_PATCH)
        return True

    def _write(self, verb: str, method: str, path: str, body: Any, content_type: str | None = None) -> None:
        resource = WEBHOOK_CONFIGURATIONS if "admissionregistration" in path else SECRETS
        try:
            self._api.request(method, path, body=body, content_type=content_type, what=f"{verb} {path}")
        except KubeError as error:
            metrics.KUBE_WRITES.labels(verb, resource, kube_client.outcome(error)).inc()
            raise
        metrics.KUBE_WRITES.labels(verb, resource, "ok").inc()


def material_from_secret(secret: dict[str, Any]) -> CertificateMaterial | None:
    """The material in a Secret's data, or None when a part is missing or not base64. Pure."""
    data = secret.get("data") or {}
    try:
        decoded = {key: base64.b64decode(value, validate=True) for key, value in data.items() if value}
    except (ValueError, TypeError):
        return None
    if not all(decoded.get(key) for key in (CERT_KEY, PRIVATE_KEY_KEY, CA_KEY)):
        return None
    return CertificateMaterial(
        decoded[CERT_KEY], decoded[PRIVATE_KEY_KEY], decoded[CA_KEY], decoded.get(CA_PRIVATE_KEY_KEY) or None
    )


def secret_manifest(namespace: str, name: str, material: CertificateMaterial) -> dict[str, Any]:
    """The Secret holding `material` (type kubernetes.io/tls, as cert-manager writes it too). Pure."""
    data = {
        CERT_KEY: material.cert_pem,
        PRIVATE_KEY_KEY: material.key_pem,
        CA_KEY: material.ca_pem,
    }
    if material.ca_key_pem is not None:
        data[CA_PRIVATE_KEY_KEY] = material.ca_key_pem
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "homelab-autoscaler", "app.kubernetes.io/component": "webhook"},
        },
        "type": "kubernetes.io/tls",
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


def write_files(directory: Path, material: CertificateMaterial) -> bool:
    """Write `tls.crt` and `tls.key` into `directory` (created, 0700) unless already there; True when written.

    Each file is written to a temporary name and renamed, so a reader sees the old file or the new one.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    changed = False
    for name, content, mode in ((CERT_KEY, material.cert_pem, 0o644), (PRIVATE_KEY_KEY, material.key_pem, 0o600)):
        target = directory / name
        if target.exists() and target.read_bytes() == content:
            continue
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
            os.chmod(temporary, mode)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        changed = True
    return changed


def _utc_now() -> datetime:
    return datetime.now(UTC)


class WebhookCertificates:
    """Keeps the webhook's certificate files current; see the module docstring for what each source does."""

    def __init__(
        self,
        source: str,
        directory: Path,
        *,
        store: WebhookCertificateStore | None = None,
        issuer: CertificateIssuer | None = None,
        may_write: bool = True,
        check_seconds: float = DEFAULT_CHECK_SECONDS,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        clock: Callable[[], datetime] = _utc_now,
        reachability: ApiReachability | None = None,
    ) -> None:
        if source not in ("self", "cert-manager", "files"):
            raise ValueError(f"unknown certificate source {source!r}")
        if source != "files" and (store is None or issuer is None):
            raise ValueError(f"certificate source {source!r} needs a store and an issuer")
        self.source = source
        self._reachability = reachability
        self.directory = directory
        self._store = store
        self._issuer = issuer
        self._may_write = may_write
        self._check_seconds = check_seconds
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._on_change: Callable[[], None] = lambda: None
        self._lock = threading.Lock()  # one round at a time
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._file_stamp: tuple[float, float] | None = None
        self._missing_configuration_reported = False
        self.problem: str | None = "no round has run yet"
        """Why the last round left something undone (a temporary certificate, a failed write), or None."""

    @property
    def cert_file(self) -> Path:
        return self.directory / CERT_KEY

    @property
    def key_file(self) -> Path:
        return self.directory / PRIVATE_KEY_KEY

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Run the first round now, so the files exist before the server loads them.

        Raises FileNotFoundError for the `files` source when they are not there; other failures leave a
        temporary certificate in place and are retried by the thread.
        """
        if self.source == "files" and not (self.cert_file.is_file() and self.key_file.is_file()):
            raise FileNotFoundError(
                f"--webhook-cert-source=files needs {self.cert_file} and {self.key_file}; mount them there"
            )
        self.refresh()

    def start(self, on_change: Callable[[], None]) -> None:
        """Keep the certificate current on a thread; `on_change` is called after the files changed."""
        if self._thread is not None:
            raise RuntimeError("the certificate keeper is already running")
        self._on_change = on_change
        self._thread = threading.Thread(target=self._run, name="kube-webhook-certs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                LOGGER.warning("webhook certificates: thread did not stop within %.1f s", timeout)

    def set_may_write(self, may_write: bool) -> None:
        """Leadership changed; a new leader checks (and if need be writes) at once."""
        self._may_write = may_write
        if may_write:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            delay = self._retry_seconds if self.problem is not None else self._check_seconds
            if self.source == "files":
                delay = min(delay, 60.0)  # mounted files change without telling us; look every minute
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                if self.refresh():
                    self._on_change()
            except Exception:  # a bug must not end the keeper; the next round tries again
                LOGGER.exception("webhook certificates: a round failed")
                self.problem = "the last round failed unexpectedly"

    # --- one round ---------------------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """One round; True when the files changed (the server must reload them)."""
        with self._lock:
            if self.source == "files":
                return self._refresh_files()
            try:
                return self._refresh_from_secret()
            except KubeError as error:
                # An API server outage is told once by the process's reachability report, not by every keeper.
                if self._reachability is None or not self._reachability.failed("webhook certificates", error):
                    LOGGER.warning(
                        "webhook certificates: %s; retrying in %.0f s", error.message, self._retry_seconds
                    )
                self.problem = error.message
                return self._fall_back()

    def _refresh_files(self) -> bool:
        stamp = (self.cert_file.stat().st_mtime, self.key_file.stat().st_mtime)
        changed = self._file_stamp is not None and stamp != self._file_stamp
        self._file_stamp = stamp
        self.problem = None
        return changed

    def _refresh_from_secret(self) -> bool:
        assert self._store is not None  # both checked in __init__
        assert self._issuer is not None
        now = self._clock()
        stored = self._store.read_secret()
        material = stored.material if stored is not None else None
        writing = self.source == "self" and self._may_write
        if writing:
            why = self._issuer.problem(material, now)
            if why is not None:
                previous_ca = material.ca_pem if material is not None else None
                material = self._issuer.issue(material, now)
                try:
                    self._store.write_secret(material, stored)
                except KubeConflict:
                    # Another replica wrote it between our read and our write: take theirs next round.
                    self.problem = "the Secret changed while it was being rotated"
                    return self._fall_back()
                LOGGER.info("webhook certificates: stored a new certificate in Secret %s/%s (%s)",
                            self._store.namespace, self._store.secret_name, why)
                bundle = material.ca_pem
                if previous_ca is not None and previous_ca != material.ca_pem:
                    bundle += previous_ca  # replicas still serving the old certificate stay trusted for a while
                self._ensure_bundle(bundle)
            else:
                assert material is not None  # no problem means there is material
                self._ensure_bundle(material.ca_pem)
        if material is None:
            self.problem = f"Secret {self._store.namespace}/{self._store.secret_name} has no usable certificate yet"
            LOGGER.info("webhook certificates: %s; serving a temporary one", self.problem)
            return self._fall_back()
        # A standby serves what the Secret holds, and looks again soon while that needs rotating by the leader.
        self.problem = None if writing or self.source != "self" else self._issuer.problem(material, now)
        return write_files(self.directory, material)

    def _ensure_bundle(self, bundle: bytes) -> None:
        assert self._store is not None
        try:
            if self._store.ensure_ca_bundle(bundle):
                LOGGER.info("webhook certificates: caBundle of %s updated", self._store.webhook_config)
            self._missing_configuration_reported = False
        except KubeNotFound:
            if not self._missing_configuration_reported:
                LOGGER.warning(
                    "webhook certificates: ValidatingWebhookConfiguration %s does not exist, so the API server "
                    "does not call the webhook (expected in a local run)", self._store.webhook_config
                )
                self._missing_configuration_reported = True

    def _fall_back(self) -> bool:
        """Keep the files that are there; write a temporary certificate only when there are none."""
        assert self._issuer is not None
        if self.cert_file.is_file() and self.key_file.is_file():
            return False
        return write_files(self.directory, self._issuer.temporary(self._clock()))
