"""Fixtures for the machine simulator tests: one fake API server per module, a fresh namespace per test."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as kube_client
from machine_lab import Lab

from sim.fakeapi import FakeApiServer

SIMULATOR_THREADS = {"machine-scheduler", "kube-watch-machine-jobs", "kube-watch-machine-pods"}


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeApiServer]:
    server = FakeApiServer(host="127.0.0.1", port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def long_lived_thread_prefixes() -> tuple[str, ...]:
    """The module's fake API serves every test: tests/conftest.py's thread check leaves its threads be."""
    return ("fakeapi-",)


@pytest.fixture(scope="module")
def api_client(fake_api: FakeApiServer) -> Iterator[kube_client.ApiClient]:
    configuration = kube_client.Configuration()
    configuration.host = fake_api.url
    with kube_client.ApiClient(configuration) as client:
        yield client


@pytest.fixture
def lab(fake_api: FakeApiServer, api_client: kube_client.ApiClient) -> Iterator[Lab]:
    namespace = f"sim-{uuid.uuid4().hex[:8]}"
    fake_api.store.create("v1", "namespaces", {"metadata": {"name": namespace}})
    test_lab = Lab(fake_api, api_client, namespace)
    try:
        yield test_lab
    finally:
        test_lab.stop_all()
        fake_api.faults.clear()
    leftovers = [thread.name for thread in threading.enumerate() if thread.name in SIMULATOR_THREADS]
    assert leftovers == [], "simulator threads survived stop()"
