"""Two replicas with leader election: exactly one acts, and the other takes over when it stops or dies.

Both operators run in this process against one fake API with short Lease timings (2 s lease, renewed every
0.5 s), each with its own pod, gRPC port and health endpoint, as two pods of the Deployment would.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from homelab_autoscaler.operator import LEADER_LABEL
from tests.support.operator_homelab import (
    CREATING,
    OPERATOR_NAMESPACE,
    RUNNING,
    Homelab,
    RunningOperator,
    simulated,
)
from tests.support.polling import wait_for

LEASE = "homelab-autoscaler"


def _elected(homelab: Homelab, pod: str) -> RunningOperator:
    homelab.fake.store.create("v1", "pods", {
        "metadata": {"name": pod, "namespace": OPERATOR_NAMESPACE},
        "spec": {"containers": [{"name": "operator", "image": "homelab-autoscaler"}]},
    }, OPERATOR_NAMESPACE)
    return homelab.start_operator(
        wait_acting=False,
        leader_elect=True,
        leader_election_lease=LEASE,
        leader_election_lease_seconds=2.0,
        leader_election_renew_seconds=0.5,
        leader_election_retry_seconds=0.2,
        pod_name=pod,
        pod_namespace=OPERATOR_NAMESPACE,
    )


def _serving(replica: RunningOperator) -> bool:
    answer = health_pb2_grpc.HealthStub(replica.channel).Check(health_pb2.HealthCheckRequest(service=""))
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def _labelled(homelab: Homelab, pod: str) -> bool:
    labels = homelab.fake.store.get("v1", "pods", pod, OPERATOR_NAMESPACE)["metadata"].get("labels") or {}
    return labels.get(LEADER_LABEL) == "true"


def _http_status(replica: RunningOperator, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{replica.operator.metrics_port}{path}", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _lease(homelab: Homelab) -> dict[str, Any]:
    return homelab.fake.store.get("coordination.k8s.io/v1", "leases", LEASE, OPERATOR_NAMESPACE)


@pytest.fixture
def machine_booting_slowly(homelab: Homelab) -> Homelab:
    homelab.add_group(max_size=1)
    homelab.add_machine("m1")
    homelab.simulate(simulated("m1"), job_seconds=1.0)
    return homelab


def test_only_the_leader_acts_and_a_standby_takes_over_when_it_stops(machine_booting_slowly: Homelab) -> None:
    homelab = machine_booting_slowly
    leader = _elected(homelab, "op-a")
    wait_for(lambda: leader.operator.wait_acting(0.1), what="the first replica to lead")
    standby = _elected(homelab, "op-b")
    wait_for(lambda: _http_status(standby, "/readyz") == 200, what="the standby to be ready")

    assert _serving(leader)
    assert not _serving(standby)
    assert (_http_status(leader, "/readyz/leader"), _http_status(standby, "/readyz/leader")) == (200, 503)
    assert _labelled(homelab, "op-a")
    assert not _labelled(homelab, "op-b")
    assert standby.operator.read_model.groups() == ()
    with pytest.raises(grpc.RpcError) as refused:
        standby.increase_size(1)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    leader.increase_size(1)
    wait_for(lambda: homelab.job_names("m1") == ["m1-startup-1"], what="one startup Job")

    homelab.stop_operator(leader)  # graceful: releases the Lease while the machine is still booting

    assert not _lease(homelab)["spec"].get("holderIdentity") or _lease(homelab)["spec"]["holderIdentity"] == "op-b"
    wait_for(lambda: standby.operator.wait_acting(0.1), what="the standby to take over")
    assert _serving(standby)
    assert _labelled(homelab, "op-b")
    assert not _labelled(homelab, "op-a")
    assert [i.status.instanceState for i in standby.nodes()] in ([CREATING], [RUNNING])
    homelab.wait_state("m1", "Ready")
    assert homelab.created_jobs("m1") == ["m1-startup-1"]  # adopted by the new leader, never created again
    assert standby.target_size() == 1


def test_a_standby_takes_over_from_a_leader_that_died_once_its_lease_expires(machine_booting_slowly: Homelab) -> None:
    homelab = machine_booting_slowly
    leader = _elected(homelab, "op-a")
    wait_for(lambda: leader.operator.wait_acting(0.1), what="the first replica to lead")
    standby = _elected(homelab, "op-b")
    leader.increase_size(1)
    wait_for(lambda: homelab.job_names("m1") == ["m1-startup-1"], what="one startup Job")

    homelab.stop_operator(leader, kill=True)  # the Lease is left to expire

    assert _lease(homelab)["spec"]["holderIdentity"] == "op-a"
    wait_for(lambda: standby.operator.wait_acting(0.1), what="the standby to take over after the lease expired")
    assert _lease(homelab)["spec"]["holderIdentity"] == "op-b"
    homelab.wait_state("m1", "Ready")
    assert homelab.created_jobs("m1") == ["m1-startup-1"]


def test_a_leader_that_loses_its_lease_stops_acting_at_once(machine_booting_slowly: Homelab) -> None:
    homelab = machine_booting_slowly
    leader = _elected(homelab, "op-a")
    wait_for(lambda: leader.operator.wait_acting(0.1), what="the replica to lead")
    assert leader.operator.read_model.groups() != ()

    # Someone else takes the Lease (as after a network partition that outlasted the renew deadline).
    lease = _lease(homelab)
    homelab.fake.store.update("coordination.k8s.io/v1", "leases", {
        **lease, "spec": {**lease["spec"], "holderIdentity": "intruder"},
    }, OPERATOR_NAMESPACE)

    wait_for(lambda: not leader.operator.acting, what="the replica to stop acting")
    assert not _serving(leader)
    # Acting stops in the elector's own call; the view of the groups goes when the term has ended, just after.
    wait_for(lambda: leader.operator.read_model.groups() == (), what="the replica to forget its groups")
    wait_for(lambda: not _labelled(homelab, "op-a"), what="the leader label to be removed")
    with pytest.raises(grpc.RpcError) as refused:
        leader.increase_size(1)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert _http_status(leader, "/readyz") == 200  # still able to serve if elected again
    assert _http_status(leader, "/readyz/leader") == 503
    assert _http_status(leader, "/healthz") == 200

    # The intruder never renews: once its Lease expires the replica leads again, from a fresh inventory.
    wait_for(lambda: leader.operator.wait_acting(0.1), what="the replica to lead again")
    assert _labelled(homelab, "op-a")
    assert leader.target_size() == 0


def test_a_stop_that_fails_half_way_still_releases_the_lease_and_closes_the_gateway(
    machine_booting_slowly: Homelab, caplog: pytest.LogCaptureFixture
) -> None:
    homelab = machine_booting_slowly
    leader = _elected(homelab, "op-a")
    wait_for(lambda: leader.operator.wait_acting(0.1), what="the replica to lead")
    term = leader.operator.acting_term
    assert term is not None
    failing_end = term.end

    def end_then_fail(*args: Any, **kwargs: Any) -> None:
        failing_end(*args, **kwargs)
        raise RuntimeError("the writer could not be joined")

    term.end = end_then_fail  # type: ignore[method-assign]  # a failure inside the stop, after the actors ended
    grpc_port = leader.operator.grpc_port

    homelab.stop_operator(leader)

    assert not _lease(homelab)["spec"].get("holderIdentity"), "a standby would wait out the whole lease"
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel, pytest.raises(grpc.RpcError) as closed:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
    assert closed.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert any(
        "stopping the acting term failed" in record.getMessage() and record.levelname == "ERROR"
        for record in caplog.records
    )
