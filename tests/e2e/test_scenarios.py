"""The user scenarios of tests/e2e/scenarios.py, each on the session's cluster: the homelab it describes, the
operator started as `homelab-autoscaler run` would start it, then its steps in order.

Every step's kubectl-level checks run on every cluster; its store-level checks run where the suite started the
fake API (--e2e-fake), which records every request that reached it for them.
"""

from __future__ import annotations

import pytest
from e2e_support import E2eHomelab, JobScript, failing_job, slow_job
from scenarios import SCENARIOS, Machine, Run, Scenario

from tests.support.operator_homelab import RequestLog


def _startup(machine: Machine, homelab: E2eHomelab) -> JobScript | None:
    if machine.fail_boot:
        return failing_job()
    if machine.slow_startup:
        return slow_job(homelab.pace.slow_job_seconds)
    return None


@pytest.mark.parametrize("scenario", [pytest.param(scenario, id=scenario.name) for scenario in SCENARIOS])
def test_scenario(homelab: E2eHomelab, scenario: Scenario) -> None:
    homelab.add_group(max_size=scenario.max_size, quarantine_after=scenario.quarantine_after)
    for machine in scenario.machines:
        homelab.add_machine(
            machine.name, priority=machine.priority, startup=_startup(machine, homelab), fail_boot=machine.fail_boot
        )
    homelab.start_simulator(job_seconds=homelab.pace.slow_job_seconds if scenario.slow_jobs else None)
    fake = homelab.cluster.fake
    requests = RequestLog()
    if fake is not None:
        fake.on_request.append(requests)
    try:
        run = Run(homelab, homelab.start_operator(), fake, requests)
        for number, step in enumerate(scenario.steps, start=1):
            try:
                step.act(run)
                step.sees(run)
                if fake is not None:
                    step.on_fake(run)
            except BaseException as error:
                error.add_note(f"in step {number} of {scenario.name}: {step.does}")
                raise
    finally:
        if fake is not None:
            fake.on_request.remove(requests)
