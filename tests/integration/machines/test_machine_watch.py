"""How the simulator follows Jobs: history is not a signal, real Job controllers are respected, and dropped
watches, expired resourceVersions and failing requests are survived without missing a Job."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client as kube_client
from machine_lab import Lab

from sim.machines import PowerState
from tests.support.polling import wait_for

COMPLETE_STATUS = {
    "status": {
        "succeeded": 1,
        "startTime": "2025-01-01T00:00:00Z",
        "completionTime": "2025-01-01T00:00:05Z",
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached"},
        ],
    }
}


def complete_job_as_a_real_controller_would(lab: Lab, name: str) -> None:
    lab.batch.patch_namespaced_job_status(
        name, lab.namespace, COMPLETE_STATUS, _content_type="application/merge-patch+json"
    )


def test_jobs_finished_before_the_simulator_started_are_history_not_power_signals(lab: Lab) -> None:
    machine = lab.machine("box-1")
    old_job = lab.create_job(machine, "startup", attempt=1)
    complete_job_as_a_real_controller_would(lab, old_job)

    simulator = lab.simulate(machine)
    handle = simulator.machine("box-1")
    # Processed, not merely not yet reached: the simulator has seen the old Job and has nothing left to do.
    wait_for(lambda: simulator.has_seen(old_job), what="the simulator to see the finished Job")
    assert simulator.wait_idle(timeout=5)
    assert handle.state is PowerState.OFF
    assert handle.boots == 0

    lab.create_job(machine, "startup", attempt=2)
    lab.ready_node(machine)


def test_when_not_playing_the_job_controller_the_jobs_own_success_powers_the_machine(lab: Lab) -> None:
    machine = lab.machine("box-1")
    simulator = lab.simulate(machine, complete_jobs=False)
    handle = simulator.machine("box-1")
    name = lab.create_job(machine, "startup")

    wait_for(lambda: simulator.has_seen(name), what="the simulator to see the new Job")
    assert simulator.wait_idle(timeout=5)
    untouched = lab.job(name)
    assert untouched.status is None or untouched.status.start_time is None
    assert lab.core.list_namespaced_pod(lab.namespace).items == []
    assert handle.state is PowerState.OFF

    complete_job_as_a_real_controller_would(lab, name)

    lab.ready_node(machine)


def test_jobs_created_after_all_watches_are_dropped_are_still_handled(lab: Lab) -> None:
    machine = lab.machine("box-1")
    lab.simulate(machine)

    lab.fake_api.faults.drop_watches()
    lab.create_job(machine, "startup")

    lab.ready_node(machine)


def test_an_expired_resource_version_makes_the_simulator_relist_and_miss_nothing(lab: Lab) -> None:
    machine = lab.machine("box-1")
    simulator = lab.simulate(machine)
    assert simulator.job_lists == 1
    lab.core.create_namespaced_config_map(
        lab.namespace, kube_client.V1ConfigMap(metadata=kube_client.V1ObjectMeta(name="bump-the-version"))
    )

    lab.fake_api.faults.compact_history()
    lab.fake_api.faults.drop_watches()
    lab.create_job(machine, "startup")

    lab.ready_node(machine)
    wait_for(lambda: simulator.job_lists >= 2, what="a relist after 410 Gone")


@pytest.mark.parametrize(
    ("verb", "resource", "code"),
    [
        pytest.param("list", "jobs", 500, id="job-list-fails"),
        pytest.param("patch", "jobs/status", 500, id="job-status-write-fails"),
        pytest.param("create", "pods", 503, id="pod-create-throttled"),
        pytest.param("create", "nodes", 503, id="node-registration-throttled"),
        pytest.param("patch", "nodes/status", 429, id="node-status-write-throttled"),
        pytest.param("create", "leases", 500, id="lease-create-fails"),
    ],
)
def test_failing_requests_are_retried_until_the_machine_is_up(
    lab: Lab, verb: str, resource: str, code: int
) -> None:
    machine = lab.machine("box-1")
    lab.fake_api.faults.fail(verb, resource, count=2, code=code)
    lab.simulate(machine)

    job = lab.finished_job(lab.create_job(machine, "startup"))

    assert job.status.succeeded == 1
    lab.ready_node(machine)
    wait_for(lambda: lab.lease_renew_time(machine), what="the node Lease")


def test_machines_in_several_namespaces_are_followed_by_one_watch(lab: Lab) -> None:
    other_namespace = f"sim-{uuid.uuid4().hex[:8]}"
    lab.fake_api.store.create("v1", "namespaces", {"metadata": {"name": other_namespace}})
    here = lab.machine("box-1")
    there = lab.machine("box-1", namespace=other_namespace, kubernetes_node_name=f"{other_namespace}-box-1")
    simulator = lab.simulate(here, there)

    lab.create_job(here, "startup")

    lab.ready_node(here)
    assert simulator.machine("box-1", namespace=other_namespace).state is PowerState.OFF
    assert lab.node(there) is None
