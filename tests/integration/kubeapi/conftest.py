"""Fixtures for the adapter tests: one fake API server per module with our CRDs, the official client pointed at it,
a fresh namespace per test, and a writer that is always stopped (and leaves no thread behind)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest
from kubeapi_test_support import Reports
from kubernetes import client as kube

from kubeapi.writer import KubeWriter
from schemas.crds import render_crds
from sim.fakeapi import FakeApiServer

_namespace_numbers = itertools.count()
ADAPTER_THREAD_PREFIXES = ("kube-writer-", "kube-drain-", "kube-watch-", "leader-")


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeApiServer]:
    with FakeApiServer(host="127.0.0.1", port=0, bookmark_interval=0.2) as server:
        for crd in render_crds():
            server.store.create("apiextensions.k8s.io/v1", "customresourcedefinitions", crd)
        yield server


@pytest.fixture
def long_lived_thread_prefixes() -> tuple[str, ...]:
    """The module's fake API serves every test: tests/conftest.py's thread check leaves its threads be."""
    return ("fakeapi-",)


@pytest.fixture(scope="module")
def api_client(fake_api: FakeApiServer) -> Iterator[kube.ApiClient]:
    configuration = kube.Configuration()
    configuration.host = fake_api.url
    configuration.connection_pool_maxsize = 32
    with kube.ApiClient(configuration) as client:
        yield client


@pytest.fixture(autouse=True)
def _clean_fake(fake_api: FakeApiServer) -> Iterator[None]:
    yield
    fake_api.faults.clear()
    fake_api.on_request.clear()


@pytest.fixture(autouse=True)
def _no_adapter_threads_left() -> Iterator[None]:
    yield
    leftovers = [t.name for t in threading.enumerate() if t.name.startswith(ADAPTER_THREAD_PREFIXES)]
    assert leftovers == [], "adapter threads survived the test"


@pytest.fixture
def namespace(fake_api: FakeApiServer) -> Iterator[str]:
    name = f"adapters-{next(_namespace_numbers)}"
    fake_api.store.create("v1", "namespaces", {"metadata": {"name": name}})
    yield name
    fake_api.store.delete("v1", "namespaces", name)


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
def writer(api_client: kube.ApiClient, reports: Reports) -> Iterator[KubeWriter]:
    kube_writer = KubeWriter(api_client, reports, base_backoff=0.01, max_backoff=0.05, drain_poll_seconds=0.02)
    yield kube_writer
    kube_writer.stop(timeout=5.0)
