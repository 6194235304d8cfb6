"""kube-apiserver killed in the middle of a scale-up and started again: the operator (a `homelab-autoscaler run`
process) says so in two lines, counts the outage in its metrics, keeps leading through a short outage, steps
down through a long one and resumes cleanly, and finishes the work either way.

Real etcd and kube-apiserver from HOMELAB_K8S_BIN (skipped with one line without them). A person reading the
operator's log should find one WARNING when the server went away and one INFO when it came back, saying how long
it was gone, which watches relisted and how many writes waited; not a WARNING per watch per retry, and none of
urllib3's own `Retrying (Retry(total=2 ...` lines.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from sim.controlplane import Binaries, free_ports
from tests.integration.outage.outage_support import LogLine, outage_homelab
from tests.support.control_plane import running_control_plane

LEASE_ARGS = (
    "--leader-elect",
    "--leader-election-lease-seconds=20",
    "--leader-election-renew-seconds=2",
    "--leader-election-retry-seconds=1",
)
"""Leader election on, with a renew deadline (20 - 2 = 18 s) longer than the outage: leadership must survive it."""
REACHABILITY = "kubeapi.reachability"
GROUP_ACTOR = "actors.group_actor"
LEADER = "kubeapi.leader"


def test_an_api_server_restart_during_a_boot_is_one_warning_one_info_and_nothing_lost(
    request: pytest.FixtureRequest, tmp_path: Path, binaries: Binaries
) -> None:
    with (
        running_control_plane(
            request, tmp_path, binaries=binaries, controller_manager=False, scheduler=False
        ) as control_plane,
        outage_homelab(control_plane, tmp_path) as homelab,
    ):
        homelab.open({"m1": 2, "m2": 1}, boot_seconds=4.0)
        # With the admission webhook on, as installed: its caches are three more watches that live through it.
        (webhook_port,) = free_ports(1)
        homelab.add_webhook_configuration(webhook_port)
        homelab.start_operator(
            request, *LEASE_ARGS, f"--webhook-address=127.0.0.1:{webhook_port}",
            f"--webhook-cert-dir={tmp_path / 'webhook'}",
        )
        homelab.wait(lambda: homelab.http("/readyz/leader")[0] == 200, "the operator to lead")

        assert homelab.increase_size() == grpc.StatusCode.OK
        homelab.wait(lambda: homelab.startup_jobs("m1"), "m1's startup Job")
        offset = homelab.log_offset()
        homelab.kill_api_server()
        # While the server is down, CA asks for the second machine: its status and its Job must wait for the
        # server and then be written in order, not fail.
        during = homelab.increase_size(timeout=5.0)
        assert homelab.metric("homelab_autoscaler_api_reachable") == 0.0
        assert homelab.metric("homelab_autoscaler_api_outages_total") == 1.0
        assert homelab.metric("homelab_autoscaler_leader") == 1.0
        homelab.restart_api_server()

        homelab.wait(lambda: homelab.state("m1") == "Ready", "m1's boot to finish after the outage")
        homelab.wait(lambda: homelab.state("m2") == "Ready", "m2, asked for during the outage, to boot")
        homelab.wait(
            lambda: any(line.logger == REACHABILITY and line.level == "INFO" for line in homelab.log_since(offset)),
            "the operator to say the API server is back",
        )
        lines = homelab.log_since(offset)
        raw = homelab.raw_log_since(offset)

        loud = [f"{line.level} {line.logger}: {line.message}" for line in lines if line.level != "INFO"]
        outage = [line for line in loud if line.startswith(f"WARNING {REACHABILITY}: ")]
        assert len(outage) == 1, "one WARNING for the outage:\n" + "\n".join(loud)
        assert outage[0].startswith(f"WARNING {REACHABILITY}: API server {control_plane.server} unreachable since ")
        # Besides it, only CA's answer during the outage is worth a WARNING: the size change was not stored in time.
        assert [line for line in loud if line not in outage] == [
            line for line in loud if line.startswith(f"WARNING {GROUP_ACTOR}: ") and "within 3 s" in line
        ], "\n".join(loud)
        assert len(loud) <= 2, "\n".join(loud)
        back = [line.message for line in lines if line.logger == REACHABILITY and line.level == "INFO"]
        assert len(back) == 1, back
        assert back[0].startswith(f"API server {control_plane.server} back at ")
        assert (
            "watches relisted: admission-groups, admission-kube-nodes, admission-machines, groups, kube-nodes, "
            "machines, power-jobs;"
        ) in back[0]
        assert "nothing missed" in back[0]
        assert "Retrying (" not in raw, "urllib3's own retry warnings reach the log"
        assert during in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED)

        assert homelab.metric("homelab_autoscaler_api_reachable") == 1.0
        assert homelab.metric("homelab_autoscaler_api_outages_total") == 1.0
        assert homelab.metric("homelab_autoscaler_leader") == 1.0, "an outage shorter than the lease keeps the leader"
        assert "stops leading" not in raw
        # The machine whose writes waited says so once; no write is reported as failed.
        delayed = homelab.wait(lambda: homelab.events("WritesDelayed"), "the WritesDelayed Event")
        assert "m2" in [event["involvedObject"]["name"] for event in delayed]
        assert sorted({event["involvedObject"]["name"] for event in delayed}) == sorted(
            event["involvedObject"]["name"] for event in delayed
        ), "one Event per machine"
        assert [event["count"] for event in delayed] == [1] * len(delayed), "once per outage, not per attempt"
        assert homelab.events("WriteFailed") == []
        assert homelab.startup_jobs("m1") == ["m1-startup-1"], "no duplicate Job after the outage"
        assert homelab.startup_jobs("m2") == ["m2-startup-1"], "the Job asked for during the outage, once"



SHORT_LEASE_ARGS = (
    "--leader-elect",
    "--leader-election-lease-seconds=4",
    "--leader-election-renew-seconds=1",
    "--leader-election-retry-seconds=0.5",
)
"""A renew deadline of 4 - 1 = 3 s: an outage of several seconds outlasts it."""


def test_an_outage_longer_than_the_lease_stops_the_leader_acting_until_the_server_is_back(
    request: pytest.FixtureRequest, tmp_path: Path, binaries: Binaries
) -> None:
    with (
        running_control_plane(
            request, tmp_path, binaries=binaries, controller_manager=False, scheduler=False
        ) as control_plane,
        outage_homelab(control_plane, tmp_path) as homelab,
    ):
        homelab.open({"m1": 2, "m2": 1}, boot_seconds=1.0)
        homelab.start_operator(request, *SHORT_LEASE_ARGS)
        homelab.wait(lambda: homelab.http("/readyz/leader")[0] == 200, "the operator to lead")
        offset = homelab.log_offset()

        homelab.kill_api_server()
        homelab.wait(lambda: homelab.http("/readyz/leader")[0] == 503, "the leader to stop acting", timeout=10.0)
        status, body = homelab.http("/readyz/leader")
        assert (status, body.split(":")[0]) == (503, "standby"), body
        assert homelab.http("/readyz")[0] == 200, "a standby is still ready: it would stall rolling updates otherwise"
        assert homelab.metric("homelab_autoscaler_leader") == 0.0
        assert homelab.metric("homelab_autoscaler_api_reachable") == 0.0
        assert homelab.increase_size(timeout=5.0) == grpc.StatusCode.UNAVAILABLE, "no mutation while not leading"

        homelab.restart_api_server()
        homelab.wait(lambda: homelab.http("/readyz/leader")[0] == 200, "the operator to lead again")
        assert homelab.increase_size() == grpc.StatusCode.OK
        homelab.wait(lambda: homelab.state("m1") == "Ready", "a boot asked for after the return")
        homelab.wait(
            lambda: any(line.logger == REACHABILITY and line.level == "INFO" for line in homelab.log_since(offset)),
            "the operator to say the API server is back",
        )

        lines = homelab.log_since(offset)
        loud = [f"{line.level} {line.logger}: {line.message}" for line in lines if line.level != "INFO"]
        assert len(loud) == 2, "\n".join(loud)
        assert loud[0].startswith(f"WARNING {REACHABILITY}: API server {control_plane.server} unreachable since ")
        assert loud[1] == (
            f"WARNING {LEADER}: leader election: {_identity(lines)} stops leading "
            "(could not renew the lease before the renew deadline)"
        )
        [back] = [line.message for line in lines if line.logger == REACHABILITY and line.level == "INFO"]
        assert "nothing missed" in back, back
        assert "Retrying (" not in homelab.raw_log_since(offset)
        assert homelab.metric("homelab_autoscaler_leader") == 1.0
        assert homelab.metric("homelab_autoscaler_api_reachable") == 1.0
        assert homelab.metric("homelab_autoscaler_api_outages_total") == 1.0
        assert homelab.startup_jobs("m1") == ["m1-startup-1"]
        assert homelab.startup_jobs("m2") == []


def _identity(lines: list[LogLine]) -> str:
    for line in lines:
        if line.logger == LEADER and " now leads " in line.message:
            return line.message.split(": ", 1)[1].split(" ", 1)[0]
    return "?"
