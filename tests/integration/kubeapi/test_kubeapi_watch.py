"""Resource watches against the fake API: list then watch, resumption without replay, relist on 410, back-off."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubeapi_test_support import create_machine
from kubernetes import client as kube

from actors import metrics, watch_port
from actors.watch_port import Listed, WatchEvent, WatchEventType, WatchOutput
from kubeapi import watch
from kubeapi.reachability import ApiReachability
from kubeapi.watch import ResourceWatch
from schemas import GROUP_VERSION
from schemas.crds import render_crds
from sim.fakeapi import FakeApiServer
from tests.support.polling import wait_for

FAST = {"initial_backoff": 0.05, "max_backoff": 0.2}


class Collected:
    """Everything a watch handed to its sink, in order; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outputs: list[WatchOutput] = []

    def __call__(self, output: WatchOutput) -> None:
        with self._lock:
            self._outputs.append(output)

    @property
    def lists(self) -> list[Listed]:
        with self._lock:
            return [output for output in self._outputs if isinstance(output, Listed)]

    @property
    def events(self) -> list[tuple[WatchEventType, str]]:
        with self._lock:
            return [(o.type, o.object["metadata"]["name"]) for o in self._outputs if isinstance(o, WatchEvent)]


@pytest.fixture
def collected() -> Collected:
    return Collected()


@pytest.fixture
def start_watch() -> Iterator[Callable[[ResourceWatch], ResourceWatch]]:
    started: list[ResourceWatch] = []

    def start(resource_watch: ResourceWatch) -> ResourceWatch:
        started.append(resource_watch)
        resource_watch.start()
        assert resource_watch.wait_synced(5.0), "the first list never arrived"
        return resource_watch

    yield start
    for resource_watch in started:
        resource_watch.stop(timeout=5.0)


def _names(listed: Listed) -> set[str]:
    return {item["metadata"]["name"] for item in listed.items}


def _restarts(resource: str) -> float:
    return metrics.REGISTRY.get_sample_value("homelab_autoscaler_watch_restarts_total", {"resource": resource}) or 0.0


def _set_priority(fake_api: FakeApiServer, namespace: str, name: str, priority: int) -> None:
    fake_api.store.patch(GROUP_VERSION, "nodes", name, {"spec": {"priority": priority}}, namespace)


def test_list_then_watch_sees_every_change(
    fake_api: FakeApiServer, namespace: str, api_client: kube.ApiClient, collected: Collected,
    start_watch: Callable[[ResourceWatch], ResourceWatch],
) -> None:
    create_machine(fake_api, namespace, "m1")
    create_machine(fake_api, namespace, "m2")

    resource_watch = start_watch(watch.machine_watch(api_client, collected, namespace, **FAST))
    [listed] = collected.lists
    assert listed.resource == watch_port.MACHINES
    assert _names(listed) == {"m1", "m2"}
    assert listed.resource_version

    create_machine(fake_api, namespace, "m3")
    _set_priority(fake_api, namespace, "m1", 5)
    fake_api.store.delete(GROUP_VERSION, "nodes", "m2", namespace)

    expected = [(WatchEventType.ADDED, "m3"), (WatchEventType.MODIFIED, "m1"), (WatchEventType.DELETED, "m2")]
    wait_for(lambda: collected.events == expected, what="ADDED, MODIFIED and DELETED")
    assert resource_watch.resource_version == str(fake_api.store.resource_version)


def test_only_our_power_jobs_are_watched(
    fake_api: FakeApiServer, namespace: str, api_client: kube.ApiClient, collected: Collected,
    start_watch: Callable[[ResourceWatch], ResourceWatch],
) -> None:
    def job(name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels},
                "spec": {"template": {"spec": {"restartPolicy": "Never",
                                               "containers": [{"name": "c", "image": "busybox"}]}}}}

    ours = {"app.kubernetes.io/managed-by": "homelab-autoscaler"}
    fake_api.store.create("batch/v1", "jobs", job("ours-1", ours), namespace)
    fake_api.store.create("batch/v1", "jobs", job("someone-elses", {"app": "backup"}), namespace)

    start_watch(watch.power_job_watch(api_client, collected, namespace, **FAST))
    fake_api.store.create("batch/v1", "jobs", job("ours-2", ours), namespace)
    fake_api.store.create("batch/v1", "jobs", job("not-ours", {}), namespace)

    assert _names(collected.lists[0]) == {"ours-1"}
    wait_for(lambda: collected.events == [(WatchEventType.ADDED, "ours-2")], what="our new Job only")


