"""Watch semantics with the official client's ``watch.Watch``: initial state, resume from a resourceVersion,
selectors, timeouts, bookmarks, 410 Gone once history is compacted, and dropped connections."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import urllib3
from fakeapi_test_support import raw_watch_events
from kubernetes import client, watch

from sim.fakeapi import FakeApiServer
from sim.fakeapi.store import ListQuery
from tests.support.polling import wait_for


def _events(stream: Any, count: int) -> list[tuple[str, str]]:
    seen = []
    for event in stream:
        seen.append((event["type"], event["raw_object"]["metadata"].get("name", "")))
        if len(seen) == count:
            break
    return seen


def test_watch_without_a_version_starts_with_every_existing_object(
        core: client.CoreV1Api, namespace: str) -> None:
    for name in ("a", "b"):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})
    watcher = watch.Watch()

    stream = watcher.stream(core.list_namespaced_config_map, namespace, timeout_seconds=5)
    initial = _events(stream, 2)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}})
    later = _events(stream, 1)
    watcher.stop()

    assert initial == [("ADDED", "a"), ("ADDED", "b")]
    assert later == [("ADDED", "c")]


def test_watch_from_a_version_replays_only_newer_events(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "old"}})
    listed = core.list_namespaced_config_map(namespace)
    core.patch_namespaced_config_map("old", namespace, {"data": {"a": "1"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "new"}})
    core.delete_namespaced_config_map("old", namespace)
    watcher = watch.Watch()

    events = _events(watcher.stream(core.list_namespaced_config_map, namespace,
                                    resource_version=listed.metadata.resource_version, timeout_seconds=5), 3)
    watcher.stop()

    assert events == [("MODIFIED", "old"), ("ADDED", "new"), ("DELETED", "old")]


def test_label_selector_changes_arrive_as_added_and_deleted(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "m", "labels": {"app": "x"}}})
    watcher = watch.Watch()
    stream = watcher.stream(core.list_namespaced_config_map, namespace, label_selector="app=x",
                            resource_version=created.metadata.resource_version, timeout_seconds=5)

    core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"app": "y"}}})
    core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"app": "x"}}})
    events = _events(stream, 2)
    watcher.stop()

    assert events == [("DELETED", "m"), ("ADDED", "m")]


def test_field_selector_filters_the_watch(core: client.CoreV1Api, namespace: str) -> None:
    watcher = watch.Watch()
    stream = watcher.stream(core.list_namespaced_config_map, namespace, field_selector="metadata.name=wanted",
                            timeout_seconds=5)

    core.create_namespaced_config_map(namespace, {"metadata": {"name": "other"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "wanted"}})
    events = _events(stream, 1)
    watcher.stop()

    assert events == [("ADDED", "wanted")]


def test_timeout_seconds_ends_the_stream(core: client.CoreV1Api, namespace: str) -> None:
    events = list(watch.Watch().stream(core.list_namespaced_config_map, namespace, timeout_seconds=1))

    assert events == []


def test_bookmarks_carry_the_current_resource_version(
        fake_api: FakeApiServer, core: client.CoreV1Api, namespace: str) -> None:
    current = core.list_namespaced_config_map(namespace).metadata.resource_version
    watcher = watch.Watch()

    stream = watcher.stream(core.list_namespaced_config_map, namespace, resource_version=current,
                            allow_watch_bookmarks=True, timeout_seconds=5)
    first = next(iter(stream))
    watcher.stop()

    assert first["type"] == "BOOKMARK"
    assert int(first["raw_object"]["metadata"]["resourceVersion"]) >= int(current)
    assert watcher.resource_version == first["raw_object"]["metadata"]["resourceVersion"]


def test_watch_from_a_compacted_version_is_gone(fake_api: FakeApiServer, core: client.CoreV1Api,
                                                namespace: str) -> None:
    old = core.create_namespaced_config_map(namespace, {"metadata": {"name": "old"}}).metadata.resource_version
    core.patch_namespaced_config_map("old", namespace, {"data": {"a": "1"}})
    fake_api.faults.compact_history()

    with pytest.raises(client.ApiException) as caught:
        list(watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version=old,
                                  timeout_seconds=5))

    assert caught.value.status == 410
    assert "Expired" in caught.value.reason


def test_raw_gone_event_is_a_status_with_code_410(fake_api: FakeApiServer, namespace: str) -> None:
    fake_api.store.create("v1", "configmaps", {"metadata": {"name": "x"}}, namespace)
    fake_api.faults.compact_history()

    events = raw_watch_events(fake_api.url, f"/api/v1/namespaces/{namespace}/configmaps?watch=1&resourceVersion=1")

    assert len(events) == 1
    event = events[0]
    assert event["type"] == "ERROR"
    assert (event["object"]["kind"], event["object"]["code"], event["object"]["reason"]) == (
        "Status", 410, "Expired")


def test_list_from_a_compacted_version_is_gone(fake_api: FakeApiServer, core: client.CoreV1Api,
                                               namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "a"}})
    fake_api.faults.compact_history()

    with pytest.raises(client.ApiException) as caught:
        core.list_namespaced_config_map(namespace, resource_version="1")

    assert caught.value.status == 410


def test_history_limit_bounds_how_far_back_a_watch_can_resume() -> None:
    with FakeApiServer(history_limit=3) as server:
        first = server.store.create("v1", "configmaps", {"metadata": {"name": "a"}}, "default")
        for value in range(4):
            server.store.patch("v1", "configmaps", "a", {"data": {"v": str(value)}}, "default")

        events = raw_watch_events(server.url, "/api/v1/namespaces/default/configmaps?watch=1"
                                  f"&resourceVersion={first['metadata']['resourceVersion']}")

    assert [(e["type"], e["object"]["code"]) for e in events] == [("ERROR", 410)]


def test_dropped_watches_are_cut_mid_stream(fake_api: FakeApiServer, core: client.CoreV1Api,
                                            namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "seen"}})
    received: list[str] = []
    outcome: list[BaseException | str] = []

    def consume() -> None:
        try:
            for event in watch.Watch().stream(core.list_namespaced_config_map, namespace, timeout_seconds=30):
                received.append(event["type"])
            outcome.append("ended cleanly")
        except (urllib3.exceptions.HTTPError, client.ApiException) as error:
            outcome.append(error)

    reader = threading.Thread(target=consume)
    reader.start()
    wait_for(lambda: received)  # the stream is open and has delivered its first event
    fake_api.faults.drop_watches()
    reader.join(10)

    assert not reader.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], urllib3.exceptions.ProtocolError)


def test_a_slow_watcher_is_closed_instead_of_blocking_writers() -> None:
    with FakeApiServer(watch_queue_limit=5) as server:
        watcher = server.store.open_watch(server.store.resource("v1", "configmaps"), "default", ListQuery())
        for index in range(10):
            server.store.create("v1", "configmaps", {"metadata": {"name": f"c{index}"}}, "default")

        assert watcher.closed_reason == "overflow"
        assert server.store.count("v1", "configmaps") == 10
