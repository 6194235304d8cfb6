"""The `homelab-autoscaler` command: one argparse parser whose subcommands are the modules listed in `COMMANDS`.

Each subcommand is its own module in `homelab_autoscaler/commands/` exposing `add_parser(subparsers)` and
`run(args) -> int`, so each imports only what it needs when it runs and importing the CLI stays cheap. The list
is written out rather than discovered: what the command offers is read here at a glance, and a stray module in
the package cannot become a command. A new command is a module there and a name in `COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Final, Protocol, cast

from homelab_autoscaler.commands import crds, demo, docs, explain, run, sim, status, version
from homelab_autoscaler.commands.version import version_line


class Command(Protocol):
    """What a module in homelab_autoscaler.commands provides."""

    def add_parser(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


COMMANDS: Final[tuple[Command, ...]] = (crds, demo, docs, explain, run, sim, status, version)
"""Every subcommand, in the order `--help` lists them."""


def build_parser(available: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    """The top-level parser; `args.handler` is the chosen subcommand's `run`."""
    parser = argparse.ArgumentParser(
        prog="homelab-autoscaler",
        description="Powers physical homelab machines on and off for the Kubernetes Cluster Autoscaler.",
    )
    parser.add_argument("--version", action="version", version=version_line())
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    for command in available:
        known = set(subparsers.choices)
        command.add_parser(subparsers)
        for name in set(subparsers.choices) - known:
            # The contract is add_parser + run; wiring run as the handler is the CLI's job, not each module's.
            if subparsers.choices[name].get_default("handler") is None:
                subparsers.choices[name].set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    handler = cast(Callable[[argparse.Namespace], int], args.handler)
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
