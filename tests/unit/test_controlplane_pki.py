"""The control plane's test PKI: every certificate chains to its CA and says what the components check.

kube-apiserver authenticates a client by its certificate's CN (user) and O (groups), a TLS client checks the
serving certificate's names, and Go's TLS refuses a certificate whose extended key usage does not match its use.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sim.controlplane import KeyPair, Pki, generate_pki

SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return generate_pki(tmp_path_factory.mktemp("pki"))


def certificate(pair: KeyPair) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pair.certificate.read_bytes())


def names(cert: x509.Certificate, attribute: x509.ObjectIdentifier) -> list[str]:
    return [str(name.value) for name in cert.subject.get_attributes_for_oid(attribute)]


# leaf, issuing CA, extended key usage, CN, O
LEAVES = [
    ("api_server", "ca", SERVER, "kube-apiserver", []),
    ("admin", "ca", CLIENT, "kubernetes-admin", ["system:masters"]),
    ("controller_manager_client", "ca", CLIENT, "system:kube-controller-manager", []),
    ("scheduler_client", "ca", CLIENT, "system:kube-scheduler", []),
    ("controller_manager_serving", "ca", SERVER, "kube-controller-manager", []),
    ("scheduler_serving", "ca", SERVER, "kube-scheduler", []),
    ("api_server_kubelet_client", "ca", CLIENT, "kube-apiserver-kubelet-client", ["system:masters"]),
    ("front_proxy_client", "front_proxy_ca", CLIENT, "front-proxy-client", []),
]


@pytest.mark.parametrize(("leaf", "authority", "usage", "common_name", "organizations"), LEAVES)
def test_each_leaf_is_issued_by_its_ca_for_its_use(
    pki: Pki, leaf: str, authority: str, usage: x509.ObjectIdentifier, common_name: str, organizations: list[str]
) -> None:
    cert = certificate(getattr(pki, leaf))
    issuer = certificate(getattr(pki, authority))
    cert.verify_directly_issued_by(issuer)
    assert names(cert, NameOID.COMMON_NAME) == [common_name]
    assert names(cert, NameOID.ORGANIZATION_NAME) == organizations
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [usage]
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert (constraints.critical, constraints.value.ca) == (True, False)
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert key_usage.digital_signature
    assert not key_usage.key_cert_sign


@pytest.mark.parametrize("authority", ["ca", "front_proxy_ca"])
def test_the_cas_are_self_signed_certificate_authorities(pki: Pki, authority: str) -> None:
    cert = certificate(getattr(pki, authority))
    cert.verify_directly_issued_by(cert)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (key_usage.key_cert_sign, key_usage.crl_sign) == (True, True)


def test_the_front_proxy_client_is_not_trusted_by_the_cluster_ca(pki: Pki) -> None:
    with pytest.raises(ValueError, match="subject does not match"):
        certificate(pki.front_proxy_client).verify_directly_issued_by(certificate(pki.ca))


@pytest.mark.parametrize(
    ("leaf", "dns_names", "addresses"),
    [
        (
            "api_server",
            {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local"},
            {"127.0.0.1", "10.96.0.1"},
        ),
        ("controller_manager_serving", {"localhost"}, {"127.0.0.1"}),
        ("scheduler_serving", {"localhost"}, {"127.0.0.1"}),
    ],
)
def test_serving_certificates_name_where_they_are_reached(
    pki: Pki, leaf: str, dns_names: set[str], addresses: set[str]
) -> None:
    alternatives = certificate(getattr(pki, leaf)).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert set(alternatives.value.get_values_for_type(x509.DNSName)) == dns_names
    assert set(alternatives.value.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(address) for address in addresses
    }


def test_each_key_matches_its_certificate_and_only_the_owner_reads_it(pki: Pki) -> None:
    for pair in [getattr(pki, leaf) for leaf, *_ in LEAVES] + [pki.ca, pki.front_proxy_ca]:
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
        assert key.public_key() == certificate(pair).public_key(), pair.key
        assert pair.key.stat().st_mode & 0o077 == 0, pair.key


def test_the_service_account_key_pair_is_one_ec_pair(pki: Pki) -> None:
    private = serialization.load_pem_private_key(pki.service_account_private_key.read_bytes(), password=None)
    public = serialization.load_pem_public_key(pki.service_account_public_key.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.public_key() == public
    assert pki.service_account_private_key.stat().st_mode & 0o077 == 0


def test_a_second_pki_is_a_different_one(pki: Pki, tmp_path: Path) -> None:
    other = generate_pki(tmp_path)
    assert certificate(other.ca) != certificate(pki.ca)
    with pytest.raises(InvalidSignature):  # same names, different keys
        certificate(other.admin).verify_directly_issued_by(certificate(pki.ca))
