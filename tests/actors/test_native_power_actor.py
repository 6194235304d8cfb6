"""The NodeActor with a power port: native power commands and readbacks go to the port, outcomes come back as events.

One NodeActor runs for real with the recording effect port, a clock the test moves and the fake power port playing
the machine's BMC (healthy, flaky, "on" but staying off, wrong credentials). What a user notices: the commands sent
(never twice for one attempt), the state reported to the group, the conditions and Events on the Node resource.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from actors import wiring
from actors.fsm import effects as fx
from actors.fsm.derive import KubeNodeObservation
from actors.fsm.events import PowerOffRequested, PowerOnRequested
from actors.metrics import REGISTRY
from actors.power_metrics import READBACK_AGE
from actors.power_port import PowerAction, PowerFailure
from actors.read_model import ReadModel
from actors.runtime import ActorRuntime
from actors.ticker_actor import Tick
from schemas import labels
from schemas.group import GroupSpec
from schemas.node import NodeState, NodeStatus, Operation, OperationKind
from schemas.power import CredentialsSecret, DriverName, Ipmi, PowerSpec, SecretKeySelector, Ssh, WakeOnLan
from tests.actors.test_node_actor import GroupAndSupervisorStandIn, OneMachine
from tests.support.actor_fakes import SNAPSHOT, WAIT, FakeClock, FakeEffectPort, make_node
from tests.support.power_fakes import FakePowerPort

IPMI = PowerSpec(ipmi=Ipmi(host="10.0.0.5", credentials=CredentialsSecret(name="bmc-m1")))
WOL_SSH = PowerSpec(
    wake_on_lan=WakeOnLan(mac_address="aa:bb:cc:dd:ee:ff"),
    ssh=Ssh(host="10.0.0.7", user="power", private_key=SecretKeySelector(name="ssh", key="id"), known_hosts="k"),
)
SPEC = GroupSpec(max_size=5, boot_timeout="10m")
KEY = "lab/m1"
READY_NODE = KubeNodeObservation(True, "homelab://lab/m1", SNAPSHOT)


class PoweredMachine(OneMachine):
    power: FakePowerPort
    ticks: int = 0

    def poll(self, seconds: float) -> None:
        """Move the clock and let every timer due fire (readbacks, timeouts); returns once all is handled.

        The ticker's own time only moves forward, so each poll jumps it further than any timer armed before.
        """
        self.clock.advance(seconds)
        self.ticks += 1
        self.runtime.tell(self.runtime.ticker, Tick(time.monotonic() + 1_000_000 * self.ticks))
        self.heard()
        self.heard()  # outcomes told by the port during the first round are handled before the second answer

    def status(self) -> NodeStatus:
        return [e.status for e in self.port.effects() if isinstance(e, fx.PatchStatus)][-1]

    def event_reasons(self) -> list[str]:
        return [event.reason for event in self.port.events()]


def _powered(runtime: ActorRuntime, name: str, port: FakePowerPort | None) -> Iterator[PoweredMachine]:
    effects, clock = FakeEffectPort(), FakeClock()
    effects.runtime = runtime
    if port is not None:
        port.tell = runtime.tell
    key = wiring.register(wiring.Wiring(ReadModel(), effects, clock, runtime.ticker, power=port))
    stand_in = runtime.create_actor(GroupAndSupervisorStandIn).result(WAIT)
    try:
        machine = PoweredMachine(runtime, effects, clock, key, stand_in, f"lab/{name[:40]}")
        if port is not None:
            machine.power = port
        yield machine
    finally:
        wiring.unregister(key)


@pytest.fixture
def machine(runtime: ActorRuntime, request: pytest.FixtureRequest) -> Iterator[PoweredMachine]:
    yield from _powered(runtime, request.node.name, FakePowerPort())


def test_a_native_boot_sends_one_power_on_reads_it_back_and_exports_the_readback_age(machine: PoweredMachine) -> None:
    machine.configure(make_node("m1", power=IPMI), spec=SPEC)
    machine.command(PowerOnRequested())
    machine.heard()
    assert machine.power.commands(KEY) == [(PowerAction.POWER_ON, 1)]
    assert machine.port.created_jobs() == []
    request = machine.power.requests[0]
    assert (request.machine_key, request.power, request.deadline_seconds) == (KEY, IPMI, 30.0)

    machine.poll(6)  # the fast readback of a machine being switched
    status = machine.status()
    assert status.power_readback is not None
    assert (status.power_readback.state.value, status.power_readback.driver) == ("On", DriverName.IPMI)
    assert machine.state() is NodeState.STARTING_UP
    machine.clock.advance(4)
    age = REGISTRY.get_sample_value(READBACK_AGE, {"group": machine.group_id, "node": "m1"})
    assert age == 4.0
    assert machine.power.commands(KEY) == [(PowerAction.POWER_ON, 1)], "never commanded twice"


def test_a_bmc_that_says_on_but_stays_off_gets_one_retry_then_the_boot_fails(machine: PoweredMachine) -> None:
    machine.power.bmc(KEY).stays_off = True
    machine.configure(make_node("m1", power=IPMI), spec=SPEC)
    machine.command(PowerOnRequested())
    machine.heard()
    for _ in range(30):  # readbacks every 5 s for 150 s: past two graces of 60 s, far before bootTimeout (10m)
        machine.poll(5)
    assert machine.power.commands(KEY) == [(PowerAction.POWER_ON, 1), (PowerAction.POWER_ON, 2)]
    assert machine.state() is NodeState.BOOT_FAILED
    assert "PowerOnRetry" in machine.event_reasons()
    assert machine.status().reason == "PowerOnNotObserved"


def test_wrong_credentials_fail_the_boot_with_an_event_naming_them(machine: PoweredMachine) -> None:
    machine.power.bmc(KEY).failure = PowerFailure.CREDENTIALS_REJECTED
    machine.configure(make_node("m1", power=IPMI), spec=SPEC)
    machine.command(PowerOnRequested())
    machine.heard()
    assert machine.state() is NodeState.BOOT_FAILED
    warning = next(e for e in machine.port.events() if e.reason == "PowerOnFailed")
    assert "(CredentialsRejected)" in warning.message
    assert "password" not in warning.message.lower()


def test_a_flaky_readback_sets_the_condition_once_and_clears_it_without_moving_the_machine(
    machine: PoweredMachine,
) -> None:
    ready = NodeStatus(state=NodeState.READY, since=machine.clock(), attempts=1, provider_id="homelab://lab/m1")
    machine.configure(make_node("m1", power=IPMI, status=ready), kube_node=READY_NODE, spec=SPEC)
    bmc = machine.power.bmc(KEY)
    bmc.on = True
    bmc.readback_failure = PowerFailure.TIMED_OUT
    machine.poll(301)
    machine.poll(301)
    failing = machine.status()
    condition = next(c for c in failing.conditions if c.type == labels.CONDITION_POWER_READBACK_FAILING)
    assert (condition.status.value, condition.reason) == ("True", "TimedOut")
    assert machine.event_reasons().count("PowerReadbackFailed") == 1
    assert machine.power.readbacks(KEY) == 2
    bmc.readback_failure = None
    machine.poll(301)
    cleared = machine.status()
    condition = next(c for c in cleared.conditions if c.type == labels.CONDITION_POWER_READBACK_FAILING)
    assert condition.status.value == "False"
    assert cleared.state is NodeState.READY


def test_a_hung_graceful_off_is_forced_off_once_then_confirmed_by_readback(machine: PoweredMachine) -> None:
    ready = NodeStatus(state=NodeState.READY, since=machine.clock(), attempts=1, provider_id="homelab://lab/m1")
    machine.configure(make_node("m1", power=IPMI, status=ready), kube_node=READY_NODE, spec=SPEC)
    bmc = machine.power.bmc(KEY)
    bmc.on, bmc.ignores_graceful_off = True, True
    machine.command(PowerOffRequested(drain=False))
    machine.heard()
    for _ in range(30):  # forceOffAfter is 2m; readbacks every 5 s
        machine.poll(5)
    assert machine.power.commands(KEY) == [(PowerAction.POWER_OFF, 2), (PowerAction.FORCE_OFF, 2)]
    assert machine.state() is NodeState.SHUTDOWN
    assert "ForcingOff" in machine.event_reasons()


def test_a_restart_mid_power_on_never_sends_the_same_attempt_again(machine: PoweredMachine) -> None:
    operation = Operation(
        kind=OperationKind.STARTUP, attempt=3, job_name="m1-startup-3", started=machine.clock(),
        driver=DriverName.IPMI,
    )
    booting = NodeStatus(
        state=NodeState.STARTING_UP, since=machine.clock(), attempts=3, operation_tries=1, operation=operation
    )
    machine.power.bmc(KEY).on = True  # the command went out before the operator died
    machine.configure(make_node("m1", power=IPMI, status=booting), spec=SPEC)
    machine.poll(6)
    assert machine.power.commands(KEY) == []
    assert machine.power.readbacks(KEY) >= 1
    assert machine.state() is NodeState.STARTING_UP
    assert machine.status().power_readback is not None


def test_wake_on_lan_with_ssh_is_never_read_back(machine: PoweredMachine) -> None:
    machine.configure(make_node("m1", power=WOL_SSH), spec=SPEC)
    machine.command(PowerOnRequested())
    machine.heard()
    machine.poll(400)
    assert machine.power.commands(KEY) == [(PowerAction.POWER_ON, 1)]
    assert machine.power.readbacks(KEY) == 0
    assert machine.power.requests[0].driver is DriverName.WAKE_ON_LAN


@pytest.fixture
def without_drivers(runtime: ActorRuntime, request: pytest.FixtureRequest) -> Iterator[PoweredMachine]:
    yield from _powered(runtime, request.node.name, None)


def test_without_drivers_a_native_machine_fails_its_boot_clearly(without_drivers: PoweredMachine) -> None:
    machine = without_drivers
    machine.configure(make_node("m1", power=IPMI), spec=SPEC)
    machine.command(PowerOnRequested())
    machine.heard()
    machine.heard()
    assert machine.state() is NodeState.BOOT_FAILED
    warning = next(e for e in machine.port.events() if e.reason == "PowerOnFailed")
    assert "native power drivers unavailable" in warning.message
    assert "(DriversUnavailable)" in warning.message


def test_a_machine_powered_by_jobs_never_reaches_the_power_port(machine: PoweredMachine) -> None:
    machine.configure(make_node("m1"), spec=SPEC)
    machine.command(PowerOnRequested())
    machine.heard()
    machine.poll(400)
    assert machine.power.requests == []
    assert len(machine.port.created_jobs()) == 1
