"""`homelab-autoscaler demo`: the whole system working in one process, with nothing but Python installed.

It starts a fake Kubernetes API, seeds a small homelab (two groups, six machines, one of which cannot boot), starts
the operator against it (gRPC, webhook and metrics on free loopback ports) and the machine simulator, then drives it
over real gRPC the way Cluster Autoscaler would: scale up, watch machines boot and register, watch the failed boot
go to cooldown, scale down. A live view shows what happens (one line per change when stdout is not a terminal); a
summary closes the run. Exit status 0 when every step reached its outcome within its deadline, 1 when one did not
(with a message saying what was missing), 2 for usage errors, 130 when interrupted. With `--serve` everything keeps
running after the scenario, so a person can use kubectl and point a real Cluster Autoscaler at it, until Ctrl-C.

This module is the shell: flags, signals, the choice of display, printing. The parts are in
`homelab_autoscaler.demo`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    from homelab_autoscaler.demo.scenario import Display
    from homelab_autoscaler.demo.session import DemoSession

# The operator, the simulator and grpc are imported only when the command runs, so that building the top-level
# parser (which loads every command module) stays cheap.

PROG: Final = "homelab-autoscaler demo"
EXIT_FAILED_TO_START: Final = 1
EXIT_USAGE: Final = 2
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a simulated homelab driven as Cluster Autoscaler would, in one process (start here)",
        description="Run the operator against a simulated homelab in one process and drive it over gRPC as "
        "Cluster Autoscaler would: scale up, a failed boot going to cooldown, scale down. Shows a live view and "
        "ends with a summary. Exit status 0 when the scenario reached its outcome, 1 when it did not.",
    )
    configure_parser(parser)
    parser.set_defaults(handler=run)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Adds every `demo` option to `parser`."""
    parser.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="FACTOR",
        help="run the simulated world this many times faster (boots, shutdowns, pauses); default 1, about 20 s",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="after the scenario keep everything running and print the kubeconfig, the gRPC address (with a "
        "cloud-config for Cluster Autoscaler) and the metrics URL, until Ctrl-C",
    )
    where = parser.add_argument_group("where it listens (loopback, free ports by default)")
    where.add_argument("--grpc-address", default="127.0.0.1:0", metavar="HOST:PORT",
                       help="the operator's externalgrpc service, for Cluster Autoscaler")
    where.add_argument("--metrics-address", default="127.0.0.1:0", metavar="HOST:PORT",
                       help="/metrics, /healthz and /readyz")
    where.add_argument("--webhook-address", default="127.0.0.1:0", metavar="HOST:PORT",
                       help="the admission webhook (HTTPS); empty disables it")
    where.add_argument("--api-address", default="127.0.0.1:0", metavar="HOST:PORT",
                       help="the fake Kubernetes API server")
    where.add_argument("--kubeconfig-out", type=Path, metavar="FILE",
                       help="write the fake API's kubeconfig here (kept); default a temporary file removed on exit")
    parser.add_argument("--log-level", default="WARNING", choices=LOG_LEVELS,
                        help="operator log records at this level or above go to stderr (default WARNING)")


def run(args: argparse.Namespace) -> int:
    from homelab_autoscaler.demo.homelab import demo_homelab
    from homelab_autoscaler.demo.session import DemoOptions, DemoSession
    from homelab_autoscaler.logs import configure_logging
    from homelab_autoscaler.settings import LogFormat, LogLevel

    _tolerate_unencodable(sys.stdout)
    _tolerate_unencodable(sys.stderr)
    try:
        homelab = demo_homelab(getattr(args, "speed", 1.0))
        log_level = LogLevel(getattr(args, "log_level", "WARNING"))
        options = DemoOptions(
            api_address=_address(getattr(args, "api_address", "127.0.0.1:0"), "--api-address"),
            grpc_address=_address(getattr(args, "grpc_address", "127.0.0.1:0"), "--grpc-address"),
            metrics_address=_address(getattr(args, "metrics_address", "127.0.0.1:0"), "--metrics-address"),
            webhook_address=_address(getattr(args, "webhook_address", "127.0.0.1:0"), "--webhook-address", True),
            kubeconfig_out=getattr(args, "kubeconfig_out", None),
            log_level=log_level,
        )
    except ValueError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE

    configure_logging(LogFormat.TEXT, log_level)
    stop = threading.Event()
    previous = _install_stop_handlers(stop)
    try:
        return _run(DemoSession(homelab, options), args, stop)
    finally:
        for signal_number, handler in previous.items():
            signal.signal(signal_number, handler)


