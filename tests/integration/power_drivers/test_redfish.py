"""Redfish: the driver against the sushy-tools emulator over HTTPS on loopback, through the executor."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
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
from schemas.power import DriverName, PowerState
from tests.support.redfish_emulator import RedfishEmulator

CA_SECRET = "bmc-ca"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedfishEmulator]:
    """Three systems: 0 and 1 behave, 2 accepts power-on and stays off. Reset actions are held 0.3 s so that two
    operations on this one BMC would overlap if the executor let them."""
    folder = tmp_path_factory.mktemp("redfish")
    with RedfishEmulator(folder, USERNAME, PASSWORD, systems=3, stuck=(2,), hold_seconds=0.3) as running:
        yield running


@pytest.fixture
def trusting(harness: Harness, emulator: RedfishEmulator) -> Harness:
    """Credentials and the emulator's certificate as a CA bundle in a Secret."""
    assert emulator.certificate is not None
    harness.credentials()
    harness.secrets.secrets[(NAMESPACE, CA_SECRET)] = {"ca.crt": emulator.certificate.pem}
    return harness


def redfish(endpoint: str, system_id: str | None, **extra: Any) -> dict[str, Any]:
    block: dict[str, Any] = {"endpoint": endpoint, "credentials": {"name": CREDENTIALS_SECRET}, **extra}
    if system_id is not None:
        block["systemId"] = system_id
    return {"redfish": block}


def with_ca(emulator: RedfishEmulator, system: int = 0) -> dict[str, Any]:
    return redfish(
        emulator.endpoint,
        emulator.system_ids[system],
        caBundle={"secretKeyRef": {"name": CA_SECRET, "key": "ca.crt"}},
    )


def resets(emulator: RedfishEmulator, system: int) -> list[str]:
    return [
        command["reset"] for command in emulator.stats()["commands"] if command["system"] == emulator.system_ids[system]
    ]


def test_on_graceful_off_force_off_and_readback_with_the_ca_bundle(
    trusting: Harness, emulator: RedfishEmulator
) -> None:
    trusting.start()
    power = with_ca(emulator, system=0)

    assert trusting.run(power, PowerAction.READ_POWER_STATE).observed is PowerState.OFF
    on = trusting.run(power, PowerAction.POWER_ON)
    assert (on.succeeded, on.driver) == (True, DriverName.REDFISH)
    assert trusting.run(power, PowerAction.READ_POWER_STATE).observed is PowerState.ON
    assert trusting.run(power, PowerAction.POWER_OFF).succeeded
    assert trusting.run(power, PowerAction.READ_POWER_STATE, attempt=2).observed is PowerState.OFF
    assert trusting.run(power, PowerAction.POWER_ON, attempt=2).succeeded
    assert trusting.run(power, PowerAction.FORCE_OFF).succeeded
    assert trusting.run(power, PowerAction.READ_POWER_STATE, attempt=3).observed is PowerState.OFF

    assert resets(emulator, 0) == ["On", "GracefulShutdown", "On", "ForceOff"]


def test_a_ca_bundle_from_a_config_map_works_too(trusting: Harness, emulator: RedfishEmulator) -> None:
    assert emulator.certificate is not None
    trusting.secrets.config_maps[(NAMESPACE, "bmc-ca")] = {"ca.crt": emulator.certificate.pem}
    trusting.start()
    power = redfish(
        emulator.endpoint, emulator.system_ids[1], caBundle={"configMapKeyRef": {"name": "bmc-ca", "key": "ca.crt"}}
    )

    outcome = trusting.run(power, PowerAction.READ_POWER_STATE)

    assert (outcome.succeeded, outcome.observed) == (True, PowerState.OFF)


def test_a_self_signed_bmc_without_a_ca_bundle_fails_tls_verification(
    harness: Harness, emulator: RedfishEmulator
) -> None:
    harness.credentials()
    harness.start()
    before = resets(emulator, 1)

    outcome = harness.run(redfish(emulator.endpoint, emulator.system_ids[1]), PowerAction.POWER_ON, deadline_seconds=60)

    assert (outcome.succeeded, outcome.failure, outcome.tries) == (False, PowerFailure.TLS_VERIFICATION_FAILED, 1)
    assert "homelab/box-1" in outcome.message
    assert f"redfish https://127.0.0.1:{emulator.port}" in outcome.message
    assert "caBundle" in outcome.message
    assert resets(emulator, 1) == before


def test_insecure_skip_tls_verify_accepts_the_self_signed_certificate(
    harness: Harness, emulator: RedfishEmulator
) -> None:
    harness.credentials()
    harness.start()

    outcome = harness.run(
        redfish(emulator.endpoint, emulator.system_ids[1], insecureSkipTlsVerify=True), PowerAction.READ_POWER_STATE
    )

    assert (outcome.succeeded, outcome.observed) == (True, PowerState.OFF)


