"""Fixtures of the scenarios with the real Cluster Autoscaler: a control plane, operator and CA per scenario.

They run only in --e2e-control-plane mode (tests/e2e/conftest.py skips them otherwise, saying how to enable
them), and skip with one line when the binary folder has no `cluster-autoscaler` (HOMELAB_CA_BIN names one).
A failed scenario shows the operator's and CA's last log lines beside the control plane's (the report hook is
imported by tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ca_support import AutoscaledHomelab

from sim.controlplane import BinariesNotFound, ControlPlane
from tests.support.control_plane import binaries_or_skip, running_control_plane, show_on_failure


@pytest.fixture
def autoscaled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AutoscaledHomelab]:
    binaries = binaries_or_skip()
    try:
        binaries.require("cluster-autoscaler")
    except BinariesNotFound as error:
        pytest.skip(f"no Cluster Autoscaler binary: {error}; put cluster-autoscaler(.xz) in HOMELAB_K8S_BIN or name "
                    "it with HOMELAB_CA_BIN")
    with running_control_plane(
        request, tmp_path, binaries=binaries, controller_manager_args=ControlPlane.fast_node_lifecycle
    ) as control_plane:
        homelab = AutoscaledHomelab(control_plane, tmp_path)
        show_on_failure(request, "operator and autoscaler logs", homelab.process_tails)
        try:
            homelab.open()
            yield homelab
        finally:
            homelab.close()
