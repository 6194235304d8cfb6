"""Leader election on a Lease in the fake API: one leader at a time, hand-over on stop, take-over on expiry,
stepping down when renewals fail. Short timings (a lease of about a second) keep the tests fast."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client as kube

from kubeapi.leader import LeaderElector, format_micro_time, parse_time
from sim.fakeapi import FakeApiServer
from tests.support.polling import wait_for

LEASE = "homelab-autoscaler"


class Transitions:
    """The callbacks of one elector, recorded in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.log: list[str] = []

    def started(self) -> None:
        with self._lock:
            self.log.append("started")

    def stopped(self) -> None:
        with self._lock:
            self.log.append("stopped")


@pytest.fixture
def electors(api_client: kube.ApiClient, namespace: str) -> Iterator[Callable[..., tuple[LeaderElector, Transitions]]]:
    made: list[LeaderElector] = []

    def make(identity: str, **timings: Any) -> tuple[LeaderElector, Transitions]:
        transitions = Transitions()
        options: dict[str, Any] = {"lease_seconds": 1.0, "renew_seconds": 0.2, "retry_seconds": 0.05, **timings}
        elector = LeaderElector(
            api_client, namespace, LEASE, identity,
            on_started_leading=transitions.started, on_stopped_leading=transitions.stopped, **options,
        )
        made.append(elector)
        return elector, transitions

    yield make
    for elector in made:
        elector.stop(timeout=5.0)


def _holder(fake_api: FakeApiServer, namespace: str) -> str | None:
    leases = fake_api.store.list("coordination.k8s.io/v1", "leases", namespace)
    return leases[0]["spec"].get("holderIdentity") if leases else None


def test_of_two_candidates_exactly_one_leads(
    fake_api: FakeApiServer, namespace: str, electors: Callable[..., tuple[LeaderElector, Transitions]]
) -> None:
    first, first_log = electors("replica-a")
    second, second_log = electors("replica-b")
    first.start()
    second.start()

    leader = wait_for(lambda: next((e for e in (first, second) if e.is_leader), None), what="a leader")
    follower = second if leader is first else first
    wait_for(lambda: leader.is_leader and not follower.is_leader and _holder(fake_api, namespace), what="steady")

    assert _holder(fake_api, namespace) == leader.identity
    assert (first_log.log, second_log.log).count(["started"]) == 1
    assert [] in (first_log.log, second_log.log)


def test_stopping_the_leader_hands_over_at_once(
    fake_api: FakeApiServer, namespace: str, electors: Callable[..., tuple[LeaderElector, Transitions]]
) -> None:
    # A long lease: only the release on stop can explain a quick hand-over.
    first, first_log = electors("replica-a", lease_seconds=60.0, renew_seconds=0.2)
    first.start()
    wait_for(lambda: first.is_leader, what="the first leader")
    second, second_log = electors("replica-b", lease_seconds=60.0, renew_seconds=0.2)
    second.start()

    first.stop()

    assert not first.is_leader
    assert first_log.log == ["started", "stopped"]
    wait_for(lambda: second.is_leader, timeout=3.0, what="the follower to take over")
    assert second_log.log == ["started"]
    assert _holder(fake_api, namespace) == "replica-b"


def test_a_leader_asked_to_stop_says_so_without_a_warning(
    electors: Callable[..., tuple[LeaderElector, Transitions]], caplog: pytest.LogCaptureFixture
) -> None:
    # A rolling update stops the leader every time; only a leadership that was lost deserves a WARNING.
    elector, _ = electors("replica-a")
    elector.start()
    wait_for(lambda: elector.is_leader, what="leadership")

    with caplog.at_level(logging.INFO, logger="kubeapi.leader"):
        elector.stop()

    said = [(record.levelname, record.getMessage()) for record in caplog.records if record.name.endswith("leader")]
    assert ("INFO", "leader election: replica-a stops leading (stopping)") in said
    assert [message for level, message in said if level != "INFO"] == []


