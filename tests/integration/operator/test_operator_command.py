"""`homelab-autoscaler run`: its settings (flags, environment, defaults), logs, health endpoints, and the real
command managing `homelab-autoscaler sim` end to end until SIGTERM.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import operator
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import grpc
import pytest

from homelab_autoscaler.cli import build_parser
from homelab_autoscaler.http_server import HealthServer
from homelab_autoscaler.logs import configure_logging
from homelab_autoscaler.settings import (
    OPTIONS,
    LogFormat,
    LogLevel,
    Settings,
    SettingsError,
    env_name,
    settings_from,
)
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc
from tests.support.operator_homelab import RUNNING
from tests.support.polling import wait_for

ROOT: Final = Path(__file__).resolve().parents[3]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


# --- settings ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "environ", "field", "expected"),
    [
        pytest.param((), {}, "grpc.address", "0.0.0.0:50051", id="default"),
        pytest.param((), {"HOMELAB_AUTOSCALER_GRPC_ADDRESS": "127.0.0.1:6000"}, "grpc.address", "127.0.0.1:6000",
                     id="environment-over-default"),
        pytest.param(("--grpc-address", "127.0.0.1:7000"), {"HOMELAB_AUTOSCALER_GRPC_ADDRESS": "127.0.0.1:6000"},
                     "grpc.address", "127.0.0.1:7000", id="flag-over-environment"),
        pytest.param((), {"HOMELAB_AUTOSCALER_LEADER_ELECT": "true"}, "leader_election.enabled", True,
                     id="boolean-from-env"),
        pytest.param(("--no-leader-elect",), {"HOMELAB_AUTOSCALER_LEADER_ELECT": "true"}, "leader_election.enabled",
                     False, id="boolean-flag-over-env"),
        pytest.param((), {}, "webhook.address", "", id="no-webhook-unless-asked"),
        pytest.param((), {"HOMELAB_AUTOSCALER_WEBHOOK_ADDRESS": "0.0.0.0:9443"}, "webhook.address", "0.0.0.0:9443",
                     id="webhook-where-asked"),
        pytest.param((), {"HOMELAB_AUTOSCALER_KUBECONFIG": ""}, "kubernetes.kubeconfig", None,
                     id="empty-means-unset"),
        pytest.param(("--log-format", "json"), {}, "logging.format", LogFormat.JSON, id="choice"),
        pytest.param((), {"HOMELAB_AUTOSCALER_WRITER_WORKERS": "8"}, "kubernetes.writer_workers", 8,
                     id="number-from-env"),
        pytest.param((), {"HOMELAB_AUTOSCALER_SHUTDOWN_GRACE_SECONDS": "2.5"}, "shutdown.grace_seconds", 2.5,
                     id="seconds-from-env"),
        pytest.param((), {"POD_NAME": "operator-7d9f"}, "pod.name", "operator-7d9f", id="downward-api"),
    ],
)
def test_settings_come_from_flags_then_environment_then_defaults(
    argv: tuple[str, ...], environ: dict[str, str], field: str, expected: object
) -> None:
    assert operator.attrgetter(field)(settings_from(parse(*argv), environ)) == expected


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        pytest.param(("--grpc-address", "nowhere"), {},
                     "--grpc-address (env HOMELAB_AUTOSCALER_GRPC_ADDRESS): 'nowhere' is not an address of the form "
                     "HOST:PORT (port 0 picks a free one)", id="bad-address"),
        pytest.param((), {"HOMELAB_AUTOSCALER_WRITER_WORKERS": "zero"},
                     "--writer-workers (env HOMELAB_AUTOSCALER_WRITER_WORKERS): 'zero' is invalid: input should be a "
                     "valid integer, unable to parse string as an integer", id="bad-number-from-env"),
        pytest.param((), {"HOMELAB_AUTOSCALER_WRITER_WORKERS": "0"},
                     "--writer-workers (env HOMELAB_AUTOSCALER_WRITER_WORKERS): '0' is invalid: input should be "
                     "greater than or equal to 1", id="number-out-of-range"),
        pytest.param((), {"HOMELAB_AUTOSCALER_LEADER_ELECT": "maybe"},
                     "--leader-elect (env HOMELAB_AUTOSCALER_LEADER_ELECT): 'maybe' is invalid: input should be a "
                     "valid boolean, unable to interpret input", id="bad-boolean-from-env"),
        pytest.param((), {"HOMELAB_AUTOSCALER_LOG_LEVEL": "verbose"},
                     "--log-level (env HOMELAB_AUTOSCALER_LOG_LEVEL): 'verbose' is invalid: input should be 'DEBUG', "
                     "'INFO', 'WARNING' or 'ERROR'", id="bad-choice-from-env"),
        pytest.param((), {"HOMELAB_AUTOSCALER_NAMESPACE": ""},
                     "--namespace (env HOMELAB_AUTOSCALER_NAMESPACE): '' is invalid: string should have at least 1 "
                     "character", id="empty-required-name"),
        pytest.param((), {"HOMELAB_AUTOSCALER_PRICE_PER_KWH": "cheap"},
                     "--price-per-kwh (env HOMELAB_AUTOSCALER_PRICE_PER_KWH): 'cheap' is invalid: input should be a "
                     "valid decimal", id="bad-price-from-env"),
        pytest.param(("--grpc-cert", "/tls.crt"), {}, "--grpc-cert and --grpc-key go together", id="half-tls"),
        pytest.param(("--leader-election-renew-seconds", "20"), {},
                     "--leader-election-renew-seconds must be shorter than --leader-election-lease-seconds",
                     id="renew-after-expiry"),
        pytest.param((), {"HOMELAB_AUTOSCALER_WRITER_WORKERS": "zero", "HOMELAB_AUTOSCALER_METRICS_ADDRESS": "8080"},
                     "--writer-workers (env HOMELAB_AUTOSCALER_WRITER_WORKERS): 'zero' is invalid: input should be a "
                     "valid integer, unable to parse string as an integer; --metrics-address (env "
                     "HOMELAB_AUTOSCALER_METRICS_ADDRESS): '8080' is not an address of the form HOST:PORT (port 0 "
                     "picks a free one)", id="every-problem-in-one-line"),
    ],
)
def test_invalid_settings_name_the_flag_its_variable_the_value_and_what_is_expected(
    argv: tuple[str, ...], environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        settings_from(parse(*argv), environ)
    assert str(raised.value) == expected


def test_settings_named_as_their_flags_refuse_a_name_that_is_no_setting() -> None:
    with pytest.raises(SettingsError, match="no such setting: grpc_adress"):
        Settings.from_flags(grpc_adress="127.0.0.1:0")


def test_a_rule_over_several_flags_is_said_once(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = parse("--grpc-cert", "/tls.crt")

    assert arguments.handler(arguments) == 2
    assert capsys.readouterr().err == (
        "homelab-autoscaler run: invalid settings: --grpc-cert and --grpc-key go together\n"
    )


def test_the_command_refuses_invalid_settings_with_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = parse("--metrics-address", "8080")

    assert arguments.handler(arguments) == 2
    assert "--metrics-address" in capsys.readouterr().err


def test_help_explains_every_flag_and_names_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    flags = [(option.flag, option.env) for option in OPTIONS if option.flag is not None]
    assert len(flags) == 25
    for flag, env in flags:
        assert flag in text
        assert env in text
        assert env == env_name(flag)
    for heading in ("Kubernetes:", "gRPC (the Cluster Autoscaler's calls):", "leader election:", "logging:"):
        assert heading in text


# --- logs --------------------------------------------------------------------------------------------------------


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    for handler in [handler for handler in root.handlers if handler not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    for name in ("urllib3", "kubernetes", "grpc"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_json_logs_are_one_object_per_line(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    configure_logging(LogFormat.JSON, LogLevel.INFO, stream)
    configure_logging(LogFormat.JSON, LogLevel.INFO, stream)  # configuring again replaces, never duplicates
    logger = logging.getLogger("homelab_autoscaler.test")

    logger.info("machine %s is %s", "m1", "Ready")
    logger.debug("not shown at INFO")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("it failed")

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {key: first[key] for key in ("level", "logger", "message")} == {
        "level": "INFO", "logger": "homelab_autoscaler.test", "message": "machine m1 is Ready"
    }
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR"
    assert "RuntimeError: boom" in second["exception"]
    assert logging.getLogger("urllib3").level == logging.WARNING


def test_text_logs_are_one_line_per_record(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    configure_logging(LogFormat.TEXT, LogLevel.WARNING, stream)

    logging.getLogger("actors.test").warning("watch %s failed", "groups")
    logging.getLogger("actors.test").info("hidden")

    (line,) = stream.getvalue().splitlines()
    assert line.endswith(" WARNING actors.test: watch groups failed")


# --- health endpoints ----------------------------------------------------------------------------------------------


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def test_health_endpoints_answer_with_the_reason_they_fail_and_report_leadership() -> None:
    ready: list[str | None] = ["the webhook's caches have not synced yet"]
    leading = [False]
    server = HealthServer(
        ("127.0.0.1", 0), liveness=lambda: None, readiness=lambda: ready[0], leading=lambda: leading[0]
    )
    server.start()
    try:
        assert _get(server.port, "/healthz") == (200, "ok\n")
        assert _get(server.port, "/readyz") == (503, "the webhook's caches have not synced yet\n")
        assert _get(server.port, "/readyz/leader") == (503, "the webhook's caches have not synced yet\n")
        ready[0] = None
        assert _get(server.port, "/readyz") == (200, "ok: standby\n")
        assert _get(server.port, "/readyz/leader")[0] == 503
        leading[0] = True
        assert _get(server.port, "/readyz") == (200, "ok: leader\n")
        assert _get(server.port, "/readyz/leader") == (200, "ok: leader\n")
        status, text = _get(server.port, "/metrics")
        assert status == 200
        assert "homelab_autoscaler_watch_objects_skipped_total" in text
        assert _get(server.port, "/elsewhere")[0] == 404
    finally:
        server.stop()


# --- the real commands, end to end --------------------------------------------------------------------------------


class Process:
    """A child process whose output lines are collected by a thread (joined when the process ends)."""

    def __init__(self, *argv: str, environ: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "homelab_autoscaler.cli", *argv], cwd=ROOT, env={**os.environ, **(environ or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self._reader = threading.Thread(target=self._read, name="test-process-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_line(self, predicate: Any, timeout: float = 20.0) -> str:
        with self._changed:
            found = self._changed.wait_for(lambda: next((line for line in self.lines if predicate(line)), None),
                                           timeout)
        if not found:
            pytest.fail(f"no matching output within {timeout} s; got:\n" + "\n".join(self.lines[-30:]))
        return str(found)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait(timeout)
        self._reader.join(timeout)
        assert not self._reader.is_alive(), "the operator's output was still being read after it exited"
        if self.process.stdout is not None:
            self.process.stdout.close()
        return status


def _json_messages(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.mark.timeout(90)
def test_run_manages_the_simulated_homelab_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    simulation = Process("sim", "--kubeconfig-out", str(kubeconfig), "--machines", "2", "--groups", "1",
                         "--boot-seconds", "0.3", "--job-seconds", "0.1", "--heartbeat-seconds", "1")
    operator: Process | None = None
    try:
        simulation.wait_line(lambda line: line.startswith("simulating 2 machines"))
        operator = Process(
            "run", "--kubeconfig", str(kubeconfig), "--watch-namespace", "homelab", "--grpc-address",
            "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--log-format", "json",
            environ={"HOMELAB_AUTOSCALER_WEBHOOK_ADDRESS": ""},
        )
        listening = operator.wait_line(lambda line: "gRPC gateway listening" in line)
        port = int(json.loads(listening)["message"].rpartition("(port ")[2].split(",")[0])
        health = operator.wait_line(lambda line: "metrics and health: serving HTTP" in line)
        health_port = int(json.loads(health)["message"].rpartition(":")[2])
        operator.wait_line(lambda line: "serving Cluster Autoscaler" in line)
        assert _get(health_port, "/readyz") == (200, "ok: leader\n")
        assert "homelab_autoscaler_leader 1.0" in _get(health_port, "/metrics")[1].splitlines()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = externalgrpc_grpc.CloudProviderStub(channel)
            stub.NodeGroupIncreaseSize(externalgrpc.NodeGroupIncreaseSizeRequest(id="homelab/group-1", delta=1))
            wait_for(
                lambda: [
                    instance.status.instanceState
                    for instance in stub.NodeGroupNodes(
                        externalgrpc.NodeGroupNodesRequest(id="homelab/group-1")
                    ).instances
                ] == [RUNNING],
                timeout=20,
                what="the machine to run",
            )

        status = operator.stop()
        assert status == 0, f"exit status {status}; last output:\n" + "\n".join(operator.lines[-40:])
        messages = [record["message"] for record in _json_messages(operator.lines)]
        assert any("received SIGTERM" in message for message in messages)
        assert messages[-1].endswith("stopped")
        errors = [record for record in _json_messages(operator.lines) if record["level"] == "ERROR"]
        assert errors == []
    finally:
        if operator is not None:
            operator.stop()
        assert simulation.stop() == 0


def test_the_running_page_documents_every_flag_and_its_variable() -> None:
    page = (ROOT / "docs" / "operations" / "running.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| `--")]
    for option in OPTIONS:
        if option.flag is None:
            continue
        flag = option.flag
        row = next((line for line in rows if line.startswith(f"| `{flag} ") or line.startswith(f"| `{flag}`")), None)
        assert row is not None, f"{flag} is not on docs/operations/running.md"
        assert f"`{option.env}`" in row
        assert row.split(" | ")[2].startswith(_as_documented(option.default)), row
    # In the order of --help, which follows the groups.
    listed = [line.split("`")[1].split()[0] for line in rows if "`HOMELAB_AUTOSCALER_" in line]
    assert listed == [option.flag for option in OPTIONS if option.flag is not None]


def _as_documented(default: object) -> str:
    if default is False:
        return "off"
    if default is None:
        return "none"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{getattr(default, 'value', default)}`" if default != "" else '`""`'