def _run(session: DemoSession, args: argparse.Namespace, stop: threading.Event) -> int:
    from kubernetes.config import ConfigException

    from actors.errors import OperatorError
    from homelab_autoscaler.demo import scenario
    from homelab_autoscaler.demo.display import LineDisplay, QuietDisplay
    from homelab_autoscaler.demo.summary import energy_from_metrics, render_summary, summarize

    quiet = bool(getattr(args, "quiet", False))
    serve = bool(getattr(args, "serve", False))
    if not quiet:
        _print(f"{PROG}: starting a fake Kubernetes API, {len(session.homelab.machines)} simulated machines and the "
               "operator ...")
    try:
        session.start()
    except (OSError, TimeoutError, ConfigException, OperatorError, ValueError) as error:
        print(f"{PROG}: could not start: {error}", file=sys.stderr)
        return EXIT_FAILED_TO_START
    try:
        display = _display(session, quiet)
        try:
            result = scenario.play(session.homelab, session.grpc_target, session.api_client, display, stop)
        finally:
            display.close()
        exposition = session.metrics_text()
        summary = summarize(result.history, session.homelab.power_watts(), reached=result.reached,
                            outcome=result.message,
                            counted=energy_from_metrics(exposition) if exposition is not None else None)
        _print(("" if quiet else "\n") + render_summary(summary))
        if not result.reached:
            print(f"{PROG}: {result.message}", file=sys.stderr)
        if serve and result.exit_code != scenario.EXIT_INTERRUPTED:
            _print(_serving_text(session))
            watcher = QuietDisplay() if quiet else LineDisplay(sys.stdout)
            scenario.watch(session.homelab, session.grpc_target, session.api_client, watcher, stop)
            _print("stopping ...")
        return result.exit_code
    finally:
        session.stop()


def _display(session: DemoSession, quiet: bool) -> Display:
    from homelab_autoscaler.commands.status import use_colour
    from homelab_autoscaler.demo.display import LineDisplay, LiveDisplay, QuietDisplay

    if quiet:
        return QuietDisplay()
    isatty = getattr(sys.stdout, "isatty", None)
    if isatty is not None and isatty():
        return LiveDisplay(
            sys.stdout,
            session.homelab.expected_boot_seconds(),
            colour=use_colour(sys.stdout),
            native=session.homelab.native_power_texts(),
        )
    return LineDisplay(sys.stdout)


def _serving_text(session: DemoSession) -> str:
    """What a person needs to reach the running demo (scripts and tests read the `name: value` lines)."""
    kubeconfig = session.kubeconfig
    lines = [
        "The demo keeps running; Ctrl-C stops it.",
        f"kubeconfig: {kubeconfig}",
        f"gRPC address: {session.grpc_target}",
        f"metrics: {session.metrics_url}",
    ]
    if session.webhook_address is not None:
        lines.append(f"webhook: https://{session.webhook_address}")
    lines += [
        "",
        "Try:",
        f"  kubectl --kubeconfig {kubeconfig} get groups,nodes.infra.homecluster.dev",
        f"  kubectl --kubeconfig {kubeconfig} get nodes -o wide",
        f"  homelab-autoscaler status --kubeconfig {kubeconfig}",
        "",
        "Cluster Autoscaler (--cloud-provider=externalgrpc --cloud-config=cloud-config.yaml), cloud-config.yaml:",
        f"  address: {session.grpc_target}",
        "",
    ]
    return "\n".join(lines)


def _print(text: str) -> None:
    # Scripts and tests read these lines from a pipe; flush so they do not sit in a buffer.
    print(text, flush=True)


def _tolerate_unencodable(stream: TextIO) -> None:
    """Arrows and bars must never crash the demo on a terminal whose encoding lacks them."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")


def _install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    def request_stop(signal_number: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            previous[signal_number] = signal.signal(signal_number, request_stop)
    return previous


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 (exclusive) and 1000")
    return value


def _address(value: str, flag: str, optional: bool = False) -> str:
    if optional and value == "":
        return value
    host, separator, port = value.rpartition(":")
    if not separator or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{flag} {value!r} is not HOST:PORT (port 0 picks a free one)")
    return value


def main(argv: list[str] | None = None) -> int:
    """`python -m homelab_autoscaler.commands.demo`: the same command without the top-level CLI."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
