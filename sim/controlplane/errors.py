"""The control-plane fixture's errors, in one tree so a caller can catch them all at once.

    ControlPlaneError
    ├── BinariesNotFound          nothing to run: no folder configured, folder missing, a required binary missing
    ├── BadBinary                 a binary is there but unusable: corrupt or truncated xz, not ELF, wrong machine
    └── ControlPlaneStartFailed   a component died while starting, or did not become ready in time

Every message is one line naming the file or component concerned (a start failure adds that component's log tail
on the following lines), because these end up as a pytest skip reason or failure headline.
"""

from __future__ import annotations


class ControlPlaneError(Exception):
    """Anything that stops the real control plane from being found, unpacked or started."""


class BinariesNotFound(ControlPlaneError):
    """No binaries to run: the caller may skip (there is nothing wrong, the environment just lacks them)."""


class BadBinary(ControlPlaneError):
    """A binary is present but cannot run here: the environment is broken and a test must fail, not skip."""


class ControlPlaneStartFailed(ControlPlaneError):
    """A component exited during start or was not ready before the deadline; names it and carries its log tail."""

    def __init__(self, component: str, reason: str, log_tail: str) -> None:
        super().__init__(f"{component} {reason}\n--- last lines of {component}'s log ---\n{log_tail}")
        self.component = component
        self.reason = reason
        self.log_tail = log_tail
