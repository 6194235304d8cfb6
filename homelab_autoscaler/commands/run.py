"""`homelab-autoscaler run`: the operator itself, until SIGTERM or SIGINT.

Settings come from flags, then `HOMELAB_AUTOSCALER_<FLAG>` environment variables, then defaults
(`homelab_autoscaler.settings`); logging is configured once; the `Operator` starts every part. On SIGTERM or
SIGINT it stops intake, lets Kubernetes writes in progress finish, releases its Lease and exits 0. Exit 2 means
the settings are invalid; exit 1 that the operator could not start (an address in use, no cluster to talk to).

Against the simulator on a workstation:

    homelab-autoscaler sim --kubeconfig-out /tmp/homelab.kubeconfig &
    homelab-autoscaler run --kubeconfig /tmp/homelab.kubeconfig --watch-namespace homelab

The admission webhook is served only when `--webhook-address` is given (the Deployment gives it).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from homelab_autoscaler import settings as settings_module

LOGGER = logging.getLogger(__name__)

# The operator (and with it grpc, kubernetes and thespian) is imported only when the command runs, so that building
# the top-level parser, which loads every command module, stays cheap.


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the operator (power machines on and off for the Cluster Autoscaler)",
        description="Run the operator: serve the Cluster Autoscaler's externalgrpc calls, watch Group and Node "
        "resources, power machines on and off through Jobs, validate resources as an admission webhook. Every "
        "flag can also be set through the environment variable named in its help.",
    )
    settings_module.add_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_module.settings_from(args)
    except settings_module.SettingsError as error:
        print(f"homelab-autoscaler run: invalid settings: {error}", file=sys.stderr)
        return 2

    from homelab_autoscaler.logs import configure_logging

    configure_logging(settings.logging.format, settings.logging.level)
    stop_requested = threading.Event()
    previous = _install_stop_handlers(stop_requested)
    try:
        return _serve(settings, stop_requested)
    finally:
        for signal_number, handler in previous.items():
            signal.signal(signal_number, handler)


def _serve(settings: settings_module.Settings, stop_requested: threading.Event) -> int:
    from kubernetes.config import ConfigException

    from actors.errors import OperatorError
    from homelab_autoscaler.native_power import native_power_port
    from homelab_autoscaler.operator import Operator

    try:
        operator = Operator(settings, power=native_power_port)
        operator.start()
    except (OSError, ConfigException, OperatorError, ValueError) as error:
        LOGGER.error("homelab-autoscaler run: cannot start: %s", error)
        return 1
    try:
        stop_requested.wait()
    finally:
        operator.stop()
    return 0


def _install_stop_handlers(stop_requested: threading.Event) -> dict[int, Any]:
    def request_stop(signal_number: int, frame: FrameType | None) -> None:
        LOGGER.info("received %s; stopping", signal.Signals(signal_number).name)
        stop_requested.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            previous[signal_number] = signal.signal(signal_number, request_stop)
    return previous
