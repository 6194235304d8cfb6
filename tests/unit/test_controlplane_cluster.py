"""`ControlPlane` without running anything: how extra flags override the defaults, ports, and refusals up front.

The starts themselves need the real binaries: tests/integration/controlplane.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.controlplane import Binaries, BinariesNotFound, ControlPlane, ControlPlaneError, free_ports, merge_arguments

DEFAULTS = ["--leader-elect=false", "--controllers=*", "--v=2", "--config-file", "etcd.yaml"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param([], DEFAULTS, id="nothing-extra"),
        pytest.param(
            ["--node-monitor-period=1s"], [*DEFAULTS, "--node-monitor-period=1s"], id="a-new-flag-is-appended"
        ),
        pytest.param(
            ["--controllers=*,-nodeipam"],
            ["--leader-elect=false", "--v=2", "--config-file", "etcd.yaml", "--controllers=*,-nodeipam"],
            id="a-list-flag-replaces-the-default",
        ),
        pytest.param(
            ["--v=4", "--leader-elect"],
            ["--controllers=*", "--config-file", "etcd.yaml", "--v=4", "--leader-elect"],
            id="scalar-and-bare-flags-replace-the-defaults",
        ),
    ],
)
def test_extra_arguments_come_last_and_override_the_defaults(extra: list[str], expected: list[str]) -> None:
    assert merge_arguments(DEFAULTS, extra) == expected


def test_free_ports_are_distinct_loopback_ports() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    assert all(1024 <= port <= 65535 for port in ports)


@pytest.fixture
def apiserver_and_etcd_only(tmp_path: Path) -> Binaries:
    return Binaries(folder=tmp_path, cache=tmp_path, kube_apiserver=tmp_path / "a", etcd=tmp_path / "e")


def test_a_component_without_its_binary_is_refused_at_construction(
    apiserver_and_etcd_only: Binaries, tmp_path: Path
) -> None:
    with pytest.raises(BinariesNotFound, match=r"^kube-controller-manager not found"):
        ControlPlane(apiserver_and_etcd_only, tmp_path)
    ControlPlane(apiserver_and_etcd_only, tmp_path, controller_manager=False, scheduler=False)


def test_before_a_start_stop_is_a_no_op_and_components_are_unknown(
    apiserver_and_etcd_only: Binaries, tmp_path: Path
) -> None:
    control_plane = ControlPlane(apiserver_and_etcd_only, tmp_path, controller_manager=False, scheduler=False)
    control_plane.stop()
    assert (control_plane.running(), control_plane.processes(), control_plane.log_tail()) == (False, {}, "")
    assert set(control_plane.logs) == {"etcd", "kube-apiserver"}
    with pytest.raises(ControlPlaneError, match="kube-scheduler is not part of this control plane"):
        control_plane.stop_component("kube-scheduler")
