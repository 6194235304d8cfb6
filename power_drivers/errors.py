"""The one error every driver raises: a machine-readable `PowerFailure` and a message for a person.

Drivers translate their library's exceptions into this at the edge, so the executor decides retries from the
failure alone and no library exception (whose text may quote a URL with credentials, or a password prompt) ever
reaches a log line, an Event or a status. Messages name the machine and the driver, never a secret.
"""

from __future__ import annotations

from actors.power_port import PowerFailure


class PowerDriverError(Exception):
    """A power operation failed; `failure` says why for machines, the message says it for people."""

    def __init__(self, failure: PowerFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message

    def __str__(self) -> str:
        return self.message
