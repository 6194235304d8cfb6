"""Homelab Autoscaler's composition root: the command line, settings and the wiring of every part.

Everything else (schemas, actors, gateway, webhooks, simulator) is a library; this package is the only one
allowed to import them all and turn them into a running program.
"""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION_NAME = "homelab-autoscaler"


def _installed_version() -> str:
    try:
        return metadata.version(DISTRIBUTION_NAME)
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


__version__ = _installed_version()