def test_a_dropped_watch_resumes_without_replaying(
    fake_api: FakeApiServer, namespace: str, api_client: kube.ApiClient, collected: Collected,
    start_watch: Callable[[ResourceWatch], ResourceWatch],
) -> None:
    create_machine(fake_api, namespace, "m1")
    resource_watch = start_watch(watch.machine_watch(api_client, collected, namespace, **FAST))
    create_machine(fake_api, namespace, "m2")
    wait_for(lambda: collected.events == [(WatchEventType.ADDED, "m2")], what="the first event")
    restarts_before = _restarts(watch_port.MACHINES)

    assert fake_api.faults.drop_watches() >= 1
    create_machine(fake_api, namespace, "m3")  # while the watch is down: must arrive once it resumes

    wait_for(lambda: collected.events == [(WatchEventType.ADDED, "m2"), (WatchEventType.ADDED, "m3")],
             what="the change made while disconnected, and nothing replayed")
    assert len(collected.lists) == 1, "resuming must not relist"
    assert resource_watch.lists == 1
    assert _restarts(watch_port.MACHINES) > restarts_before


def test_an_expired_resource_version_relists(
    fake_api: FakeApiServer, namespace: str, api_client: kube.ApiClient, collected: Collected,
    start_watch: Callable[[ResourceWatch], ResourceWatch],
) -> None:
    create_machine(fake_api, namespace, "m1")
    create_machine(fake_api, namespace, "m2")
    start_watch(watch.machine_watch(api_client, collected, namespace, **FAST))

    # Hold the reconnect back while changes happen and the history is compacted past the watch's version.
    fake_api.faults.delay("watch", "nodes", seconds=0.5, count=1)
    fake_api.faults.drop_watches()
    fake_api.store.delete(GROUP_VERSION, "nodes", "m2", namespace)  # only a relist can tell this one
    create_machine(fake_api, namespace, "m3")
    fake_api.faults.compact_history()

    wait_for(lambda: len(collected.lists) >= 2, what="a relist after 410 Gone")
    relisted = collected.lists[-1]
    assert _names(relisted) == {"m1", "m3"}
    assert int(relisted.resource_version) >= int(collected.lists[0].resource_version)


def test_bookmarks_move_the_resume_point(
    fake_api: FakeApiServer, namespace: str, api_client: kube.ApiClient, collected: Collected,
    start_watch: Callable[[ResourceWatch], ResourceWatch],
) -> None:
    resource_watch = start_watch(watch.machine_watch(api_client, collected, namespace, **FAST))
    listed_version = int(resource_watch.resource_version)
    # A change outside the watched namespace moves the global resourceVersion; only a bookmark tells the watch.
    fake_api.store.create("v1", "configmaps", {"metadata": {"name": "elsewhere"}}, "default")
    try:
        wait_for(lambda: int(resource_watch.resource_version) > listed_version, what="a bookmark")
    finally:
        fake_api.store.delete("v1", "configmaps", "elsewhere", "default")
    assert collected.events == []


def test_resync_relists_periodically(
    fake_api: FakeApiServer, namespace: str, api_client: kube.ApiClient, collected: Collected,
    start_watch: Callable[[ResourceWatch], ResourceWatch],
) -> None:
    create_machine(fake_api, namespace, "m1")
    start_watch(watch.machine_watch(api_client, collected, namespace, resync_seconds=0.3, **FAST))
    create_machine(fake_api, namespace, "m2")

    wait_for(lambda: len(collected.lists) >= 2, what="a periodic relist")
    assert _names(collected.lists[-1]) == {"m1", "m2"}
    assert collected.events == [(WatchEventType.ADDED, "m2")], "a resync is a relist, not a replay"


def test_server_errors_make_the_watch_back_off_then_recover(
    fake_api: FakeApiServer, namespace: str, api_client: kube.ApiClient, collected: Collected,
    start_watch: Callable[[ResourceWatch], ResourceWatch],
) -> None:
    create_machine(fake_api, namespace, "m1")
    fake_api.faults.fail("list", "nodes", count=3, code=500)
    lists_before = fake_api.faults.count("list", "nodes")

    resource_watch = start_watch(watch.machine_watch(api_client, collected, namespace, **FAST))

    assert resource_watch.failures == 3
    assert fake_api.faults.count("list", "nodes") - lists_before == 4, "three failures, one success, no spinning"
    assert _names(collected.lists[0]) == {"m1"}

    fake_api.faults.fail("watch", "nodes", count=3, code=500)
    watches_before = fake_api.faults.count("watch", "nodes")
    fake_api.faults.drop_watches()
    create_machine(fake_api, namespace, "m2")

    wait_for(lambda: collected.events == [(WatchEventType.ADDED, "m2")], what="recovery after failed watches")
    assert fake_api.faults.count("watch", "nodes") - watches_before == 4
    assert resource_watch.failures >= 6