def test_wrong_password_is_credentials_rejected_without_the_password(
    trusting: Harness, emulator: RedfishEmulator
) -> None:
    trusting.credentials(password="wrong-Pa55word")
    trusting.start()
    before = resets(emulator, 1)

    outcome = trusting.run(with_ca(emulator, system=1), PowerAction.POWER_ON, deadline_seconds=60)

    assert (outcome.succeeded, outcome.failure, outcome.tries) == (False, PowerFailure.CREDENTIALS_REJECTED, 1)
    assert "HTTP 401" in outcome.message
    assert_no_secret(outcome, "wrong-Pa55word")
    assert resets(emulator, 1) == before


def test_a_bmc_that_says_on_but_stays_off_reads_back_off(trusting: Harness, emulator: RedfishEmulator) -> None:
    trusting.start()
    power = with_ca(emulator, system=2)

    assert trusting.run(power, PowerAction.POWER_ON).succeeded
    readback = trusting.run(power, PowerAction.READ_POWER_STATE)

    assert (readback.succeeded, readback.observed) == (True, PowerState.OFF)
    assert resets(emulator, 2) == ["On"]


def test_without_system_id_a_bmc_of_several_systems_is_refused_by_name(
    trusting: Harness, emulator: RedfishEmulator
) -> None:
    trusting.start()
    power = redfish(emulator.endpoint, None, caBundle={"secretKeyRef": {"name": CA_SECRET, "key": "ca.crt"}})

    outcome = trusting.run(power, PowerAction.READ_POWER_STATE)

    assert (outcome.succeeded, outcome.failure) == (False, PowerFailure.PROTOCOL_ERROR)
    assert "the BMC has 3 systems; set systemId" in outcome.message
    assert emulator.system_ids[0] in outcome.message


def test_a_missing_ca_bundle_key_fails_before_reaching_the_bmc(harness: Harness, emulator: RedfishEmulator) -> None:
    harness.credentials()
    harness.secrets.secrets[(NAMESPACE, CA_SECRET)] = {"tls.crt": b"-----BEGIN CERTIFICATE-----"}
    harness.start()

    outcome = harness.run(with_ca(emulator, system=1), PowerAction.POWER_ON, deadline_seconds=60)

    assert (outcome.succeeded, outcome.failure) == (False, PowerFailure.SECRET_KEY_MISSING)
    assert "Secret homelab/bmc-ca has no key 'ca.crt'" in outcome.message


def test_two_machines_behind_one_bmc_are_commanded_one_at_a_time(trusting: Harness, emulator: RedfishEmulator) -> None:
    trusting.start(workers=4)

    first = trusting.submit(with_ca(emulator, system=0), PowerAction.FORCE_OFF, machine="box-a", attempt=9)
    second = trusting.submit(with_ca(emulator, system=1), PowerAction.FORCE_OFF, machine="box-b", attempt=9)

    assert [answer_of(first).succeeded, answer_of(second).succeeded] == [True, True]
    assert emulator.stats()["max_in_flight"] == 1


def test_the_same_request_twice_resets_once_and_answers_both(trusting: Harness, emulator: RedfishEmulator) -> None:
    trusting.start()
    power = with_ca(emulator, system=1)
    before = len(resets(emulator, 1))

    first = trusting.submit(power, PowerAction.POWER_OFF, machine="box-b", attempt=7)
    second = trusting.submit(power, PowerAction.POWER_OFF, machine="box-b", attempt=7)

    answers = [answer_of(first), answer_of(second)]
    assert answers[0] == answers[1]
    assert answers[0].succeeded
    assert resets(emulator, 1)[before:] == ["GracefulShutdown"]


def test_a_bmc_that_accepts_the_connection_and_never_answers_times_out(harness: Harness) -> None:
    harness.credentials()
    harness.start(try_timeout_seconds=0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        endpoint = f"https://127.0.0.1:{silent.getsockname()[1]}"

        outcome = harness.run(redfish(endpoint, "1", insecureSkipTlsVerify=True), PowerAction.POWER_ON)

    assert (outcome.succeeded, outcome.failure) == (False, PowerFailure.TIMED_OUT)
    assert "homelab/box-1" in outcome.message


def test_an_unreachable_bmc_is_retried_with_backoff_until_the_deadline(harness: Harness, tmp_path: Path) -> None:
    harness.credentials()
    harness.start()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        endpoint = f"https://127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening: connection refused

        outcome = harness.run(
            redfish(endpoint, "1", insecureSkipTlsVerify=True), PowerAction.POWER_ON, deadline_seconds=10
        )

    assert (outcome.succeeded, outcome.failure, outcome.tries) == (False, PowerFailure.UNREACHABLE, 4)
    assert harness.clock.slept == [1.0, 2.0, 4.0]
    assert "gave up after 4 tries" in outcome.message
    assert (
        harness.sample("homelab_autoscaler_power_failures_total", {"driver": "redfish", "reason": "Unreachable"}) == 4
    )


def test_nothing_logs_the_password_even_at_debug(
    trusting: Harness, emulator: RedfishEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    trusting.start()
    assert trusting.run(with_ca(emulator, system=1), PowerAction.READ_POWER_STATE).succeeded
    trusting.credentials(password="wrong-Pa55word")
    assert not trusting.run(with_ca(emulator, system=1), PowerAction.READ_POWER_STATE, attempt=2).succeeded

    assert_not_logged(caplog.records, "wrong-Pa55word")
