"""The executor's own promises, beyond any one driver: nothing is lost when it closes."""

from __future__ import annotations

import queue
import socket

from power_harness import Harness, answer_of

from actors.power_port import PowerAction, PowerFailure, PowerOutcome


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

        executor.close()
        late = harness.submit(power, PowerAction.POWER_ON, machine="box-c")

        outcomes = {name: answer_of(answers) for name, answers in [("a", running), ("b", queued), ("c", late)]}
    assert outcomes["a"].failure is PowerFailure.TIMED_OUT
    for name in ("b", "c"):
        assert (outcomes[name].succeeded, outcomes[name].failure) == (False, PowerFailure.TIMED_OUT)
        assert "not run: the power executor stopped" in outcomes[name].message
        assert outcomes[name].tries == 0
    assert all(_nothing_more(answers) for answers in (running, queued, late))
    assert executor.pending == 0


def _nothing_more(answers: queue.Queue[PowerOutcome]) -> bool:
    return answers.empty()
