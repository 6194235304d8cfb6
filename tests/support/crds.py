"""Storing a custom resource the current CRD refuses, the one way a real cluster comes to hold one.

A real API server (and the fake, which applies the CRD's schema and CEL rules as it does) refuses such an
object, but one stored under an older, looser CRD stays stored after the CRD is upgraded. Tests of how the
operator and `status` treat a malformed resource create theirs that way, inside ``looser_crd``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

from sim.fakeapi import FakeApiServer

CRDS = "apiextensions.k8s.io/v1"


@contextlib.contextmanager
def looser_crd(server: FakeApiServer, crd_name: str) -> Iterator[None]:
    """The CRD with a schema that accepts anything for the duration of the block, then the current one back."""
    current = server.store.get(CRDS, "customresourcedefinitions", crd_name)
    looser = copy.deepcopy(current)
    for version in looser["spec"]["versions"]:
        version["schema"] = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    server.store.update(CRDS, "customresourcedefinitions", looser)
    try:
        yield
    finally:
        restored = server.store.get(CRDS, "customresourcedefinitions", crd_name)
        restored["spec"] = current["spec"]
        server.store.update(CRDS, "customresourcedefinitions", restored)