def test_stop_ends_an_open_stream_promptly(
    fake_api: FakeApiServer, namespace: str, api_client: kube.ApiClient, collected: Collected
) -> None:
    resource_watch = watch.machine_watch(api_client, collected, namespace, watch_timeout_seconds=300)
    resource_watch.start()
    assert resource_watch.wait_synced(5.0)
    wait_for(lambda: resource_watch.watches == 1, what="the watch to open")

    resource_watch.stop(timeout=2.0)

    assert not any(t.name == f"kube-watch-{watch_port.MACHINES}" for t in threading.enumerate())


def test_a_failing_sink_does_not_end_the_watch(
    fake_api: FakeApiServer, namespace: str, api_client: kube.ApiClient,
    start_watch: Callable[[ResourceWatch], ResourceWatch],
) -> None:
    received: list[str] = []

    def flaky_sink(output: WatchOutput) -> None:
        if isinstance(output, WatchEvent):
            received.append(output.object["metadata"]["name"])
            if len(received) == 1:
                raise RuntimeError("consumer bug")

    start_watch(watch.machine_watch(api_client, flaky_sink, namespace, **FAST))
    create_machine(fake_api, namespace, "m1")
    create_machine(fake_api, namespace, "m2")

    wait_for(lambda: received == ["m1", "m2"], what="events after the sink failed")


def test_repeated_drops_of_a_live_stream_do_not_grow_the_back_off(
    fake_api: FakeApiServer, namespace: str, api_client: kube.ApiClient, collected: Collected,
    start_watch: Callable[[ResourceWatch], ResourceWatch],
) -> None:
    # A stream that delivered events and then broke was healthy: its retry starts over from the initial
    # back-off. Doubling on every drop left the operator blind for up to max_backoff after a few drops.
    resource_watch = start_watch(watch.machine_watch(api_client, collected, namespace, **FAST))
    waits: list[float] = []
    real_back_off = resource_watch._back_off

    def recording_back_off(backoff: float, server_asked: float | None = None) -> None:
        waits.append(backoff)
        real_back_off(backoff, server_asked)

    resource_watch._back_off = recording_back_off  # type: ignore[method-assign]
    for index in range(4):
        create_machine(fake_api, namespace, f"m{index}")
        wait_for(lambda index=index: (WatchEventType.ADDED, f"m{index}") in collected.events, what=f"event {index}")
        fake_api.faults.drop_watches()
    create_machine(fake_api, namespace, "last")
    wait_for(lambda: (WatchEventType.ADDED, "last") in collected.events, what="the last event")
    assert waits, "the drops never reached the retry path"
    assert set(waits) == {FAST["initial_backoff"]}


def test_a_watch_that_lost_the_server_relists_on_its_return_and_the_outage_is_told_once(
    collected: Collected, caplog: pytest.LogCaptureFixture
) -> None:
    # Its own fake API, since this one goes away: stopped, the port refuses connections as a rebooting control
    # plane's does; started again, it listens on the same port with everything it stored.
    with FakeApiServer(host="127.0.0.1", port=0, bookmark_interval=0.2) as fake_api:
        for crd in render_crds():
            fake_api.store.create("apiextensions.k8s.io/v1", "customresourcedefinitions", crd)
        fake_api.store.create("v1", "namespaces", {"metadata": {"name": "outage"}})
        create_machine(fake_api, "outage", "m1")
        configuration = kube.Configuration()
        configuration.host = fake_api.url
        reachability = ApiReachability(fake_api.url, settle_seconds=5.0)
        with kube.ApiClient(configuration) as api_client, caplog.at_level(logging.INFO):
            resource_watch = watch.machine_watch(api_client, collected, "outage", reachability=reachability, **FAST)
            resource_watch.start()
            try:
                assert resource_watch.wait_synced(5.0)
                fake_api.stop()
                wait_for(lambda: not reachability.reachable, what="the outage to be noticed")
                wait_for(lambda: resource_watch.failures >= 3, what="a few failed reconnects")
                create_machine(fake_api, "outage", "m2")  # while nobody can watch
                fake_api.start()

                wait_for(lambda: len(collected.lists) == 2, what="a relist after the return")
                wait_for(lambda: reachability.settled, what="the return to be told")
            finally:
                resource_watch.stop()
                reachability.close()

    assert _names(collected.lists[-1]) == {"m1", "m2"}, "the relist holds what happened meanwhile"
    told = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "kubeapi.reachability"]
    assert [level for level, _ in told] == ["WARNING", "INFO"], told
    assert told[1][1].endswith("watches relisted: machines; no write retried; nothing missed")
    assert [r for r in caplog.records if r.name == "kubeapi.watch" and r.levelno >= logging.WARNING] == []
