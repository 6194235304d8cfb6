"""The exactly-one-way and driver-combination rules of spec.power, proven once on a real API server.

The same CEL rules are checked against every case on the fake API and by celpy in tests/unit/test_crds.py; this
file shows the real API server compiles them within its cost budget and refuses with the webhook's own words.
Needs the real binaries (HOMELAB_K8S_BIN); only etcd and the API server are started.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeapi.kube_client import KubeApi, KubeError, new_api_client
from schemas import GROUP_VERSION
from sim.controlplane import Binaries
from sim.seed import install_crds
from tests.support.control_plane import running_control_plane
from tests.support.power_rules import CASES, node

NODES = f"/apis/{GROUP_VERSION}/namespaces/default/nodes"


def test_the_api_server_enforces_one_way_to_power_a_machine_with_the_webhooks_words(
    request: pytest.FixtureRequest, tmp_path: Path, binaries: Binaries
) -> None:
    with (
        running_control_plane(request, tmp_path, binaries=binaries, controller_manager=False, scheduler=False) as plane,
        new_api_client(plane.kubeconfig) as client,
    ):
        install_crds(client, timeout=60.0)
        api = KubeApi(client)
        outcomes: dict[str, str | None] = {}
        for name, spec, _expected in CASES:
            try:
                api.post(NODES, node(name, spec))
                outcomes[name] = None
            except KubeError as error:
                outcomes[name] = f"{error.status}: {error.message}"
    for name, _spec, expected in CASES:
        outcome = outcomes[name]
        if expected is None:
            assert outcome is None, f"{name} refused: {outcome}"
        else:
            assert outcome is not None, f"{name} accepted"
            assert outcome.startswith("422"), outcome
            assert expected in outcome, outcome
