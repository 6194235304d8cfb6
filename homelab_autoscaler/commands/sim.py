"""`homelab-autoscaler sim`: a homelab to run the operator against, with no hardware and no cluster.

By default it starts our fake Kubernetes API on `--address`, writes a kubeconfig for it, installs the
CRDs, seeds Groups and Node CRs, and simulates their machines, also playing the Job controller and the
node-lifecycle controller (a fake API has neither). With `--kubeconfig` it attaches the same machines to
an existing cluster instead (kind, k3d, k3s): there the cluster's own controllers run, so those two roles
default to off and nothing is created unless `--seed` is given. Runs until SIGINT or SIGTERM, then stops
cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from kubernetes import client as kube_client

    from sim.fakeapi import FakeApiServer
    from sim.machines import MachineSimulator, SimulatedMachine

logger = logging.getLogger(__name__)

# The simulator and the Kubernetes client are imported only when the command runs, so that building the
# top-level parser (which loads every command module) stays cheap.
PROVIDER_ID_MODES: Final = ("empty", "preset", "k3s")
"""The values of sim.machines.ProviderIdMode; a test keeps the two in step."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run a simulated homelab (fake API server plus simulated machines)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    configure_parser(parser)
    parser.set_defaults(handler=run)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Adds every `sim` option to `parser` (shared by the subcommand and `python -m`)."""
    where = parser.add_argument_group("where the machines live")
    where.add_argument(
        "--address",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="address of the fake API server (default 127.0.0.1:0, a free port)",
    )
    where.add_argument(
        "--kubeconfig-out",
        type=Path,
        metavar="FILE",
        help="where to write the fake API's kubeconfig (default: a temporary directory, removed on exit)",
    )
    where.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="FILE",
        help="attach to the EXISTING cluster of this kubeconfig instead of starting the fake API",
    )
    where.add_argument("--context", help="kubeconfig context to use with --kubeconfig")
    where.add_argument(
        "--namespace", default="homelab", help="namespace of the Groups and Node CRs (default homelab)"
    )

    homelab = parser.add_argument_group("the homelab")
    homelab.add_argument("--machines", type=_non_negative_int, default=6, help="machines to seed (default 6)")
    homelab.add_argument("--groups", type=_positive_int, default=2, help="groups to seed (default 2)")
    homelab.add_argument(
        "--boot-seconds", type=_seconds, default=5.0, help="boot time of a machine (default 5)"
    )
    homelab.add_argument(
        "--shutdown-seconds",
        type=_seconds,
        default=3.0,
        help="time from a shutdown Job's success to power off (default 3)",
    )
    homelab.add_argument(
        "--provider-id",
        choices=PROVIDER_ID_MODES,
        default="empty",
        help="what kubelets put in spec.providerID: nothing, homelab://ns/name or k3s://node (default empty)",
    )
    homelab.add_argument(
        "--seed",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="install CRDs, namespace, Groups and Node CRs (default: on with the fake API, off with "
        "--kubeconfig; without seeding the machines are read from the namespace's Node CRs)",
    )

    behaviour = parser.add_argument_group("what the simulator plays")
    behaviour.add_argument(
        "--complete-jobs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="play the Job controller: run and finish power Jobs (default: on with the fake API only)",
    )
    behaviour.add_argument(
        "--mark-not-ready",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mark powered-off Nodes NotReady like the node-lifecycle controller "
        "(default: on with the fake API only)",
    )
    behaviour.add_argument(
        "--heartbeat-seconds",
        type=_positive_seconds,
        default=10.0,
        help="kubelet heartbeat interval (default 10)",
    )
    behaviour.add_argument(
        "--job-seconds", type=_seconds, default=1.0, help="how long a simulated power Job runs (default 1)"
    )

    faults = parser.add_argument_group("faults (each repeatable, NAME is a Node CR name)")
    faults.add_argument(
        "--fail-boot", action="append", default=[], metavar="NAME", help="its startup Jobs fail"
    )
    faults.add_argument(
        "--hang-boot", action="append", default=[], metavar="NAME", help="it never registers after boot"
    )
    faults.add_argument(
        "--fail-shutdown", action="append", default=[], metavar="NAME", help="its shutdown Jobs fail"
    )
    faults.add_argument(
        "--power-on-at",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="it powers itself on this many seconds after start",
    )
    faults.add_argument(
        "--power-off-at",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="it loses power this many seconds after start",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO"
    )


def run(args: argparse.Namespace) -> int:
    from kubernetes.config import ConfigException

    from kubeapi.kube_client import KubeError

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop_requested = threading.Event()
    previous = _install_stop_handlers(stop_requested)
    try:
        if args.kubeconfig is not None:
            return _run_attached(args, stop_requested)
        return _run_with_fake_api(args, stop_requested)
    except (ValueError, OSError, TimeoutError, KubeError, ConfigException) as error:
        print(f"homelab-autoscaler sim: {error}", file=sys.stderr)
        return 2
    finally:
        for signal_number, handler in previous.items():
            signal.signal(signal_number, handler)


def _run_with_fake_api(args: argparse.Namespace, stop_requested: threading.Event) -> int:
    from kubernetes import client as kube_client

    from sim.fakeapi import FakeApiServer
    from sim.machines import MachineSimulator

    host, port = _parse_address(args.address)
    temporary_directory = None
    kubeconfig_path: Path = args.kubeconfig_out
    if kubeconfig_path is None:
        temporary_directory = Path(tempfile.mkdtemp(prefix="homelab-sim-"))
        kubeconfig_path = temporary_directory / "kubeconfig"
    server = FakeApiServer(host=host, port=port)
    server.start()
    try:
        # The context names the simulated namespace, as the demo's does, so `kubectl get` and
        # `homelab-autoscaler status` with this kubeconfig show the homelab without `-n`.
        server.write_kubeconfig(kubeconfig_path, namespace=args.namespace)
        configuration = kube_client.Configuration()
        configuration.host = server.url
        with kube_client.ApiClient(configuration) as api_client:
            machines = _machines(args, api_client, seed_target=server, seed_default=True)
            simulator = MachineSimulator(
                api_client,
                _with_faults(machines, args),
                namespaces=[args.namespace],
                complete_jobs=_choose(args.complete_jobs, True),
                mark_not_ready=_choose(args.mark_not_ready, True),
                heartbeat_seconds=args.heartbeat_seconds,
                job_seconds=args.job_seconds,
            )
            _announce(
                f"fake API server: {server.url}",
                f"kubeconfig: {kubeconfig_path}",
                f"try: kubectl --kubeconfig {kubeconfig_path} get nodes,nodes.infra.homecluster.dev -A",
                f"simulating {len(machines)} machines in namespace {args.namespace}; SIGINT/SIGTERM stops",
            )
            _serve(simulator, stop_requested)
    finally:
        server.stop()
        if temporary_directory is not None:
            shutil.rmtree(temporary_directory, ignore_errors=True)
    return 0


def _run_attached(args: argparse.Namespace, stop_requested: threading.Event) -> int:
    from kubernetes import config as kube_config

    from sim.machines import MachineSimulator

    api_client = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]  # unannotated upstream
        config_file=str(args.kubeconfig), context=args.context
    )
    with api_client:
        machines = _machines(args, api_client, seed_target=api_client, seed_default=False)
        simulator = MachineSimulator(
            api_client,
            _with_faults(machines, args),
            namespaces=[args.namespace],
            complete_jobs=_choose(args.complete_jobs, False),
            mark_not_ready=_choose(args.mark_not_ready, False),
            heartbeat_seconds=args.heartbeat_seconds,
            job_seconds=args.job_seconds,
        )
        _announce(
            f"attached to API server: {api_client.configuration.host}",
            f"kubeconfig: {args.kubeconfig}",
            f"simulating {len(machines)} machines in namespace {args.namespace}; SIGINT/SIGTERM stops",
        )
        _serve(simulator, stop_requested)
    return 0


def _machines(
    args: argparse.Namespace,
    api_client: kube_client.ApiClient,
    seed_target: kube_client.ApiClient | FakeApiServer,
    seed_default: bool,
) -> list[SimulatedMachine]:
    from sim.machines import ProviderIdMode
    from sim.seed import machines_from_cluster, seed_homelab

    mode = ProviderIdMode(args.provider_id)
    if _choose(args.seed, seed_default):
        return seed_homelab(
            seed_target,
            args.namespace,
            args.groups,
            args.machines,
            boot_seconds=args.boot_seconds,
            shutdown_seconds=args.shutdown_seconds,
            provider_id_mode=mode,
        )
    return machines_from_cluster(
        api_client,
        args.namespace,
        boot_seconds=args.boot_seconds,
        shutdown_seconds=args.shutdown_seconds,
        provider_id_mode=mode,
    )


def _serve(simulator: MachineSimulator, stop_requested: threading.Event) -> None:
    simulator.start()
    try:
        stop_requested.wait()
    finally:
        simulator.stop()
    logger.info("stopped")


def _with_faults(machines: Sequence[SimulatedMachine], args: argparse.Namespace) -> list[SimulatedMachine]:
    """The machines with the fault flags applied; an unknown NAME is an error (a typo must not pass)."""
    from sim.machines import MachineFailures

    by_name = {machine.name: machine for machine in machines}
    failures: dict[str, dict[str, Any]] = {}

    def mark(name: str, field: str, value: Any) -> None:
        if name not in by_name:
            raise ValueError(
                f"no simulated machine named {name!r} (known: {', '.join(sorted(by_name)[:5])}...)"
            )
        failures.setdefault(name, {})[field] = value

    for name in args.fail_boot:
        mark(name, "fail_boot", True)
    for name in args.hang_boot:
        mark(name, "hang_boot", True)
    for name in args.fail_shutdown:
        mark(name, "fail_shutdown", True)
    for item in args.power_on_at:
        name, seconds = _name_and_seconds(item)
        mark(name, "power_on_at", seconds)
    for item in args.power_off_at:
        name, seconds = _name_and_seconds(item)
        mark(name, "power_off_at", seconds)
    return [
        dataclasses.replace(machine, failures=MachineFailures(**failures[machine.name]))
        if machine.name in failures
        else machine
        for machine in machines
    ]


def _install_stop_handlers(stop_requested: threading.Event) -> dict[int, Any]:
    def request_stop(signal_number: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            previous[signal_number] = signal.signal(signal_number, request_stop)
    return previous


def _announce(*lines: str) -> None:
    # Scripts and tests read these lines to find the API; flush so they do not sit in a pipe buffer.
    for line in lines:
        print(line)
    sys.stdout.flush()


def _choose(flag: bool | None, default: bool) -> bool:
    return default if flag is None else flag


def _parse_address(text: str) -> tuple[str, int]:
    host, separator, port = text.rpartition(":")
    if not separator or not host or not port.isdigit():
        raise ValueError(f"--address {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _name_and_seconds(text: str) -> tuple[str, float]:
    name, separator, seconds = text.partition("=")
    if not separator:
        raise ValueError(f"{text!r} is not NAME=SECONDS")
    return name, _seconds(seconds)


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m homelab_autoscaler.commands.sim`: the same command without the top-level CLI."""
    parser = argparse.ArgumentParser(prog="homelab-autoscaler sim", description=__doc__)
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
