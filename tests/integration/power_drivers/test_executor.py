"""The executor's own promises, beyond any one driver: scheduling per BMC, coalescing, retries, timeouts, close."""

from __future__ import annotations

import queue
import socket
import threading

import pytest
from power_harness import Harness, answer_of

from actors.power_port import PowerAction, PowerFailure, PowerOutcome, PowerRequest
from power_drivers.errors import PowerDriverError
from power_drivers.executor import PowerExecutor
from schemas.power import DriverName, PowerState


def silent_redfish(port: int) -> dict[str, object]:
    return {
        "redfish": {
            "endpoint": f"https://127.0.0.1:{port}",
            "systemId": "1",
            "credentials": {"name": "bmc-credentials"},
            "insecureSkipTlsVerify": True,
        }
    }


def test_close_answers_queued_and_running_requests_and_later_submits(harness: Harness) -> None:
    harness.credentials()
    executor = harness.start(workers=1, try_timeout_seconds=0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        power = silent_redfish(silent.getsockname()[1])
        running = harness.submit(power, PowerAction.POWER_ON, machine="box-a")
        queued = harness.submit(power, PowerAction.POWER_ON, machine="box-b")
        silent.settimeout(10)
        connection, _ = silent.accept()  # box-a's try has reached the BMC, which never answers

        executor.close()
        connection.close()
        late = harness.submit(power, PowerAction.POWER_ON, machine="box-c")

        outcomes = {name: answer_of(answers) for name, answers in [("a", running), ("b", queued), ("c", late)]}
    assert outcomes["a"].failure is PowerFailure.TIMED_OUT
    for name in ("b", "c"):
        assert (outcomes[name].succeeded, outcomes[name].failure) == (False, PowerFailure.DRIVERS_UNAVAILABLE)
        assert "not run: the power executor stopped" in outcomes[name].message
        assert outcomes[name].tries == 0
    assert all(_nothing_more(answers) for answers in (running, queued, late))
    assert executor.pending == 0


def _nothing_more(answers: queue.Queue[PowerOutcome]) -> bool:
    return answers.empty()


# --- the executor's scheduling, with drivers of our own (the driver factory is the executor's seam) ---------


class GatedDriver:
    """A driver whose operations wait for the test to open a gate, recording what ran where and when."""

    def __init__(self, lab: GateLab, request: PowerRequest) -> None:
        self._lab = lab
        self._request = request

    @property
    def name(self) -> DriverName:
        return DriverName.IPMI

    def power_on(self) -> None:
        self._lab.enter(self._request)

    def power_off(self, force: bool) -> None:
        self._lab.enter(self._request)

    def read_power_state(self) -> PowerState:
        self._lab.enter(self._request)
        return PowerState.ON


class GateLab:
    def __init__(self, failures: list[PowerFailure | Exception] | None = None) -> None:
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.running = 0
        self.most_running = 0
        self.threads: set[str] = set()
        self.failures = list(failures or [])
        self.arrived = threading.Semaphore(0)

    def build(self, request: PowerRequest, secrets: object, timeout: float) -> GatedDriver:
        return GatedDriver(self, request)

    def enter(self, request: PowerRequest) -> None:
        with self.lock:
            self.started.append(request.machine_key)
            self.threads.add(threading.current_thread().name)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.arrived.release()
        try:
            assert self.gate.wait(30), "the test never opened the gate"
            with self.lock:
                failure = self.failures.pop(0) if self.failures else None
            if isinstance(failure, PowerFailure):
                raise PowerDriverError(failure, f"{request.machine_key}: {failure} from the gated driver")
            if failure is not None:
                raise failure
        finally:
            with self.lock:
                self.running -= 1

    def wait_started(self, count: int) -> None:
        for _ in range(count):
            assert self.arrived.acquire(timeout=30)


def gated_executor(harness: Harness, lab: GateLab, workers: int = 4, try_timeout: float = 30.0) -> PowerExecutor:
    harness.executor = PowerExecutor(
        tell=lambda reply_to, outcome: reply_to.put(outcome),
        secrets=harness.secrets,
        workers=workers,
        clock=harness.clock.now,
        sleep=harness.clock.sleep,
        jitter=lambda: 0.0,
        try_timeout_seconds=try_timeout,
        try_grace_seconds=0.0,
        driver_factory=lab.build,
    )
    return harness.executor


def bmc(port: int) -> dict[str, object]:
    return {"ipmi": {"host": "10.0.0.1", "port": port, "credentials": {"name": "bmc-credentials"}}}


def test_machines_behind_one_bmc_wait_their_turn_in_order_while_other_bmcs_proceed(harness: Harness) -> None:
    lab = GateLab()
    gated_executor(harness, lab)

    shared = [harness.submit(bmc(623), PowerAction.POWER_ON, machine=f"shared-{index}") for index in range(3)]
    alone = harness.submit(bmc(624), PowerAction.POWER_ON, machine="alone")
    lab.wait_started(2)
    assert sorted(lab.started) == ["homelab/alone", "homelab/shared-0"]
    lab.gate.set()

    assert all(answer_of(answers).succeeded for answers in [*shared, alone])
    assert [key for key in lab.started if "shared" in key] == [f"homelab/shared-{index}" for index in range(3)]
    assert lab.most_running == 2
    assert threading.current_thread().name not in lab.threads


def test_an_identical_request_joins_the_running_one_and_a_later_attempt_runs_again(harness: Harness) -> None:
    lab = GateLab()
    gated_executor(harness, lab)

    first = harness.submit(bmc(623), PowerAction.POWER_ON, attempt=1)
    lab.wait_started(1)
    joined = harness.submit(bmc(623), PowerAction.POWER_ON, attempt=1)
    next_attempt = harness.submit(bmc(623), PowerAction.POWER_ON, attempt=2)
    lab.gate.set()

    outcomes = [answer_of(first), answer_of(joined), answer_of(next_attempt)]
    assert [outcome.attempt for outcome in outcomes] == [1, 1, 2]
    assert all(outcome.succeeded for outcome in outcomes)
    assert lab.started == ["homelab/box-1", "homelab/box-1"]


@pytest.mark.parametrize(
    ("failures", "deadline", "expected"),
    [
        pytest.param([PowerFailure.TIMED_OUT, PowerFailure.UNREACHABLE], 60.0, (True, None, 3), id="retried-then-ok"),
        pytest.param(
            [PowerFailure.CREDENTIALS_REJECTED], 60.0, (False, PowerFailure.CREDENTIALS_REJECTED, 1), id="not-retryable"
        ),
        pytest.param([PowerFailure.TIMED_OUT] * 9, 1.2, (False, PowerFailure.TIMED_OUT, 2), id="deadline-ends-it"),
        pytest.param([RuntimeError("library bug")], 0.3, (False, PowerFailure.PROTOCOL_ERROR, 1), id="exception"),
    ],
)
def test_retries_follow_the_failure_and_the_deadline(  # backoffs (no jitter): 0.5 s, 1 s, 2 s ...
    harness: Harness, failures: list[PowerFailure | Exception], deadline: float, expected: tuple[object, ...]
) -> None:
    lab = GateLab(failures)
    lab.gate.set()
    gated_executor(harness, lab)

    outcome = harness.run(bmc(623), PowerAction.READ_POWER_STATE, deadline_seconds=deadline)

    assert (outcome.succeeded, outcome.failure, outcome.tries) == expected
    if outcome.succeeded:
        assert outcome.observed is PowerState.ON


def test_a_try_that_overruns_its_timeout_is_abandoned_and_the_bmc_freed(harness: Harness) -> None:
    lab = GateLab()
    gated_executor(harness, lab, workers=1, try_timeout=0.5)

    hung = harness.submit(bmc(623), PowerAction.POWER_ON, machine="box-a")
    outcome = answer_of(hung)
    lab.gate.set()
    after = harness.run(bmc(623), PowerAction.POWER_ON, machine="box-b")

    assert (outcome.succeeded, outcome.failure) == (False, PowerFailure.TIMED_OUT)
    assert "no answer within 0.5 s" in outcome.message
    assert after.succeeded
