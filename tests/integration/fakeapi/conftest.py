"""Fixtures for the fake API tests: one server per module, the official client through its kubeconfig, and a
fresh namespace per test so tests never see each other's objects."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeapi_test_support import WIDGET_CRD
from kubernetes import client, config

from sim.fakeapi import FakeApiServer

_namespace_numbers = itertools.count()


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeApiServer]:
    with FakeApiServer(bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
def long_lived_thread_prefixes() -> tuple[str, ...]:
    """The module's fake API serves every test: tests/conftest.py's thread check leaves its threads be."""
    return ("fakeapi-",)


@pytest.fixture(scope="module")
def kubeconfig(fake_api: FakeApiServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_api.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")


@pytest.fixture(scope="module")
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    yield api
    api.close()


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def batch(api_client: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture(autouse=True)
def _no_leftover_faults(fake_api: FakeApiServer) -> Iterator[None]:
    yield
    fake_api.faults.clear()


@pytest.fixture
def namespace(fake_api: FakeApiServer) -> Iterator[str]:
    name = f"test-{next(_namespace_numbers)}"
    fake_api.store.create("v1", "namespaces", {"metadata": {"name": name}})
    yield name
    fake_api.store.delete("v1", "namespaces", name)


@pytest.fixture(scope="module")
def widgets(fake_api: FakeApiServer) -> Iterator[str]:
    """The Widget CRD (example.dev/v1, namespaced, status subresource) for the module's tests."""
    fake_api.store.create("apiextensions.k8s.io/v1", "customresourcedefinitions", WIDGET_CRD)
    yield "widgets"
    fake_api.store.delete("apiextensions.k8s.io/v1", "customresourcedefinitions", "widgets.example.dev")
    fake_api.settle()
