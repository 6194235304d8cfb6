"""The throwaway PKI of one test control plane: CAs, serving and client certificates, the service-account key pair.

Generated with `cryptography` into the control plane's folder on every start, so nothing is shared between control
planes and nothing needs openssl. Keys are EC P-256: generating a dozen takes milliseconds where RSA 2048 takes
about a second on a loaded CI machine, and kube-apiserver, kube-controller-manager and kube-scheduler accept them for
TLS, client certificates, cluster signing and ES256 service-account tokens. The layout follows kubeadm's: one
cluster CA signing every serving and client certificate, a separate front-proxy CA for the aggregation layer's
request-header authentication.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY: Final = datetime.timedelta(days=365)
CLOCK_SKEW: Final = datetime.timedelta(hours=1)
"""Certificates start an hour in the past so a component whose clock lags slightly still accepts them."""

SERVICE_IP: Final = "10.96.0.1"
"""The `kubernetes` Service's cluster IP: the first address of the control plane's service range."""
API_SERVER_NAMES: Final = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
API_SERVER_ADDRESSES: Final = ("127.0.0.1", SERVICE_IP)
LOOPBACK_NAMES: Final = ("localhost",)
LOOPBACK_ADDRESSES: Final = ("127.0.0.1",)

ADMIN_GROUP: Final = "system:masters"
CONTROLLER_MANAGER_USER: Final = "system:kube-controller-manager"
SCHEDULER_USER: Final = "system:kube-scheduler"
FRONT_PROXY_CLIENT_NAME: Final = "front-proxy-client"
"""Also passed to kube-apiserver's --requestheader-allowed-names: the two must match."""


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM (PKCS#8) private key on disk."""

    certificate: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Every file of a control plane's PKI, by the role it plays."""

    directory: Path
    ca: KeyPair
    api_server: KeyPair
    admin: KeyPair
    controller_manager_client: KeyPair
    scheduler_client: KeyPair
    controller_manager_serving: KeyPair
    scheduler_serving: KeyPair
    api_server_kubelet_client: KeyPair
    front_proxy_ca: KeyPair
    front_proxy_client: KeyPair
    service_account_private_key: Path
    service_account_public_key: Path


@dataclass(frozen=True)
class _Authority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def generate_pki(directory: Path) -> Pki:
    """Write a fresh PKI into `directory` (created if needed; existing files are replaced)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca, ca_files = _certificate_authority(directory, "ca", "homelab-k8s-ca", now)
    front_proxy_ca, front_proxy_ca_files = _certificate_authority(
        directory, "front-proxy-ca", "homelab-k8s-front-proxy-ca", now
    )

    def serving(name: str, common_name: str, names: Sequence[str], addresses: Sequence[str]) -> KeyPair:
        return _leaf(directory, name, ca, now, common_name, (), ExtendedKeyUsageOID.SERVER_AUTH, names, addresses)

    def client(name: str, common_name: str, organizations: Sequence[str] = (), issuer: _Authority = ca) -> KeyPair:
        return _leaf(directory, name, issuer, now, common_name, organizations, ExtendedKeyUsageOID.CLIENT_AUTH)

    private, public = _service_account_keys(directory)
    return Pki(
        directory=directory,
        ca=ca_files,
        api_server=serving("apiserver", "kube-apiserver", API_SERVER_NAMES, API_SERVER_ADDRESSES),
        admin=client("admin", "kubernetes-admin", (ADMIN_GROUP,)),
        controller_manager_client=client("kube-controller-manager", CONTROLLER_MANAGER_USER),
        scheduler_client=client("kube-scheduler", SCHEDULER_USER),
        controller_manager_serving=serving(
            "kube-controller-manager-serving", "kube-controller-manager", LOOPBACK_NAMES, LOOPBACK_ADDRESSES
        ),
        scheduler_serving=serving("kube-scheduler-serving", "kube-scheduler", LOOPBACK_NAMES, LOOPBACK_ADDRESSES),
        # The API server's identity towards kubelets (logs, exec); system:masters as kubeadm gives it.
        api_server_kubelet_client=client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", (ADMIN_GROUP,)),
        front_proxy_ca=front_proxy_ca_files,
        front_proxy_client=client("front-proxy-client", FRONT_PROXY_CLIENT_NAME, issuer=front_proxy_ca),
        service_account_private_key=private,
        service_account_public_key=public,
    )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization) for organization in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _certificate_authority(
    directory: Path, name: str, common_name: str, now: datetime.datetime
) -> tuple[_Authority, KeyPair]:
    key = _new_key()
    subject = _name(common_name)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(certificate_signing=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Authority(certificate, key), _write(directory, name, certificate, key)


def _leaf(
    directory: Path,
    name: str,
    issuer: _Authority,
    now: datetime.datetime,
    common_name: str,
    organizations: Sequence[str],
    usage: x509.ObjectIdentifier,
    names: Sequence[str] = (),
    addresses: Sequence[str] = (),
) -> KeyPair:
    key = _new_key()
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(issuer.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificate_signing=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    if names or addresses:
        alternatives: list[x509.GeneralName] = [x509.DNSName(dns_name) for dns_name in names]
        alternatives += [x509.IPAddress(ipaddress.ip_address(address)) for address in addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    return _write(directory, name, builder.sign(issuer.key, hashes.SHA256()), key)


def _key_usage(*, certificate_signing: bool) -> x509.KeyUsage:
    # EC keys sign (TLS handshakes, certificates); they never encipher keys, so key_encipherment stays off.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificate_signing,
        crl_sign=certificate_signing,
        encipher_only=False,
        decipher_only=False,
    )


def _write(directory: Path, name: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> KeyPair:
    files = KeyPair(certificate=directory / f"{name}.crt", key=directory / f"{name}.key")
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_private(files.key, key)
    return files


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)  # touch keeps an existing file's mode; a key must never be readable by others
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _service_account_keys(directory: Path) -> tuple[Path, Path]:
    # kube-apiserver signs service-account tokens with the private key (ES256 for a P-256 key) and verifies them
    # with the public one; kube-controller-manager signs the tokens of its controllers with the same private key.
    key = _new_key()
    private, public = directory / "sa.key", directory / "sa.pub"
    _write_private(private, key)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public
