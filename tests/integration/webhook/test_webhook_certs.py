"""The webhook's certificate material: what the API server will check, and when the operator must rotate."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from webhook_test_support import NOW

from webhooks.certs import (
    CertificateAuthority,
    certificate_dns_names,
    certificate_expiry,
    create_certificate_authority,
    create_serving_certificate,
    needs_rotation,
    service_dns_names,
    serving_certificate_problem,
)

NAMES = service_dns_names("homelab-autoscaler-webhook", "homelab-autoscaler")


def test_service_dns_names_cover_every_spelling_a_client_uses() -> None:
    assert NAMES == (
        "homelab-autoscaler-webhook",
        "homelab-autoscaler-webhook.homelab-autoscaler",
        "homelab-autoscaler-webhook.homelab-autoscaler.svc",
        "homelab-autoscaler-webhook.homelab-autoscaler.svc.cluster.local",
    )


def test_serving_certificate_is_ecdsa_p256_for_the_service_names_and_signed_by_the_ca(
    authority: CertificateAuthority,
) -> None:
    serving = create_serving_certificate(authority, NAMES, NOW)
    certificate = x509.load_pem_x509_certificate(serving.cert_pem)
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    assert certificate_dns_names(serving.cert_pem) == list(NAMES)
    assert serving.ca_pem == authority.cert_pem
    assert serving_certificate_problem(serving.cert_pem, serving.key_pem, serving.ca_pem, NAMES) is None


@pytest.mark.parametrize(
    ("which", "expected_days"),
    [pytest.param("ca", 3650, id="ca-ten-years"), pytest.param("serving", 365, id="serving-one-year")],
)
def test_validity_periods(authority: CertificateAuthority, which: str, expected_days: int) -> None:
    pem = authority.cert_pem if which == "ca" else create_serving_certificate(authority, NAMES, NOW).cert_pem
    assert certificate_expiry(pem) == NOW + timedelta(days=expected_days)


def test_only_the_ca_may_sign_certificates(authority: CertificateAuthority) -> None:
    ca = x509.load_pem_x509_certificate(authority.cert_pem)
    serving = x509.load_pem_x509_certificate(create_serving_certificate(authority, NAMES, NOW).cert_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert serving.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_a_serving_certificate_never_outlives_its_ca() -> None:
    short_lived = create_certificate_authority(NOW, validity=timedelta(days=100))
    serving = create_serving_certificate(short_lived, NAMES, NOW)
    assert certificate_expiry(serving.cert_pem) == NOW + timedelta(days=100)


@pytest.mark.parametrize(
    ("offset", "rotate"),
    [
        pytest.param(timedelta(0), False, id="fresh"),
        pytest.param(timedelta(days=365 - 31), False, id="31-days-left"),
        pytest.param(timedelta(days=365 - 29), True, id="29-days-left"),
        pytest.param(timedelta(days=400), True, id="expired"),
        pytest.param(timedelta(days=-1), True, id="not-yet-valid"),
    ],
)
def test_needs_rotation_thirty_days_before_expiry(
    authority: CertificateAuthority, offset: timedelta, rotate: bool
) -> None:
    serving = create_serving_certificate(authority, NAMES, NOW)
    assert needs_rotation(serving.cert_pem, NOW + offset) is rotate


def test_needs_rotation_takes_naive_times_as_utc(authority: CertificateAuthority) -> None:
    serving = create_serving_certificate(authority, NAMES, NOW)
    assert needs_rotation(serving.cert_pem, (NOW + timedelta(days=340)).replace(tzinfo=None)) is True
    assert needs_rotation(serving.cert_pem, NOW.replace(tzinfo=None)) is False


def test_unreadable_material_needs_rotation() -> None:
    assert needs_rotation(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", NOW) is True


@pytest.mark.parametrize(
    ("case", "expected_words"),
    [
        pytest.param("other-key", "private key does not belong", id="other-key"),
        pytest.param("other-ca", "not signed by the CA", id="other-ca"),
        pytest.param("renamed-service", "does not cover", id="renamed-service"),
        pytest.param("garbage", "unreadable", id="garbage"),
    ],
)
def test_stored_material_that_cannot_be_kept_is_explained(
    authority: CertificateAuthority, case: str, expected_words: str
) -> None:
    serving = create_serving_certificate(authority, NAMES, NOW)
    cert, key, ca, names = serving.cert_pem, serving.key_pem, serving.ca_pem, NAMES
    if case == "other-key":
        key = create_serving_certificate(authority, NAMES, NOW).key_pem
    elif case == "other-ca":
        ca = create_certificate_authority(NOW).cert_pem
    elif case == "renamed-service":
        names = service_dns_names("autoscaler-webhook", "homelab-autoscaler")
    else:
        cert = b"garbage"
    problem = serving_certificate_problem(cert, key, ca, names)
    assert problem is not None
    assert expected_words in problem
