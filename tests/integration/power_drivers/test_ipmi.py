"""IPMI: the driver against pyghmi's own BMC server class on a loopback UDP port, through the executor."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from power_harness import (
    CREDENTIALS_SECRET,
    NAMESPACE,
    PASSWORD,
    USERNAME,
    Harness,
    answer_of,
    assert_no_secret,
    assert_not_logged,
)

from actors.power_port import PowerAction, PowerFailure
from power_drivers.ipmi import SESSIONS_LOCK
from schemas.power import DriverName, PowerState
from sim.machines.bmc_host import BmcHost, RemoteBmc


class Switch:
    """A machine reduced to its power: what the BMC turns on and off."""

    def __init__(self) -> None:
        self.powered_on = False

    def command_power_on(self, source: str) -> None:
        self.powered_on = True

    def command_shutdown(self, source: str) -> None:
        self.powered_on = False

    def command_power_cut(self) -> None:
        self.powered_on = False


@pytest.fixture(scope="module")
def bmc_host() -> Iterator[BmcHost]:
    with BmcHost() as host:
        yield host


@pytest.fixture
def bmc(bmc_host: BmcHost) -> RemoteBmc:
    return bmc_host.add(Switch(), USERNAME, PASSWORD)


def ipmi(port: int, secret: str = CREDENTIALS_SECRET) -> dict[str, Any]:
    return {"ipmi": {"host": "127.0.0.1", "port": port, "credentials": {"name": secret}}}


def test_power_on_soft_off_hard_off_and_readback(harness: Harness, bmc: RemoteBmc) -> None:
    harness.credentials()
    harness.start()
    power = ipmi(bmc.port)

    assert harness.run(power, PowerAction.READ_POWER_STATE).observed is PowerState.OFF
    on = harness.run(power, PowerAction.POWER_ON)
    assert (on.succeeded, on.driver, on.tries) == (True, DriverName.IPMI, 1)
    assert harness.run(power, PowerAction.READ_POWER_STATE).observed is PowerState.ON
    assert harness.run(power, PowerAction.POWER_OFF, attempt=2).succeeded
    assert harness.run(power, PowerAction.READ_POWER_STATE, attempt=2).observed is PowerState.OFF
    assert isinstance(bmc.target, Switch)
    bmc.target.powered_on = True
    assert harness.run(power, PowerAction.FORCE_OFF, attempt=3).succeeded
    assert harness.run(power, PowerAction.READ_POWER_STATE, attempt=3).observed is PowerState.OFF

    assert bmc.commands == ["on", "soft", "off"]
    assert (
        harness.sample("homelab_autoscaler_power_operation_seconds_count", {"driver": "ipmi", "action": "power-on"})
        == 1.0
    )


def test_a_bmc_that_says_on_but_stays_off_reads_back_off(harness: Harness, bmc: RemoteBmc) -> None:
    harness.credentials()
    harness.start()
    bmc.set_faults(ignore_power_on=True)
    power = ipmi(bmc.port)

    assert harness.run(power, PowerAction.POWER_ON).succeeded
    readback = harness.run(power, PowerAction.READ_POWER_STATE)

    assert (readback.succeeded, readback.observed) == (True, PowerState.OFF)
    assert bmc.commands == ["on"]


def test_wrong_password_is_credentials_rejected_without_the_password(harness: Harness, bmc: RemoteBmc) -> None:
    harness.credentials(password="not-the-password")
    harness.start()

    outcome = harness.run(ipmi(bmc.port), PowerAction.POWER_ON, deadline_seconds=60)

    assert (outcome.succeeded, outcome.failure, outcome.tries) == (False, PowerFailure.CREDENTIALS_REJECTED, 1)
    assert "homelab/box-1" in outcome.message
    assert f"ipmi 127.0.0.1:{bmc.port}" in outcome.message
    assert_no_secret(outcome, "not-the-password")
    assert bmc.commands == []


def test_wrong_user_is_credentials_rejected(harness: Harness, bmc: RemoteBmc) -> None:
    harness.credentials(username="nobody")
    harness.start()

    outcome = harness.run(ipmi(bmc.port), PowerAction.READ_POWER_STATE)

    assert (outcome.succeeded, outcome.failure) == (False, PowerFailure.CREDENTIALS_REJECTED)
    assert "Unauthorized name" in outcome.message


def test_a_bmc_that_never_answers_times_out(harness: Harness) -> None:
    harness.credentials()
    harness.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))

        outcome = harness.run(ipmi(silent.getsockname()[1]), PowerAction.POWER_ON)

    assert (outcome.succeeded, outcome.failure) == (False, PowerFailure.TIMED_OUT)
    assert "homelab/box-1" in outcome.message
    assert "no answer" in outcome.message
    # The abandoned try still holds the process's IPMI lock until pyghmi gives up; the next test needs it free.
    assert SESSIONS_LOCK.acquire(timeout=30)
    SESSIONS_LOCK.release()


@pytest.mark.parametrize(
    ("stored", "failure", "named"),
    [
        pytest.param(None, PowerFailure.SECRET_MISSING, "Secret homelab/bmc-credentials: not found", id="no-secret"),
        pytest.param(
            {"username": USERNAME.encode()},
            PowerFailure.SECRET_KEY_MISSING,
            "Secret homelab/bmc-credentials has no key 'password'",
            id="no-password-key",
        ),
    ],
)
def test_a_missing_secret_or_key_fails_before_reaching_the_bmc(
    harness: Harness, bmc: RemoteBmc, stored: dict[str, bytes] | None, failure: PowerFailure, named: str
) -> None:
    if stored is not None:
        harness.secrets.secrets[(NAMESPACE, CREDENTIALS_SECRET)] = stored
    harness.start()

    outcome = harness.run(ipmi(bmc.port), PowerAction.POWER_ON, deadline_seconds=60)

    assert (outcome.succeeded, outcome.failure, outcome.tries) == (False, failure, 1)
    assert named in outcome.message
    assert bmc.commands == []


def test_the_same_request_twice_commands_the_bmc_once_and_answers_both(harness: Harness, bmc: RemoteBmc) -> None:
    harness.credentials()
    harness.start()
    power = ipmi(bmc.port)

    first = harness.submit(power, PowerAction.POWER_ON, attempt=4)
    second = harness.submit(power, PowerAction.POWER_ON, attempt=4)

    answers = [answer_of(first), answer_of(second)]
    assert [answer.succeeded for answer in answers] == [True, True]
    assert answers[0] == answers[1]
    assert bmc.commands == ["on"]


def test_nothing_logs_the_password_even_at_debug(
    harness: Harness, bmc: RemoteBmc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    harness.credentials()
    harness.start()
    assert harness.run(ipmi(bmc.port), PowerAction.READ_POWER_STATE).succeeded
    harness.credentials(password="wrong-Pa55word")
    assert not harness.run(ipmi(bmc.port), PowerAction.READ_POWER_STATE, attempt=2).succeeded

    assert_not_logged(caplog.records, "wrong-Pa55word")
