"""A kubeconfig pointing at the fake server, so kubectl and the official client need no special casing.

Separate because it is the one artefact that leaves the process: a file other programs read. The token is a
dummy (the fake does no authentication); its presence keeps clients on their normal bearer-token path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONTEXT_NAME = "fakeapi"
DUMMY_TOKEN = "fakeapi-dummy-token"


def kubeconfig_document(server_url: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT_NAME, "cluster": {"server": server_url}}],
        "users": [{"name": CONTEXT_NAME, "user": {"token": DUMMY_TOKEN}}],
        "contexts": [
            {"name": CONTEXT_NAME, "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME, "namespace": namespace}}
        ],
        "current-context": CONTEXT_NAME,
        "preferences": {},
    }


def write_kubeconfig(path: str | Path, server_url: str, namespace: str = "default") -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(kubeconfig_document(server_url, namespace), sort_keys=False))
    return target
