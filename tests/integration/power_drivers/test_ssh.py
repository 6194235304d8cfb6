"""SSH: the shutdown command reaches an in-test asyncssh server, through the executor."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import asyncssh
import pytest
from power_harness import NAMESPACE, Harness, answer_of, assert_not_logged

from actors.power_port import PowerAction, PowerFailure
from schemas.power import DriverName
from tests.support.ssh_server import SshTestServer

KEY_SECRET = "power-ssh-key"
COMMAND = "sudo systemctl poweroff"


@pytest.fixture
def client_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture
def keyed(harness: Harness, client_key: asyncssh.SSHKey) -> Harness:
    harness.secrets.secrets[(NAMESPACE, KEY_SECRET)] = {"id_ed25519": client_key.export_private_key()}
    return harness


@pytest.fixture
def server(client_key: asyncssh.SSHKey, request: pytest.FixtureRequest) -> Iterator[SshTestServer]:
    behaviour = getattr(request, "param", "exit")
    with SshTestServer(client_key, behaviour) as running:
        yield running


def ssh(server: SshTestServer, known_hosts: str | None = None) -> dict[str, Any]:
    return {
        "wakeOnLan": {"macAddress": "52:54:00:00:00:01"},
        "ssh": {
            "host": "127.0.0.1",
            "port": server.port,
            "user": "power",
            "privateKey": {"name": KEY_SECRET, "key": "id_ed25519"},
            "knownHosts": known_hosts or server.known_hosts_line,
            "command": COMMAND,
        },
    }


@pytest.mark.parametrize("server", ["exit", "drop"], indirect=True)
def test_power_off_runs_the_command_once_even_when_the_machine_cuts_the_connection(
    keyed: Harness, server: SshTestServer
) -> None:
    keyed.start()

    outcome = keyed.run(ssh(server), PowerAction.POWER_OFF)

    assert (outcome.succeeded, outcome.driver, outcome.failure) == (True, DriverName.SSH, None)
    assert server.commands == [COMMAND]


@pytest.mark.parametrize("server", ["fail"], indirect=True)
def test_a_failing_command_reports_its_exit_status_and_first_error_line(keyed: Harness, server: SshTestServer) -> None:
    keyed.start()

    outcome = keyed.run(ssh(server), PowerAction.POWER_OFF)

    assert (outcome.succeeded, outcome.failure) == (False, PowerFailure.PROTOCOL_ERROR)
    assert f"ssh power@127.0.0.1:{server.port}" in outcome.message
    assert "exited with status 1: poweroff: permission denied" in outcome.message


def test_a_host_key_other_than_known_hosts_is_host_key_mismatch(keyed: Harness, server: SshTestServer) -> None:
    keyed.start()
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().strip()

    outcome = keyed.run(ssh(server, known_hosts=f"127.0.0.1 {impostor}"), PowerAction.POWER_OFF, deadline_seconds=60)

    assert (outcome.succeeded, outcome.failure, outcome.tries) == (False, PowerFailure.HOST_KEY_MISMATCH, 1)
    assert "homelab/box-1" in outcome.message
    assert server.commands == []


def test_a_key_the_machine_does_not_authorize_is_credentials_rejected(harness: Harness, server: SshTestServer) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    harness.secrets.secrets[(NAMESPACE, KEY_SECRET)] = {"id_ed25519": stranger.export_private_key()}
    harness.start()

    outcome = harness.run(ssh(server), PowerAction.POWER_OFF, deadline_seconds=60)

    assert (outcome.succeeded, outcome.failure, outcome.tries) == (False, PowerFailure.CREDENTIALS_REJECTED, 1)
    assert server.commands == []
    assert "PRIVATE KEY" not in outcome.message


def test_a_missing_key_secret_fails_before_connecting(harness: Harness, server: SshTestServer) -> None:
    harness.start()

    outcome = harness.run(ssh(server), PowerAction.POWER_OFF)

    assert (outcome.succeeded, outcome.failure) == (False, PowerFailure.SECRET_MISSING)
    assert "Secret homelab/power-ssh-key: not found" in outcome.message


def test_the_same_request_twice_runs_the_command_once(keyed: Harness, server: SshTestServer) -> None:
    keyed.start()

    first = keyed.submit(ssh(server), PowerAction.POWER_OFF, attempt=3)
    second = keyed.submit(ssh(server), PowerAction.POWER_OFF, attempt=3)

    assert answer_of(first) == answer_of(second)
    assert server.commands == [COMMAND]


def test_ssh_cannot_force_off(keyed: Harness, server: SshTestServer) -> None:
    keyed.start()

    outcome = keyed.run(ssh(server), PowerAction.FORCE_OFF)

    assert (outcome.succeeded, outcome.failure, outcome.driver) == (False, PowerFailure.UNSUPPORTED, None)


def test_nothing_logs_the_private_key_even_at_debug(
    keyed: Harness, server: SshTestServer, client_key: asyncssh.SSHKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keyed.start()

    assert keyed.run(ssh(server), PowerAction.POWER_OFF).succeeded

    private = client_key.export_private_key().decode()
    body_lines = [line for line in private.splitlines() if line and not line.startswith("-----")]
    assert_not_logged(caplog.records, *body_lines)
