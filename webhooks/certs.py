"""Certificate material for the admission webhook: a private CA and a serving certificate, as PEM bytes.

The API server only calls a webhook over TLS and only trusts the CA named in the webhook configuration's
`caBundle`, so the operator needs its own small PKI unless cert-manager provides one. Everything here is a
function of its arguments and fresh random keys: no files, no Kubernetes. The time is always passed in.

How the operator uses it (the I/O lives in the adapters; `--webhook-cert-source=cert-manager` skips steps
2 and 4, because cert-manager writes the Secret and its cainjector fills the `caBundle`):

1. Read the Secret `homelab-autoscaler-webhook-tls` in its own namespace (`tls.crt`, `tls.key`, `ca.crt`,
   and `ca.key` when we made it ourselves).
2. If it is missing, unreadable, or `needs_rotation(ca.crt, now)`: `create_certificate_authority(now)` and a
   new serving certificate. Else if `needs_rotation(tls.crt, now)` or `serving_certificate_problem(...)`
   reports anything: `create_serving_certificate(existing authority, ...)`, keeping the CA so the
   `caBundle` need not change. Write the Secret back (create, or update with its resourceVersion).
3. Write `tls.crt`/`tls.key` into `--webhook-cert-dir` and call `WebhookServer.reload_certificate()`.
4. Patch the ValidatingWebhookConfiguration's `caBundle` with `ca.crt` (base64 of the PEM) when it differs.
   While a new CA is rolled out, the bundle may hold the old and the new CA concatenated.

Repeat from 1 daily and on gaining leadership; only the leader writes. ECDSA P-256 keeps handshakes cheap.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVING_VALIDITY: Final = timedelta(days=365)
CA_VALIDITY: Final = timedelta(days=3650)
ROTATE_BEFORE: Final = timedelta(days=30)
CLOCK_SKEW: Final = timedelta(minutes=5)
"""Certificates start this long before `now`, so a node whose clock runs a little behind still accepts them."""
DEFAULT_CA_NAME: Final = "homelab-autoscaler webhook CA"


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and its private key, PEM encoded."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class ServingCertificate:
    """A serving certificate, its private key and the CA certificate that signed it, PEM encoded."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes


def service_dns_names(service: str, namespace: str) -> tuple[str, ...]:
    """Every name a client may use for a Service: `svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`."""
    return (service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local")


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_certificate_authority(
    now: datetime, common_name: str = DEFAULT_CA_NAME, validity: timedelta = CA_VALIDITY
) -> CertificateAuthority:
    """A self-signed CA valid from `now` (less the clock skew allowance) for `validity` (10 years)."""
    now = _aware(now)
    key = _new_key()
    subject = _name(common_name)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def create_serving_certificate(
    authority: CertificateAuthority,
    dns_names: tuple[str, ...] | list[str],
    now: datetime,
    validity: timedelta = SERVING_VALIDITY,
    ip_addresses: tuple[str, ...] = (),
) -> ServingCertificate:
    """A TLS server certificate for `dns_names` (see `service_dns_names`), signed by `authority`.

    The first DNS name becomes the subject's common name; clients match on the subjectAltName entries.
    `ip_addresses` is for tests and local runs that connect to 127.0.0.1.
    """
    if not dns_names and not ip_addresses:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    now = _aware(now)
    ca_certificate = x509.load_pem_x509_certificate(authority.cert_pem)
    ca_key = serialization.load_pem_private_key(authority.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an ECDSA key (as made by create_certificate_authority)")
    key = _new_key()
    alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    alternative_names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
    not_after = min(now + validity, ca_certificate.not_valid_after_utc)  # never outlive the CA
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0] if dns_names else ip_addresses[0]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ServingCertificate(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key), authority.cert_pem)


def needs_rotation(cert_pem: bytes, now: datetime, before: timedelta = ROTATE_BEFORE) -> bool:
    """True when the certificate is unreadable, not yet valid at `now`, or expires within `before`. Pure."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return True
    moment = _aware(now)
    return moment < certificate.not_valid_before_utc or moment + before >= certificate.not_valid_after_utc


def serving_certificate_problem(
    cert_pem: bytes, key_pem: bytes, ca_pem: bytes, dns_names: tuple[str, ...] | list[str]
) -> str | None:
    """Why a stored serving certificate cannot be kept (wrong names, wrong key, other CA), or None. Pure.

    Expiry is `needs_rotation`'s question; this one catches a Service renamed or a Secret edited by hand.
    """
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        authority = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as error:
        return f"unreadable certificate material: {error}"
    if key.public_key() != certificate.public_key():
        return "the private key does not belong to the certificate"
    try:
        certificate.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        return "the certificate was not signed by the CA"
    missing = sorted(set(dns_names) - set(certificate_dns_names(cert_pem)))
    if missing:
        return f"the certificate does not cover {', '.join(missing)}"
    return None


def certificate_dns_names(cert_pem: bytes) -> list[str]:
    """The DNS subjectAltNames of a PEM certificate, in order. Pure."""
    certificate = x509.load_pem_x509_certificate(cert_pem)
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(extension.value.get_values_for_type(x509.DNSName))


def certificate_expiry(cert_pem: bytes) -> datetime:
    """When a PEM certificate stops being valid (UTC). Pure."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def _aware(moment: datetime) -> datetime:
    # Naive datetimes are taken as UTC: comparing them with the certificate's aware times would raise.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
