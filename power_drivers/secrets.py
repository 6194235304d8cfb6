"""Where drivers get credentials: the `SecretReader` seam and its errors.

A driver needs a BMC password, an SSH private key or a CA bundle only for the length of one operation, so the
executor reads them through this seam at the time of each try and drops them afterwards; nothing caches them. The
Kubernetes implementation (one `get` of one named Secret or ConfigMap, never a list or a watch, so RBAC can grant
`get` on exactly the names in `spec.power`) lives with the Kubernetes adapters; tests use an in-memory one.
"""

from __future__ import annotations

from typing import Protocol

from actors.power_port import PowerFailure
from power_drivers.errors import PowerDriverError


class SecretMissingError(PowerDriverError):
    """The Secret (or ConfigMap) does not exist, or the operator may not read it."""

    def __init__(self, kind: str, namespace: str, name: str, why: str = "not found") -> None:
        super().__init__(PowerFailure.SECRET_MISSING, f"{kind} {namespace}/{name}: {why}")


class SecretKeyMissingError(PowerDriverError):
    """The Secret (or ConfigMap) exists but has no such key, or the key is empty."""

    def __init__(self, kind: str, namespace: str, name: str, key: str) -> None:
        super().__init__(PowerFailure.SECRET_KEY_MISSING, f"{kind} {namespace}/{name} has no key {key!r}")


class SecretUnreadableError(PowerDriverError):
    """The API server could not be asked (unreachable, overloaded): worth trying again."""

    def __init__(self, kind: str, namespace: str, name: str, why: str) -> None:
        super().__init__(PowerFailure.SECRET_UNREADABLE, f"cannot read {kind} {namespace}/{name}: {why}")


class SecretReader(Protocol):
    """Reads one key of one Secret or ConfigMap; raises the errors above, never logs a value."""

    def read(self, namespace: str, name: str, key: str) -> bytes:
        """The decoded value of `key` in Secret `namespace/name`."""

    def read_config_map(self, namespace: str, name: str, key: str) -> bytes:
        """The value of `key` in ConfigMap `namespace/name` (data or binaryData)."""


class InMemorySecretReader:
    """A `SecretReader` over plain dicts, for tests and the simulator without an API server."""

    def __init__(
        self,
        secrets: dict[tuple[str, str], dict[str, bytes]] | None = None,
        config_maps: dict[tuple[str, str], dict[str, bytes]] | None = None,
    ) -> None:
        self.secrets = secrets if secrets is not None else {}
        self.config_maps = config_maps if config_maps is not None else {}
        self.reads = 0

    def read(self, namespace: str, name: str, key: str) -> bytes:
        self.reads += 1
        return _lookup(self.secrets, "Secret", namespace, name, key)

    def read_config_map(self, namespace: str, name: str, key: str) -> bytes:
        self.reads += 1
        return _lookup(self.config_maps, "ConfigMap", namespace, name, key)


def _lookup(store: dict[tuple[str, str], dict[str, bytes]], kind: str, namespace: str, name: str, key: str) -> bytes:
    data = store.get((namespace, name))
    if data is None:
        raise SecretMissingError(kind, namespace, name)
    value = data.get(key)
    if not value:
        raise SecretKeyMissingError(kind, namespace, name, key)
    return value
