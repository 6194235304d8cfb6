"""The two programs a real-cluster test runs beside the control plane: the operator and Cluster Autoscaler.

Both are `ManagedProcess`es, so they log to a file, stop with SIGTERM (or die by SIGKILL, as a crash would) and are
always reaped. The operator runs as the `homelab-autoscaler run` command a user starts, on a fixed gRPC port that
CA's cloud config names, so a test can kill it and start another on the same address. Cluster Autoscaler is the
`externalgrpc` build from the binary folder with a fast loop (`TEST_ARGS`), logging every gRPC call it makes; its log
is the record a test reads (`lines`, `klog_time`) of what CA decided and when.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sim.controlplane.cluster import LOOPBACK, free_ports
from sim.controlplane.errors import ControlPlaneError
from sim.controlplane.processes import ManagedProcess

TEST_ARGS: Final = (
    "--cloud-provider=externalgrpc",
    "--namespace=kube-system",
    "--leader-elect=false",
    "--scan-interval=2s",
    "--scale-down-unneeded-time=6s",
    "--scale-down-delay-after-add=4s",
    "--scale-down-delay-after-delete=0s",
    "--scale-down-delay-after-failure=4s",
    "--unremovable-node-recheck-timeout=5s",
    "--max-node-provision-time=60s",
    "--new-pod-scale-up-delay=0s",
    "--skip-nodes-with-local-storage=false",
    "--skip-nodes-with-system-pods=false",
    "--initial-node-group-backoff-duration=20s",
    "--max-node-group-backoff-duration=40s",
    "--v=5",
)
"""A CA loop of seconds instead of minutes that logs every gRPC call it makes (`--v=5`). A caller adds what its
scenario needs (the expander, a shorter max-node-provision-time); a later flag of the same name wins in CA."""

_KLOG_STAMP: Final = re.compile(r"^[IWEF](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6})")


class OperatorProcess:
    """`homelab-autoscaler run` against a kubeconfig, serving gRPC on 127.0.0.1:`grpc_port` (see module docstring)."""

    def __init__(
        self,
        kubeconfig: Path,
        directory: Path,
        *,
        namespace: str,
        grpc_port: int,
        metrics_port: int,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        executable = shutil.which("homelab-autoscaler", path=str(Path(sys.executable).parent))
        command = [executable] if executable else [sys.executable, "-m", "homelab_autoscaler.cli"]
        self.process = ManagedProcess(
            "homelab-autoscaler",
            [
                *command,
                "run",
                f"--kubeconfig={kubeconfig}",
                f"--namespace={namespace}",
                f"--watch-namespace={namespace}",
                f"--grpc-address={LOOPBACK}:{grpc_port}",
                f"--metrics-address={LOOPBACK}:{metrics_port}",
                "--webhook-address=",
                "--no-leader-elect",
                "--shutdown-grace-seconds=5",
                *extra_args,
            ],
            directory / "logs" / "homelab-autoscaler.log",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start, and wait until `/readyz` says every listener is bound and the inventory is applied."""
        self.process.start()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.process.alive:
                raise ControlPlaneError(
                    f"the operator exited with {self.process.returncode} while starting:\n{self.process.tail()}"
                )
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"the operator was not ready within {timeout:.0f} s:\n{self.process.tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: nothing finished, nothing released, as a crash or an OOM kill leaves it."""
        self.process.kill()

    def stop(self) -> None:
        self.process.stop(grace=10.0)

    def _ready(self) -> bool:
        connection = http.client.HTTPConnection(LOOPBACK, self.metrics_port, timeout=1.0)
        try:
            connection.request("GET", "/readyz")
            return connection.getresponse().status == http.client.OK
        except OSError:
            return False
        finally:
            connection.close()


class ClusterAutoscaler:
    """The real `cluster-autoscaler` with a cloud config naming the operator's gRPC port (see module docstring)."""

    def __init__(
        self, binary: Path, kubeconfig: Path, directory: Path, *, grpc_port: int, args: Sequence[str] = ()
    ) -> None:
        cloud_config = directory / "cloud-config.yaml"
        cloud_config.write_text(f'address: "{LOOPBACK}:{grpc_port}"\ngrpc_timeout: 5s\n')
        (status_port,) = free_ports(1)
        self.log_path = directory / "logs" / "cluster-autoscaler.log"
        self.process = ManagedProcess(
            "cluster-autoscaler",
            [
                binary,
                *TEST_ARGS,
                f"--cloud-config={cloud_config}",
                f"--kubeconfig={kubeconfig}",
                f"--address={LOOPBACK}:{status_port}",
                *args,
            ],
            self.log_path,
        )

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop(grace=5.0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def lines(self, pattern: re.Pattern[str]) -> list[str]:
        """CA's log lines that match `pattern`, oldest first."""
        return [line for line in self.log().splitlines() if pattern.search(line)]


def klog_time(line: str, year: int | None = None) -> datetime | None:
    """When a klog line (`I1206 07:37:00.799185 ...`) was written, in UTC; None for any other line. Pure.

    klog leaves out the year: `year` (default: this one) fills it in.
    """
    match = _KLOG_STAMP.match(line)
    if match is None:
        return None
    month, day, hour, minute, second, micro = (int(part) for part in match.groups())
    return datetime(year or datetime.now(UTC).year, month, day, hour, minute, second, micro, tzinfo=UTC)
