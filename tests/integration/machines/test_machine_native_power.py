"""A simulated machine switched by the operator's native drivers: Wake-on-LAN boots it, its IPMI BMC reads it
back and shuts it down, and its Kubernetes Node comes and goes as with power Jobs."""

from __future__ import annotations

import queue

from machine_lab import Lab, ready_condition

from actors.power_port import PowerAction, PowerOutcome, PowerRequest
from kubeapi.kube_client import KubeApi
from kubeapi.secret_reader import KubeSecretReader
from power_drivers.executor import PowerExecutor
from schemas.power import DriverName, PowerSpec, PowerState
from sim.machines import PowerState as MachineState
from sim.machines.native_power import NativePower

ANSWER_TIMEOUT = 30.0


def test_power_on_by_wake_on_lan_boots_the_machine_and_the_bmc_reads_it_back_and_shuts_it_down(lab: Lab) -> None:
    machine = lab.machine("box-1")
    simulator = lab.simulate(machine)
    handle = simulator.machine("box-1")
    api = KubeApi(lab.api_client)
    executor = PowerExecutor(tell=lambda reply_to, outcome: reply_to.put(outcome), secrets=KubeSecretReader(api))
    try:
        with NativePower([handle]) as native:
            native.create_credentials_secret(api, lab.namespace)
            power = PowerSpec.model_validate(native.spec_for("box-1", lab.namespace))

            def run(action: PowerAction, attempt: int = 1) -> PowerOutcome:
                answers: queue.Queue[PowerOutcome] = queue.Queue()
                executor.submit(PowerRequest(f"{lab.namespace}/box-1", action, attempt, power, 30.0, answers))
                return answers.get(timeout=ANSWER_TIMEOUT)

            assert run(PowerAction.READ_POWER_STATE).observed is PowerState.OFF
            on = run(PowerAction.POWER_ON)
            assert (on.succeeded, on.driver) == (True, DriverName.WAKE_ON_LAN)
            node = lab.ready_node(machine)
            assert node.metadata.name == machine.kubernetes_node_name
            assert run(PowerAction.READ_POWER_STATE, attempt=2).observed is PowerState.ON

            off = run(PowerAction.POWER_OFF)
            assert (off.succeeded, off.driver) == (True, DriverName.IPMI)
            ready = ready_condition(lab.not_ready_node(machine))
            assert ready is not None
            assert ready.status == "False"
            assert handle.wait_until(lambda m: m.state is MachineState.OFF, timeout=5)
            assert run(PowerAction.READ_POWER_STATE, attempt=3).observed is PowerState.OFF

            assert (handle.boots, handle.shutdowns) == (1, 1)
            assert native.bmcs[(lab.namespace, "box-1")].commands == ["soft"]
            assert native.password not in (on.message + off.message)
    finally:
        executor.close()
