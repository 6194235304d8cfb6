"""spec.power's exactly-one-way and driver-combination rules on the fake API: the same cases, decided as the real
API server decides them (tests/integration/controlplane/test_power_rules_on_the_api_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kubeapi.kube_client import KubeApi, KubeError, new_api_client
from schemas import GROUP_VERSION
from sim.fakeapi import FakeApiServer
from sim.seed import install_crds
from tests.support.power_rules import CASES, node


@pytest.fixture(scope="module")
def nodes_api(fake_api: FakeApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApi]:
    kubeconfig = fake_api.write_kubeconfig(tmp_path_factory.mktemp("power") / "config")
    with new_api_client(kubeconfig) as client:
        install_crds(client)
        yield KubeApi(client)


@pytest.mark.parametrize(("name", "spec", "expected"), [pytest.param(*case, id=case[0]) for case in CASES])
def test_the_fake_api_decides_one_way_to_power_a_machine_like_the_real_one(
    nodes_api: KubeApi, namespace: str, name: str, spec: dict[str, Any], expected: str | None
) -> None:
    collection = f"/apis/{GROUP_VERSION}/namespaces/{namespace}/nodes"
    if expected is None:
        nodes_api.post(collection, node(name, spec))
        return
    with pytest.raises(KubeError) as refused:
        nodes_api.post(collection, node(name, spec))
    assert refused.value.status == 422
    assert expected in refused.value.message