def test_a_crashed_leaders_lease_is_taken_over_once_expired(
    fake_api: FakeApiServer, namespace: str, electors: Callable[..., tuple[LeaderElector, Transitions]]
) -> None:
    now = datetime.now(UTC)
    fake_api.store.create("coordination.k8s.io/v1", "leases", {
        "metadata": {"name": LEASE},
        "spec": {"holderIdentity": "crashed-replica", "leaseDurationSeconds": 1,
                 "acquireTime": format_micro_time(now), "renewTime": format_micro_time(now), "leaseTransitions": 3},
    }, namespace)
    candidate, transitions = electors("replica-b")
    candidate.start()

    wait_for(lambda: candidate.is_leader, timeout=3.0, what="take-over after the lease expired")
    assert transitions.log == ["started"]

    lease = fake_api.store.list("coordination.k8s.io/v1", "leases", namespace)[0]["spec"]
    assert lease["holderIdentity"] == "replica-b"
    assert lease["leaseTransitions"] == 4
    renewed = parse_time(lease["renewTime"])
    assert renewed is not None
    assert renewed >= now + timedelta(seconds=1), "taken only after renewTime + leaseDurationSeconds"


def test_a_live_leaders_lease_is_respected(
    fake_api: FakeApiServer, namespace: str, electors: Callable[..., tuple[LeaderElector, Transitions]]
) -> None:
    first, _ = electors("replica-a", lease_seconds=60.0, renew_seconds=0.2)
    first.start()
    wait_for(lambda: first.is_leader, what="the first leader")
    # The second candidate's clock runs 30 s ahead: still inside the 60 s lease, so it must wait.
    second, second_log = electors("replica-b", lease_seconds=60.0, renew_seconds=0.2,
                                  clock=lambda: datetime.now(UTC) + timedelta(seconds=30))
    reads_before = fake_api.faults.count("get", "leases")
    second.start()
    wait_for(lambda: fake_api.faults.count("get", "leases") - reads_before > 10, what="several attempts")

    assert first.is_leader
    assert not second.is_leader
    assert second_log.log == []


def test_a_leader_that_cannot_renew_steps_down_and_comes_back(
    fake_api: FakeApiServer, namespace: str, electors: Callable[..., tuple[LeaderElector, Transitions]]
) -> None:
    elector, log = electors("replica-a")
    elector.start()
    wait_for(lambda: elector.is_leader, what="leadership")

    fake_api.faults.fail("update", "leases", count=1_000, code=500)
    wait_for(lambda: log.log == ["started", "stopped"], what="stepping down")
    assert not elector.is_leader

    fake_api.faults.clear()
    wait_for(lambda: log.log == ["started", "stopped", "started"], what="leading again")
    assert elector.is_leader


def test_a_leader_whose_lease_was_taken_steps_down(
    fake_api: FakeApiServer, namespace: str, electors: Callable[..., tuple[LeaderElector, Transitions]]
) -> None:
    elector, log = electors("replica-a", lease_seconds=60.0, renew_seconds=0.1)
    elector.start()
    wait_for(lambda: elector.is_leader, what="leadership")

    lease = fake_api.store.list("coordination.k8s.io/v1", "leases", namespace)[0]
    lease["spec"]["holderIdentity"] = "usurper"
    lease["spec"]["renewTime"] = format_micro_time(datetime.now(UTC))
    fake_api.store.update("coordination.k8s.io/v1", "leases", lease, namespace)

    wait_for(lambda: log.log == ["started", "stopped"], what="stepping down")
    assert not elector.is_leader
    assert _holder(fake_api, namespace) == "usurper"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-03-01T10:00:00.123456Z", datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC), id="micro"),
        pytest.param("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC), id="seconds"),
        pytest.param("", None, id="empty"),
        pytest.param("yesterday", None, id="garbage"),
    ],
)
def test_parse_time(text: str, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_micro_time_round_trips() -> None:
    moment = datetime(2026, 3, 1, 10, 0, 0, 5, tzinfo=UTC)
    assert format_micro_time(moment) == "2026-03-01T10:00:00.000005Z"
    assert parse_time(format_micro_time(moment)) == moment
