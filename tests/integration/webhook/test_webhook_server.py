"""The webhook as the API server meets it: HTTPS with our own CA, AdmissionReview in and out, bad input refused."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor

import pytest
from webhook_test_support import (
    NAMESPACE,
    NOW,
    SERVICE,
    RunningWebhook,
    WebhookFactory,
    make_serving,
    node_object,
    review_body,
    trusting,
    write_serving_files,
)

from webhooks.certs import create_certificate_authority, service_dns_names
from webhooks.server import MAX_BODY_BYTES


def _exchange(connection: http.client.HTTPConnection, method: str, body: bytes | None = None) -> bytes:
    path = "/validate" if method == "POST" else "/healthz"
    connection.request(method, path, body=body)
    return connection.getresponse().read()


def test_an_acceptable_node_is_allowed(webhook: RunningWebhook) -> None:
    status, body, content_type = webhook.post(review_body(node_object(), uid="c0ffee"))
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "c0ffee", "allowed": True},
    }


def test_a_node_of_a_missing_group_is_denied_naming_the_field(webhook: RunningWebhook) -> None:
    status, body, _ = webhook.post(review_body(node_object(group="storage"), uid="d3n1ed"))
    response = json.loads(body)["response"]
    assert status == 200  # a denial is a successful review, not an HTTP error
    assert (response["uid"], response["allowed"], response["status"]["code"]) == ("d3n1ed", False, 422)
    assert "metadata.labels[infra.homecluster.dev/group]" in response["status"]["message"]
    assert "'storage', which does not exist" in response["status"]["message"]


def test_a_powered_off_machine_without_a_kubernetes_node_is_allowed_with_a_warning(webhook: RunningWebhook) -> None:
    _, body, _ = webhook.post(review_body(node_object(name="nas-7")))
    response = json.loads(body)["response"]
    assert response["allowed"] is True
    assert "Kubernetes Node 'nas-7' does not exist" in response["warnings"][0]


@pytest.mark.parametrize(
    ("body", "expected_words"),
    [
        pytest.param(b'{"apiVersion": ', b"not valid JSON", id="truncated-json"),
        pytest.param(
            b'{"apiVersion": "v1", "kind": "Pod"}', b"expected apiVersion admission.k8s.io/v1", id="not-a-review"
        ),
        pytest.param(
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}', b"no uid", id="no-uid"
        ),
    ],
)
def test_malformed_requests_get_http_400_with_a_plain_message(
    webhook: RunningWebhook, body: bytes, expected_words: bytes
) -> None:
    status, answer, content_type = webhook.post(body)
    assert status == 400
    assert content_type.startswith("text/plain")
    assert expected_words in answer


def test_an_oversized_body_is_refused_from_its_content_length_before_it_is_sent(webhook: RunningWebhook) -> None:
    connection = webhook.connection()
    try:
        connection.putrequest("POST", "/validate")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        connection.endheaders()  # headers only: the server must answer without waiting for 3 MiB
        response = connection.getresponse()
        assert response.status == 400
        assert b"exceeds the limit" in response.read()
    finally:
        connection.close()


def test_a_body_of_exactly_the_limit_is_read_and_judged(webhook: RunningWebhook) -> None:
    padded = review_body(node_object()).ljust(MAX_BODY_BYTES)  # trailing spaces are valid JSON whitespace
    status, body, _ = webhook.post(padded)
    assert status == 200
    assert json.loads(body)["response"]["allowed"] is True


@pytest.mark.parametrize(
    ("method", "path", "expected_status"),
    [
        pytest.param("GET", "/healthz", 200, id="health"),
        pytest.param("GET", "/validate", 404, id="get-validate"),
        pytest.param("POST", "/mutate", 404, id="unknown-path"),
    ],
)
def test_routes(webhook: RunningWebhook, method: str, path: str, expected_status: int) -> None:
    connection = webhook.connection()
    try:
        connection.request(method, path, body=b"{}" if method == "POST" else None)
        assert connection.getresponse().status == expected_status
    finally:
        connection.close()


def test_plain_http_to_the_https_port_gets_no_http_answer(webhook: RunningWebhook) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", webhook.server.port, timeout=10)
    try:
        with pytest.raises((http.client.HTTPException, OSError)):
            _exchange(connection, "POST", review_body(node_object()))
    finally:
        connection.close()


def test_a_client_that_does_not_trust_our_ca_cannot_connect(webhook: RunningWebhook) -> None:
    stranger = trusting(create_certificate_authority(NOW).cert_pem)
    connection = http.client.HTTPSConnection("127.0.0.1", webhook.server.port, context=stranger, timeout=10)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            connection.request("GET", "/healthz")
    finally:
        connection.close()


@pytest.mark.parametrize("server_name", service_dns_names(SERVICE, NAMESPACE))
def test_the_certificate_is_valid_for_every_service_dns_name(webhook: RunningWebhook, server_name: str) -> None:
    # The API server dials <svc>.<ns>.svc and checks the name against the certificate, as this client does.
    with (
        socket.create_connection(("127.0.0.1", webhook.server.port), timeout=10) as raw,
        webhook.client_context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_one_connection_carries_several_reviews(webhook: RunningWebhook) -> None:
    connection = webhook.connection()
    try:
        for uid in ("first", "second", "third"):
            connection.request("POST", "/validate", body=review_body(node_object(), uid=uid))
            assert json.loads(connection.getresponse().read())["response"]["uid"] == uid
    finally:
        connection.close()


def test_concurrent_reviews_each_get_their_own_answer(webhook: RunningWebhook) -> None:
    def ask(number: int) -> tuple[str, bool]:
        group = "workers" if number % 2 == 0 else "missing"
        _, body, _ = webhook.post(review_body(node_object(group=group), uid=f"uid-{number}"))
        response = json.loads(body)["response"]
        return response["uid"], response["allowed"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, range(48)))
    assert answers == [(f"uid-{number}", number % 2 == 0) for number in range(48)]


def test_a_silent_client_does_not_block_others(webhook: RunningWebhook) -> None:
    # Connects but never starts TLS: the handshake must wait on that connection's thread, not the acceptor's.
    with socket.create_connection(("127.0.0.1", webhook.server.port), timeout=10):
        status, _, _ = webhook.post(review_body(node_object()))
        assert status == 200


def test_a_rotated_certificate_is_served_after_reload(webhook: RunningWebhook) -> None:
    new_authority = create_certificate_authority(NOW)
    write_serving_files(make_serving(new_authority), webhook.cert_file.parent)
    webhook.server.reload_certificate()
    connection = http.client.HTTPSConnection(
        "127.0.0.1", webhook.server.port, context=trusting(new_authority.cert_pem), timeout=10
    )
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        webhook.post(review_body(node_object()))  # the old CA no longer matches


def test_stop_closes_idle_keep_alive_connections(webhook: RunningWebhook) -> None:
    connection = webhook.connection()
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() == b"ok\n"
        webhook.server.stop()
        with pytest.raises((http.client.HTTPException, OSError)):
            _exchange(connection, "GET")
    finally:
        connection.close()


def test_a_body_cut_short_is_dropped_and_the_server_keeps_serving(webhook: RunningWebhook) -> None:
    with (
        socket.create_connection(("127.0.0.1", webhook.server.port), timeout=10) as raw,
        webhook.client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b'POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"apiVersion":')
    status, _, _ = webhook.post(review_body(node_object()))
    assert status == 200


def test_a_stalled_client_is_disconnected_instead_of_holding_a_thread(webhook_factory: WebhookFactory) -> None:
    server = webhook_factory(socket_timeout=0.3)
    with (
        socket.create_connection(("127.0.0.1", server.server.port), timeout=10) as raw,
        server.client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        assert tls.recv(1024) == b""  # closed by the server, with no answer to a request it never got
