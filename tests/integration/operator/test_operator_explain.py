"""`homelab-autoscaler explain` on a live homelab: a machine whose boot failed, explained from the API objects and
the operator's `/metrics` the way a person would ask about it, in text and in JSON."""

from __future__ import annotations

import json

import pytest

from homelab_autoscaler.cli import build_parser
from homelab_autoscaler.commands.explain import run
from tests.support.operator_homelab import NAMESPACE, Homelab, simulated
from tests.support.polling import wait_for

INSTANCE = "homelab://homelab/m1"


def explain(capsys: pytest.CaptureFixture[str], homelab: Homelab, *extra: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(
        ["explain", "m1", "--kubeconfig", str(homelab.kubeconfig), "-n", NAMESPACE, *extra]
    )
    code = run(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_failed_boot_is_explained_with_its_cooldown_job_and_what_ca_asked(
    homelab: Homelab, capsys: pytest.CaptureFixture[str]
) -> None:
    homelab.add_group(max_size=1, failurePolicy={"quarantineAfter": 3, "cooldownBase": "10m", "cooldownCap": "30m"})
    homelab.add_machine("m1")
    homelab.simulate(simulated("m1", fail_boot=True))
    running = homelab.start_operator()
    running.increase_size(1)
    homelab.wait_state("m1", "BootFailed")
    running.delete_nodes(INSTANCE)  # CA lets the failed creation go
    homelab.wait_state("m1", "Shutdown")
    wait_for(lambda: "ScaleDown" in str(homelab.fake.store.list("v1", "events", NAMESPACE)), what="the group's event")
    metrics_url = f"http://127.0.0.1:{running.operator.metrics_port}/metrics"

    code, out, err = explain(capsys, homelab, "--metrics-url", metrics_url, "-o", "json")

    assert (code, err) == (0, "")
    document = json.loads(out)
    assert (document["state"], document["group"]) == ("Shutdown", "workers")
    assert "1 boot(s) failed in a row (1 of 3 allowed before quarantine)" in " ".join(document["why"])
    assert document["next"][0].startswith("It cools down after its failed boot until ")
    assert "not chosen for a boot before then" in document["next"][0]
    (job,) = document["jobs"]
    assert (job["name"], job["operation"]) == ("m1-startup-1", "startup")
    assert job["outcome"].startswith("failed")
    assert [event["reason"] for event in document["autoscaler"]] == ["ScaleDown", "ScaleUp"]
    assert "BootJobFailed" in {event["reason"] for event in document["events"]}
    assert "The operator holds it as Shutdown." in document["operator"]

    code, text, _err = explain(capsys, homelab)
    assert code == 0
    assert "What happens next:\n  It cools down after its failed boot until" in text
    assert "The operator's metrics were not read: no --metrics-url given" in text


def test_an_unknown_machine_is_an_error_on_stderr(homelab: Homelab, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = explain(capsys, homelab)
    assert (code, out) == (1, "")
    assert err == "homelab-autoscaler explain: no Node resource 'm1' in namespace homelab\n"
