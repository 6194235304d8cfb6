"""What a person sees when `run` cannot start: one line naming the flag and the address, the kubeconfig file or the
API server, and what to do; and a cluster left exactly as it was (nothing written before every listener is bound).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from homelab_autoscaler.cli import build_parser
from homelab_autoscaler.listeners import ListenerUnavailable
from homelab_autoscaler.operator import Operator
from kubeapi.kube_client import KubeConfigError, KubeError
from sim.fakeapi.kubeconfig import write_kubeconfig
from tests.support.operator_homelab import OPERATOR_NAMESPACE, Homelab

WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process (here: a plain socket) listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield int(holder.getsockname()[1])


def writes(homelab: Homelab) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _body in homelab.requests.entries if method in WRITES]


@pytest.mark.parametrize(
    ("field", "flag", "variable"),
    [
        pytest.param("grpc_address", "--grpc-address", "HOMELAB_AUTOSCALER_GRPC_ADDRESS", id="grpc"),
        pytest.param("metrics_address", "--metrics-address", "HOMELAB_AUTOSCALER_METRICS_ADDRESS", id="metrics"),
        pytest.param("webhook_address", "--webhook-address", "HOMELAB_AUTOSCALER_WEBHOOK_ADDRESS", id="webhook"),
    ],
)
def test_a_port_in_use_is_named_by_its_flag_and_nothing_is_written(
    homelab: Homelab, taken_port: int, field: str, flag: str, variable: str
) -> None:
    overrides: dict[str, Any] = {"webhook_address": "127.0.0.1:0", field: f"127.0.0.1:{taken_port}"}
    operator = Operator(homelab.settings(**overrides, pod_name="operator-0", pod_namespace=OPERATOR_NAMESPACE))

    with pytest.raises(ListenerUnavailable) as raised:
        operator.start()

    message = str(raised.value)
    assert message.startswith(f"{flag} 127.0.0.1:{taken_port}: the address is already in use")
    assert variable in message
    assert "\n" not in message
    assert writes(homelab) == []  # no webhook Secret, no caBundle, no pod label


def test_the_run_command_says_it_in_one_line_without_library_noise(
    homelab: Homelab, taken_port: int, capfd: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    arguments = build_parser().parse_args([
        "run", "--kubeconfig", str(homelab.kubeconfig), "--watch-namespace", "homelab",
        "--grpc-address", f"127.0.0.1:{taken_port}", "--metrics-address", "127.0.0.1:0", "--webhook-address", "",
    ])
    try:
        assert arguments.handler(arguments) == 1
    finally:
        for handler in [handler for handler in root.handlers if handler not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
        for name in ("urllib3", "kubernetes", "grpc"):
            logging.getLogger(name).setLevel(logging.NOTSET)

    output = capfd.readouterr()
    (line,) = (output.out + output.err).splitlines()
    assert line.endswith(
        f"homelab-autoscaler run: cannot start: --grpc-address 127.0.0.1:{taken_port}: the address is already in "
        "use; stop the other process listening there or pick a free port (change --grpc-address or "
        "HOMELAB_AUTOSCALER_GRPC_ADDRESS)"
    )


def _free_port() -> int:
    with socket.socket() as probe:  # free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_missing_kubeconfig_is_one_line_naming_the_file(homelab: Homelab, tmp_path: Path) -> None:
    operator = Operator(homelab.settings(kubeconfig=tmp_path / "absent"))

    with pytest.raises(KubeConfigError) as raised:
        operator.start()

    assert str(raised.value) == f"kubeconfig {tmp_path / 'absent'} does not exist"


def test_an_unreachable_api_server_stops_the_start_in_one_line_naming_it(homelab: Homelab, tmp_path: Path) -> None:
    port = _free_port()
    kubeconfig = write_kubeconfig(tmp_path / "unreachable", f"http://127.0.0.1:{port}")
    operator = Operator(homelab.settings(kubeconfig=kubeconfig))

    with pytest.raises(KubeError) as raised:
        operator.start()

    assert str(raised.value) == (
        f"list Group resources: cannot reach the API server http://127.0.0.1:{port}: connection refused "
        "(is the API server running, and is this the right address?)"
    )
