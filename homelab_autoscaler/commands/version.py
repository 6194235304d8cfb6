"""`homelab-autoscaler version`: print the installed version, for bug reports and upgrade scripts.

It prints exactly what `homelab-autoscaler --version` prints (`version_line`), so a bug report or a script reads
the same line whichever spelling a person used.
"""

from __future__ import annotations

import argparse

from homelab_autoscaler import DISTRIBUTION_NAME, __version__


def version_line() -> str:
    """`homelab-autoscaler 1.2.3`: the one line both `version` and `--version` print."""
    return f"{DISTRIBUTION_NAME} {__version__}"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    subparsers.add_parser("version", help="print the version and exit")


def run(args: argparse.Namespace) -> int:
    print(version_line())
    return 0
