"""Subcommands of `homelab-autoscaler`, one module each (`add_parser(subparsers)` and `run(args) -> int`).

Kept as separate modules so that each command imports only what it needs; `homelab_autoscaler.cli.COMMANDS`
lists them.
"""
