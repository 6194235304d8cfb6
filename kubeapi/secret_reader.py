"""The Kubernetes `SecretReader` of the power drivers: one `get` of one named Secret or ConfigMap per read.

Never a list or a watch, so the operator's RBAC can grant `get` on exactly the Secrets that `spec.power` names and
nothing else; never a cache, so a rotated password is used at the next try and no credential outlives the try
that read it. Values are returned to the caller and go nowhere else (no log line, no error message quotes them).
Errors are the power drivers' own (`power_drivers.secrets`), so the executor maps them to `SecretMissing`,
`SecretKeyMissing` or a retryable failure without knowing Kubernetes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from kubeapi.kube_client import KubeApi, KubeError, KubeNotFound, KubeTransient
from power_drivers.secrets import SecretKeyMissingError, SecretMissingError, SecretUnreadableError

FORBIDDEN: Final = 403


class KubeSecretReader:
    """Reads Secret and ConfigMap keys through a `KubeApi`."""

    def __init__(self, api: KubeApi) -> None:
        self._api = api

    def read(self, namespace: str, name: str, key: str) -> bytes:
        secret = self._get("Secret", f"/api/v1/namespaces/{namespace}/secrets/{name}", namespace, name)
        encoded = (secret.get("data") or {}).get(key)
        if not encoded:
            raise SecretKeyMissingError("Secret", namespace, name, key)
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as error:
            raise SecretKeyMissingError("Secret", namespace, name, f"{key} (not base64)") from error

    def read_config_map(self, namespace: str, name: str, key: str) -> bytes:
        config_map = self._get("ConfigMap", f"/api/v1/namespaces/{namespace}/configmaps/{name}", namespace, name)
        text = (config_map.get("data") or {}).get(key)
        if text:
            return str(text).encode()
        binary = (config_map.get("binaryData") or {}).get(key)
        if binary:
            return base64.b64decode(binary)
        raise SecretKeyMissingError("ConfigMap", namespace, name, key)

    def _get(self, kind: str, path: str, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self._api.get(path, what=f"{kind} {namespace}/{name}")
        except KubeNotFound as error:
            raise SecretMissingError(kind, namespace, name) from error
        except KubeTransient as error:
            raise SecretUnreadableError(kind, namespace, name, error.message) from error
        except KubeError as error:
            why = "the operator may not read it (RBAC)" if error.status == FORBIDDEN else error.message
            raise SecretMissingError(kind, namespace, name, why) from error
