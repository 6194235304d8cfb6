"""`homelab-autoscaler version`: print the installed version, for bug reports and upgrade scripts."""

from __future__ import annotations

import argparse

from homelab_autoscaler import __version__


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    subparsers.add_parser("version", help="print the version and exit")


def run(args: argparse.Namespace) -> int:
    print(__version__)
    return 0
