"""The Kubernetes SecretReader against the fake API server: one get per read, the drivers' errors on absence."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import pytest
from kubernetes import client as kube_client

from actors.power_port import PowerFailure
from kubeapi.kube_client import KubeApi
from kubeapi.secret_reader import KubeSecretReader
from power_drivers.errors import PowerDriverError
from sim.fakeapi import FakeApiServer

NAMESPACE = "homelab"


@pytest.fixture
def long_lived_thread_prefixes() -> tuple[str, ...]:
    """The module's fake API serves every test: tests/conftest.py's thread check leaves its threads be."""
    return ("fakeapi-",)


@pytest.fixture(scope="module")
def reader() -> Iterator[KubeSecretReader]:
    server = FakeApiServer(host="127.0.0.1", port=0)
    server.start()
    try:
        server.store.create("v1", "namespaces", {"metadata": {"name": NAMESPACE}})
        server.store.create(
            "v1",
            "secrets",
            {
                "metadata": {"name": "bmc", "namespace": NAMESPACE},
                "data": {"username": base64.b64encode(b"admin").decode(), "empty": ""},
            },
            namespace=NAMESPACE,
        )
        server.store.create(
            "v1",
            "configmaps",
            {"metadata": {"name": "bmc-ca", "namespace": NAMESPACE}, "data": {"ca.crt": "-----BEGIN CERT"}},
            namespace=NAMESPACE,
        )
        configuration = kube_client.Configuration()
        configuration.host = server.url
        with kube_client.ApiClient(configuration) as api_client:
            yield KubeSecretReader(KubeApi(api_client))
    finally:
        server.stop()


def test_reads_a_secret_key_and_a_config_map_key(reader: KubeSecretReader) -> None:
    assert reader.read(NAMESPACE, "bmc", "username") == b"admin"
    assert reader.read_config_map(NAMESPACE, "bmc-ca", "ca.crt") == b"-----BEGIN CERT"


@pytest.mark.parametrize(
    ("kind", "name", "key", "failure", "message"),
    [
        ("Secret", "nothing-here", "username", PowerFailure.SECRET_MISSING, "Secret homelab/nothing-here: not found"),
        ("Secret", "bmc", "password", PowerFailure.SECRET_KEY_MISSING, "Secret homelab/bmc has no key 'password'"),
        ("Secret", "bmc", "empty", PowerFailure.SECRET_KEY_MISSING, "Secret homelab/bmc has no key 'empty'"),
        ("ConfigMap", "absent", "ca.crt", PowerFailure.SECRET_MISSING, "ConfigMap homelab/absent: not found"),
        ("ConfigMap", "bmc-ca", "tls.crt", PowerFailure.SECRET_KEY_MISSING, "ConfigMap homelab/bmc-ca has no key"),
    ],
)
def test_absence_is_the_drivers_own_error(
    reader: KubeSecretReader, kind: str, name: str, key: str, failure: PowerFailure, message: str
) -> None:
    read = reader.read if kind == "Secret" else reader.read_config_map

    with pytest.raises(PowerDriverError) as raised:
        read(NAMESPACE, name, key)

    assert raised.value.failure is failure
    assert message in raised.value.message


def test_an_api_server_that_does_not_answer_is_a_failure_worth_retrying() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        configuration = kube_client.Configuration()
        configuration.host = f"http://127.0.0.1:{port}"
        with kube_client.ApiClient(configuration) as api_client:
            reader = KubeSecretReader(KubeApi(api_client, timeout=(1.0, 1.0)))

            with pytest.raises(PowerDriverError) as raised:
                reader.read(NAMESPACE, "bmc", "password")

    assert raised.value.failure is PowerFailure.SECRET_UNREADABLE
    assert raised.value.failure.retryable
    assert "cannot read Secret homelab/bmc" in raised.value.message
