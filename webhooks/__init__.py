"""The validating admission webhook for Group and Node resources.

`admission` decides (AdmissionReview v1 in, verdict out, no sockets); `server` is the HTTPS shell around it;
`certs` makes the certificate material the API server needs to trust us. Single-object rules are not here:
they live in `schemas.validation`, shared with the CRD generator. This package imports only `schemas`, the
standard library and `cryptography`, never a Kubernetes or gRPC client: the operator hands it an
`AdmissionLookup` built over its own watch caches.
"""

from webhooks.admission import (
    ALL_NAMESPACES,
    AdmissionDecision,
    AdmissionLookup,
    AdmissionRequest,
    AdmissionRules,
    KnownMachine,
    MalformedReviewError,
    parse_review,
    review,
    review_response,
)
from webhooks.server import HEALTH_PATH, MAX_BODY_BYTES, VALIDATE_PATH, WebhookServer, parse_address

__all__ = [
    "ALL_NAMESPACES",
    "HEALTH_PATH",
    "MAX_BODY_BYTES",
    "VALIDATE_PATH",
    "AdmissionDecision",
    "AdmissionLookup",
    "AdmissionRequest",
    "AdmissionRules",
    "KnownMachine",
    "MalformedReviewError",
    "WebhookServer",
    "parse_address",
    "parse_review",
    "review",
    "review_response",
]
