"""The real control plane as a test fixture: it starts, the project's client works against it, several run at
once, a broken start says why, the API server survives an outage on the same URL, and nothing outlives it.

Needs the real binaries (HOMELAB_K8S_BIN=/work/shared/k8s/bin); skipped with one line saying so otherwise. Each
start takes a few seconds, so the file keeps to the few starts that each check something different.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeapi.kube_client import KubeApi, KubeNotFound, KubeTransient, new_api_client
from sim.controlplane import (
    COMPONENTS,
    Binaries,
    ControlPlane,
    ControlPlaneStartFailed,
    ManagedProcess,
    cluster,
    free_ports,
)
from tests.support.control_plane import running_control_plane, stray_children
from tests.support.polling import wait_for

NAMESPACES = "/api/v1/namespaces"


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def exists(api: KubeApi, path: str) -> bool:
    try:
        api.get(path)
    except KubeNotFound:
        return False
    return True


def command_line(pid: int | None) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_a_full_control_plane_serves_the_projects_client(
    request: pytest.FixtureRequest, tmp_path: Path, binaries: Binaries
) -> None:
    with running_control_plane(
        request, tmp_path, binaries=binaries, controller_manager_args=ControlPlane.fast_node_lifecycle
    ) as control_plane:
        assert control_plane.server.startswith("https://127.0.0.1:")
        assert set(control_plane.logs) == set(COMPONENTS)
        with new_api_client(control_plane.kubeconfig) as client:
            api = KubeApi(client)
            api.post(NAMESPACES, namespace("homelab"))
            assert api.get("/api/v1/nodes")["items"] == []
            # kube-controller-manager's service-account controller runs under its own ES256-signed token, so the
            # default ServiceAccount appearing shows the controllers are up and the signing keys are accepted.
            wait_for(
                lambda: exists(api, f"{NAMESPACES}/homelab/serviceaccounts/default"),
                timeout=30.0,
                what="the default ServiceAccount of a new namespace",
            )
        controller_manager = command_line(control_plane.processes()["kube-controller-manager"].pid)
        assert controller_manager[-2:] == list(ControlPlane.fast_node_lifecycle)
        assert sum(argument.startswith("--node-monitor-period") for argument in controller_manager) == 1
        processes = control_plane.processes()
    assert [name for name, process in processes.items() if process.alive] == []


def test_two_control_planes_run_at_once_apart(
    request: pytest.FixtureRequest, tmp_path: Path, binaries: Binaries
) -> None:
    options: dict[str, Any] = {"binaries": binaries, "controller_manager": False, "scheduler": False}
    with (
        running_control_plane(request, tmp_path, **options) as first,
        running_control_plane(request, tmp_path, **options) as second,
    ):
        assert first.server != second.server
        assert first.directory != second.directory
        with new_api_client(first.kubeconfig) as first_client, new_api_client(second.kubeconfig) as second_client:
            KubeApi(first_client).post(NAMESPACES, namespace("only-in-the-first"))
            assert exists(KubeApi(first_client), f"{NAMESPACES}/only-in-the-first")
            assert not exists(KubeApi(second_client), f"{NAMESPACES}/only-in-the-first")


def test_a_component_that_dies_while_starting_is_named_with_its_log(tmp_path: Path, binaries: Binaries) -> None:
    control_plane = ControlPlane(
        binaries, tmp_path, controller_manager=False, scheduler=False, apiserver_args=("--no-such-flag",)
    )
    with pytest.raises(ControlPlaneStartFailed) as raised:
        control_plane.start(timeout=60.0)
    assert raised.value.component == "kube-apiserver"
    assert str(raised.value).startswith("kube-apiserver exited with status")
    assert "unknown flag: --no-such-flag" in str(raised.value)
    assert [name for name, process in control_plane.processes().items() if process.alive] == []
    assert stray_children(binaries) == []


def test_the_api_server_comes_back_on_the_same_url_after_a_kill(
    request: pytest.FixtureRequest, tmp_path: Path, binaries: Binaries
) -> None:
    with (
        running_control_plane(
            request, tmp_path, binaries=binaries, controller_manager=False, scheduler=False
        ) as control_plane,
        new_api_client(control_plane.kubeconfig) as client,
    ):
        api = KubeApi(client, timeout=(2.0, 5.0))
        api.post(NAMESPACES, namespace("survives"))
        server = control_plane.server

        control_plane.stop_component("kube-apiserver", kill=True)
        with pytest.raises(KubeTransient):
            api.get(f"{NAMESPACES}/survives")

        control_plane.start_component("kube-apiserver")
        assert control_plane.server == server
        assert exists(api, f"{NAMESPACES}/survives"), "etcd kept the data while the API server was down"
        pids = [process.pid for process in control_plane.processes().values()]

    control_plane.stop()  # a second stop, with everything already gone, is a no-op
    assert [pid for pid in pids if os.path.exists(f"/proc/{pid}")] == [], "no process (nor zombie) is left"
    assert stray_children(binaries) == []


def test_a_process_left_behind_fails_the_test_and_is_killed(
    request: pytest.FixtureRequest, tmp_path: Path, binaries: Binaries
) -> None:
    client_port, peer_port = free_ports(2)
    stray_config = tmp_path / "stray-etcd.yaml"
    stray_config.write_text(
        yaml.safe_dump(
            {
                "name": "stray",
                "data-dir": str(tmp_path / "stray-data"),
                "listen-client-urls": f"http://127.0.0.1:{client_port}",
                "advertise-client-urls": f"http://127.0.0.1:{client_port}",
                "listen-peer-urls": f"http://127.0.0.1:{peer_port}",
                "initial-advertise-peer-urls": f"http://127.0.0.1:{peer_port}",
                "initial-cluster": f"stray=http://127.0.0.1:{peer_port}",
            }
        )
    )
    # Started like a component but never stopped, the way a forgotten Cluster Autoscaler would be.
    stray = ManagedProcess("stray-etcd", [binaries.etcd, "--config-file", stray_config], tmp_path / "stray.log")

    with (
        pytest.raises(pytest.fail.Exception, match=r"processes left running .* \(now killed\): .*etcd \(pid \d+\)"),
        running_control_plane(request, tmp_path, binaries=binaries, controller_manager=False, scheduler=False),
    ):
        stray.start()

    assert not stray.alive
    assert stray_children(binaries) == []


def test_a_port_taken_before_the_start_is_replaced_by_a_free_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, binaries: Binaries
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: etcd cannot bind it, and a probe is refused at once
        port = taken.getsockname()[1]
        first_pick = [port, *cluster.free_ports(4)]  # etcd's client port is the taken one
        picks = iter([first_pick])
        monkeypatch.setattr(cluster, "free_ports", lambda count: next(picks, None) or free_ports(count))

        with ControlPlane(binaries, tmp_path, controller_manager=False, scheduler=False) as control_plane:
            assert control_plane.ports["etcd"] != port
            assert control_plane.server != ""
