"""`homelab-autoscaler run`: its settings (flags, environment, defaults), logs, health endpoints, and the real
command managing `homelab-autoscaler sim` end to end until SIGTERM.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
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
from homelab_autoscaler.settings import LogFormat, LogLevel, Settings, SettingsError, env_name, settings_from
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
        pytest.param((), {}, "grpc_address", "0.0.0.0:50051", id="default"),
        pytest.param((), {"HOMELAB_AUTOSCALER_GRPC_ADDRESS": "127.0.0.1:6000"}, "grpc_address", "127.0.0.1:6000",
                     id="environment-over-default"),
        pytest.param(("--grpc-address", "127.0.0.1:7000"), {"HOMELAB_AUTOSCALER_GRPC_ADDRESS": "127.0.0.1:6000"},
                     "grpc_address", "127.0.0.1:7000", id="flag-over-environment"),
        pytest.param((), {"HOMELAB_AUTOSCALER_LEADER_ELECT": "true"}, "leader_elect", True, id="boolean-from-env"),
        pytest.param(("--no-leader-elect",), {"HOMELAB_AUTOSCALER_LEADER_ELECT": "true"}, "leader_elect", False,
                     id="boolean-flag-over-env"),
        pytest.param((), {}, "webhook_address", "", id="no-webhook-unless-asked"),
        pytest.param((), {"HOMELAB_AUTOSCALER_WEBHOOK_ADDRESS": "0.0.0.0:9443"}, "webhook_address", "0.0.0.0:9443",
                     id="webhook-where-asked"),
        pytest.param((), {"HOMELAB_AUTOSCALER_KUBECONFIG": ""}, "kubeconfig", None, id="empty-means-unset"),
        pytest.param(("--log-format", "json"), {}, "log_format", LogFormat.JSON, id="choice"),
        pytest.param((), {"POD_NAME": "operator-7d9f"}, "pod_name", "operator-7d9f", id="downward-api"),
    ],
)
def test_settings_come_from_flags_then_environment_then_defaults(
    argv: tuple[str, ...], environ: dict[str, str], field: str, expected: object
) -> None:
    assert getattr(settings_from(parse(*argv), environ), field) == expected


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        pytest.param(("--grpc-address", "nowhere"), {}, "--grpc-address (env HOMELAB_AUTOSCALER_GRPC_ADDRESS)",
                     id="bad-address"),
        pytest.param((), {"HOMELAB_AUTOSCALER_WRITER_WORKERS": "zero"},
                     "--writer-workers (env HOMELAB_AUTOSCALER_WRITER_WORKERS)", id="bad-number-from-env"),
        pytest.param(("--grpc-cert", "/tls.crt"), {}, "--grpc-cert and --grpc-key go together", id="half-tls"),
        pytest.param(("--leader-election-renew-seconds", "20"), {}, "must be shorter", id="renew-after-expiry"),
    ],
)
def test_invalid_settings_name_the_flag_and_its_variable(
    argv: tuple[str, ...], environ: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named.replace("(", r"\(").replace(")", r"\)")):
        settings_from(parse(*argv), environ)


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
    flags = [
        str(extra["flag"]) for field in Settings.model_fields.values()
        if isinstance(extra := field.json_schema_extra, dict) and "flag" in extra
    ]
    assert len(flags) == 25
    for flag in flags:
        assert flag in text
        assert env_name(flag) in text


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
    for field in Settings.model_fields.values():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or "flag" not in extra:
            continue
        flag = str(extra["flag"])
        row = next((line for line in rows if line.startswith(f"| `{flag} ") or line.startswith(f"| `{flag}`")), None)
        assert row is not None, f"{flag} is not on docs/operations/running.md"
        assert f"`{env_name(flag)}`" in row
