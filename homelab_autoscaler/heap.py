"""Garbage-collector and heap tuning around a leadership term's inventory.

Kept apart from the composition root (`homelab_autoscaler.operator`), which only calls it at the two moments that
matter: once the first inventory is applied, and when the term ends.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys

LOGGER = logging.getLogger(__name__)


def settle_heap_after_inventory() -> None:
    """Free the listing's garbage, hand freed heap back to the OS, and keep the long-lived objects out of GC passes.

    Building every machine from a full listing keeps every raw resource alive at once, and RSS keeps that
    high-water mark: on glibc, freed blocks stay in the process unless trimmed. What survives the inventory (models,
    actors, metric series) lives for the whole term, so freezing it spares every later collection from walking it;
    `thaw_heap` makes it collectable again once the term ends. Never fatal: a libc without `malloc_trim` (musl,
    macOS) only means RSS stays higher.
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            LOGGER.debug("malloc_trim is not available; freed heap stays with the process")
    gc.freeze()


def thaw_heap() -> None:
    """Undo `settle_heap_after_inventory`'s freeze, so a finished term's objects (and their cycles) can be collected."""
    gc.unfreeze()
