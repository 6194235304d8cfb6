"""A stateful fake Kubernetes API server over real HTTP, built on the standard library.

Tests, demos and benchmarks point the official client or ``kubectl`` at it through the kubeconfig it
writes. Why it exists and what it does (and does not) emulate: docs/development/fake-api.md.

    with FakeApiServer() as server:
        server.write_kubeconfig(path)
        server.store.create("v1", "nodes", {"metadata": {"name": "n1"}})
"""

from __future__ import annotations

from sim.fakeapi.errors import ApiError
from sim.fakeapi.faults import FaultInjector
from sim.fakeapi.resources import ResourceType
from sim.fakeapi.server import FakeApiServer
from sim.fakeapi.store import Store

__all__ = ["ApiError", "FakeApiServer", "FaultInjector", "ResourceType", "Store"]
