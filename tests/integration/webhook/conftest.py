"""Fixtures for the webhook server tests: real certificates from webhooks.certs and a server on 127.0.0.1:0."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from webhook_test_support import (
    NOW,
    Cluster,
    RunningWebhook,
    WebhookFactory,
    make_serving,
    trusting,
    write_serving_files,
)

from webhooks.admission import AdmissionRules
from webhooks.certs import CertificateAuthority, create_certificate_authority
from webhooks.server import WebhookServer


@pytest.fixture(scope="session")
def authority() -> CertificateAuthority:
    return create_certificate_authority(NOW)


@pytest.fixture
def webhook_factory(authority: CertificateAuthority, tmp_path: Path) -> Iterator[WebhookFactory]:
    """Starts webhook servers on 127.0.0.1:0; all are stopped (every thread joined) after the test."""
    before = set(threading.enumerate())
    started: list[WebhookServer] = []

    def start(socket_timeout: float = 5.0) -> RunningWebhook:
        serving = make_serving(authority)
        directory = tmp_path / f"certs-{len(started)}"
        directory.mkdir()
        cert_file, key_file = write_serving_files(serving, directory)
        server = WebhookServer(
            ("127.0.0.1", 0), cert_file, key_file, AdmissionRules(Cluster()), socket_timeout=socket_timeout
        )
        server.start()
        started.append(server)
        return RunningWebhook(server, trusting(authority.cert_pem), authority, serving, cert_file, key_file)

    try:
        yield start
    finally:
        for server in started:
            server.stop()
    leftover = [thread.name for thread in set(threading.enumerate()) - before if thread.is_alive()]
    assert leftover == [], f"threads left running after stop(): {leftover}"


@pytest.fixture
def webhook(webhook_factory: WebhookFactory) -> RunningWebhook:
    """A started webhook server on 127.0.0.1:0 with the default socket timeout."""
    return webhook_factory()
