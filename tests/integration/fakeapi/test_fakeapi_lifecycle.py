"""Server lifecycle and scale: start/stop leave nothing behind, the kubeconfig works, the direct store API,
and a 5000-node, 5000-custom-resource store stays correct under list and watch."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from fakeapi_test_support import WIDGET_CRD
from kubernetes import client, config, watch

from sim.fakeapi import ApiError, FakeApiServer


def _fakeapi_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fakeapi-")]


def test_stop_ends_every_thread_and_open_watch(tmp_path: Path) -> None:
    before = set(_fakeapi_threads())
    server = FakeApiServer().start()
    api = config.new_client_from_config(config_file=str(server.write_kubeconfig(tmp_path / "config")))
    core = client.CoreV1Api(api)
    outcome: list[object] = []

    def consume() -> None:
        try:
            for event in watch.Watch().stream(core.list_namespace, timeout_seconds=60):
                outcome.append(event["type"])
        except Exception as error:  # the stream is cut by stop(); any exception type is acceptable here
            outcome.append(error)

    reader = threading.Thread(target=consume)
    reader.start()
    while not outcome:
        reader.join(0.01)
    server.stop()
    reader.join(10)
    api.close()

    assert not reader.is_alive()
    assert set(_fakeapi_threads()) <= before
    with pytest.raises(RuntimeError):
        _ = server.url


def test_a_client_that_resets_its_connection_prints_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    # Killed operators do this all the time in the soak; a real API server does not complain on stderr either.
    with FakeApiServer() as server:
        host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
        connection = socket.create_connection((host, port))
        connection.sendall(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: test\r\n\r\n")
        assert connection.recv(12).startswith(b"HTTP/1.1 200")
        serving = [thread for thread in _fakeapi_threads() if thread.name.startswith("fakeapi-connection-")]
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()  # with linger 0: a reset, while the server waits for the next request
        for thread in serving:
            thread.join(10)
        assert [thread.name for thread in serving if thread.is_alive()] == [], "a reset connection was kept open"
    assert "Traceback" not in capfd.readouterr().err


def test_kubeconfig_names_the_server_with_a_dummy_token(tmp_path: Path) -> None:
    with FakeApiServer() as server:
        path = server.write_kubeconfig(tmp_path / "nested" / "config")
        document = yaml.safe_load(path.read_text())
        url = server.url

    assert document["current-context"] == "fakeapi"
    assert document["clusters"][0]["cluster"]["server"] == url
    assert document["users"][0]["user"]["token"]


def test_default_and_kube_system_exist_at_start() -> None:
    with FakeApiServer() as server:
        names = [ns["metadata"]["name"] for ns in server.store.list("v1", "namespaces")]

    assert names == ["default", "kube-system"]


def test_store_gives_copies_and_raises_api_errors() -> None:
    with FakeApiServer() as server:
        created = server.store.create("v1", "nodes", {"metadata": {"name": "n"}})
        created["metadata"]["name"] = "mutated"
        with pytest.raises(ApiError) as caught:
            server.store.create("v1", "nodes", {"metadata": {"name": "n"}})

        assert server.store.get("v1", "nodes", "n")["metadata"]["name"] == "n"
    assert (caught.value.code, caught.value.reason) == (409, "AlreadyExists")


def test_five_thousand_nodes_and_custom_resources(tmp_path: Path) -> None:
    with FakeApiServer() as server:
        store = server.store
        store.create("apiextensions.k8s.io/v1", "customresourcedefinitions", WIDGET_CRD)
        for index in range(5000):
            store.create("v1", "nodes", {"metadata": {"name": f"node-{index:05d}", "labels": {
                "group": f"g{index % 10}"}}})
            store.create("example.dev/v1", "widgets", {"metadata": {"name": f"w-{index:05d}"}}, "default")
        api = config.new_client_from_config(config_file=str(server.write_kubeconfig(tmp_path / "config")))
        core = client.CoreV1Api(api)
        watcher = watch.Watch()
        stream = watcher.stream(core.list_node, label_selector="group=g3", timeout_seconds=30)
        initial = [next(stream)["type"] for _ in range(500)]
        store.patch("v1", "nodes", "node-00003", {"spec": {"unschedulable": True}})
        change = next(stream)
        watcher.stop()
        everything = core.list_node()
        paged = core.list_node(limit=1000)
        selected = core.list_node(label_selector="group=g7")
        api.close()

    assert initial == ["ADDED"] * 500
    assert (change["type"], change["object"].metadata.name) == ("MODIFIED", "node-00003")
    assert len(everything.items) == 5000
    assert len(paged.items) == 1000
    assert paged.metadata.remaining_item_count == 4000
    assert len(selected.items) == 500
