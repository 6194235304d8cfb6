"""How the operator issues its admission webhook's certificates from its own small PKI (`webhooks.certs`).

The decisions (is the stored certificate still good, what replaces it, what to serve before the Secret can be
read) are pure functions of the stored material and `now`; keeping, storing and rotating the material over time
is `kubeapi.webhook_certs`, which calls this issuer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from kubeapi.webhook_certs import CertificateMaterial
from webhooks.certs import (
    CertificateAuthority,
    create_certificate_authority,
    create_serving_certificate,
    needs_rotation,
    service_dns_names,
    serving_certificate_problem,
)

TEMPORARY_CA_NAME: Final = "homelab-autoscaler temporary webhook CA"


class WebhookCertificateIssuer:
    """`CertificateIssuer` for our own small PKI (pure: every method is a function of its arguments)."""

    def __init__(self, service: str, namespace: str) -> None:
        self.dns_names = service_dns_names(service, namespace)

    def problem(self, stored: CertificateMaterial | None, now: datetime) -> str | None:
        if stored is None:
            return "there was no certificate yet"
        if stored.ca_key_pem is None:
            return "the Secret holds no CA key, so the operator did not make it"
        if needs_rotation(stored.ca_pem, now):
            return "the CA expires soon"
        if needs_rotation(stored.cert_pem, now):
            return "the serving certificate expires soon"
        return serving_certificate_problem(stored.cert_pem, stored.key_pem, stored.ca_pem, self.dns_names)

    def issue(self, stored: CertificateMaterial | None, now: datetime) -> CertificateMaterial:
        if stored is not None and stored.ca_key_pem is not None and not needs_rotation(stored.ca_pem, now):
            authority = CertificateAuthority(stored.ca_pem, stored.ca_key_pem)
        else:
            authority = create_certificate_authority(now)
        serving = create_serving_certificate(authority, self.dns_names, now)
        return CertificateMaterial(serving.cert_pem, serving.key_pem, authority.cert_pem, authority.key_pem)

    def temporary(self, now: datetime) -> CertificateMaterial:
        authority = create_certificate_authority(now, TEMPORARY_CA_NAME, timedelta(days=30))
        serving = create_serving_certificate(authority, self.dns_names, now, timedelta(days=30))
        return CertificateMaterial(serving.cert_pem, serving.key_pem, authority.cert_pem)
