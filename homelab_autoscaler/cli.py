"""The `homelab-autoscaler` command: one argparse parser whose subcommands live in `commands/`.

Each subcommand is its own module in `homelab_autoscaler/commands/` exposing `add_parser(subparsers)` and
`run(args) -> int`, so adding one (run, sim, demo, status) never touches this file and importing the CLI
stays cheap for the commands that need little. Modules are found by listing the package, in name order.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Protocol, cast

from homelab_autoscaler import commands
from homelab_autoscaler.commands.version import version_line


class Command(Protocol):
    """What a module in homelab_autoscaler.commands provides."""

    def add_parser(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def discover_commands(package: ModuleType = commands) -> list[Command]:
    """Every module of `package` that defines both add_parser and run, in name order."""
    found: list[Command] = []
    for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        if callable(getattr(module, "add_parser", None)) and callable(getattr(module, "run", None)):
            found.append(cast(Command, module))
    return found


def build_parser(available: Sequence[Command] | None = None) -> argparse.ArgumentParser:
    """The top-level parser; `args.handler` is the chosen subcommand's `run`."""
    parser = argparse.ArgumentParser(
        prog="homelab-autoscaler",
        description="Powers physical homelab machines on and off for the Kubernetes Cluster Autoscaler.",
    )
    parser.add_argument("--version", action="version", version=version_line())
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    for command in discover_commands() if available is None else available:
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
