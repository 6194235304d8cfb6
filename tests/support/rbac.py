"""RBAC as Kubernetes would evaluate it, for the tests that hold the manifests to the operator's real API calls.

Three pieces, each small enough to read in one go:

- `classify_request`: what the API server's authorizer sees in an HTTP request (verb, group, resource with
  subresource, namespace, name), following the rules of its request-info resolver: GET on a collection is
  `list`, with `watch=1` it is `watch`, GET on a name is `get`, POST `create`, PUT `update`, PATCH `patch`,
  DELETE on a name `delete` and on a collection `deletecollection`;
- `operator_grants`: the permissions the rendered manifests give the operator's ServiceAccount, found through
  the bindings that name it (a role nobody binds grants nothing);
- `allows`: whether one permission admits one request.

Shared by the security integration tests (tests/integration/security) and tests/integration/manifests/test_manifests.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

from kubeapi.api_calls import ApiCall, Grant, NamedBy, RoleKind

ROOT: Final = Path(__file__).resolve().parents[2]
MANIFESTS: Final = ROOT / "manifests"
KUBECTL: Final = shutil.which("kubectl")

Document = dict[str, Any]

# --- requests --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request as the API server's authorizer sees it."""

    method: str
    verb: str
    group: str
    version: str
    resource: str
    """Plural resource name, with `/subresource` when the request is on a subresource."""
    namespace: str | None
    name: str | None
    query: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        named = f" {self.name}" if self.name else ""
        return f"{self.verb} {self.resource}{named} ({self.group or 'core'}){where} [{self.method}]"


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true")


def classify_request(method: str, target: str) -> ApiRequest | None:
    """The authorizer's view of `method target` (target: path and query); None for a non-resource path."""
    split = urlsplit(target)
    segments = [unquote(segment) for segment in split.path.strip("/").split("/") if segment]
    query = tuple(parse_qsl(split.query, keep_blank_values=True))
    if segments[:1] == ["api"] and len(segments) >= 3:
        group, version, rest = "", segments[1], segments[2:]
    elif segments[:1] == ["apis"] and len(segments) >= 4:
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return None  # discovery, /version, /healthz: no resource, no RBAC rule of ours applies
    namespace: str | None = None
    # /namespaces/<ns>/<resource>/... is namespaced; /namespaces/<name>[/status] is the Namespace object itself.
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    name = rest[1] if len(rest) > 1 else None
    resource = "/".join((rest[0], *rest[2:3]))
    watching = _truthy(dict(query).get("watch"))
    verbs = {
        "GET": "watch" if watching else ("list" if name is None else "get"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "deletecollection" if name is None else "delete",
    }
    return ApiRequest(method, verbs.get(method, method.lower()), group, version, resource, namespace, name, query)


def matches(call: ApiCall, request: ApiRequest, *, operator_namespace: str, watch_namespace: str) -> bool:
    """Whether `request` is an instance of the table entry `call`, module aside (HTTP does not say who sent it)."""
    return (
        request.verb in call.verbs
        and request.group == call.group
        and request.resource == call.resource
        and call.scope.covers(request.namespace, operator_namespace=operator_namespace, watch_namespace=watch_namespace)
    )


# --- the rendered manifests --------------------------------------------------------------------------------------


def kustomize(directory: Path = MANIFESTS) -> list[Document]:
    """The objects `kubectl kustomize` renders from `directory`."""
    assert KUBECTL is not None, "kubectl is needed to render the manifests"
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def kustomize_with_components(directory: Path, *components: str) -> list[Document]:
    """The objects of the base with `components` of manifests/components/, as a user's overlay in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    base = os.path.relpath(MANIFESTS, directory)
    listed = "".join(f"  - {base}/components/{name}\n" for name in components)
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {base}\ncomponents:\n{listed}"
    )
    return kustomize(directory)


def _one(documents: Iterable[Document], kind: str, name: str) -> Document:
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


@dataclass(frozen=True)
class Installation:
    """What the rendered Deployment tells the operator: its identity, namespaces and the names of its objects."""

    service_account: str
    operator_namespace: str
    watch_namespace: str
    object_names: Mapping[NamedBy, str]


def installation(documents: list[Document], deployment: str = "homelab-autoscaler") -> Installation:
    """Read from the Deployment's pod template and container arguments (`--flag=value`)."""
    rendered = _one(documents, "Deployment", deployment)
    pod = rendered["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    flags = dict(argument.partition("=")[::2] for argument in container["args"] if argument.startswith("--"))
    namespace = rendered["metadata"]["namespace"]
    operator_namespace = flags["--namespace"].replace("$(POD_NAMESPACE)", namespace)
    return Installation(
        service_account=pod["serviceAccountName"],
        operator_namespace=operator_namespace,
        watch_namespace=flags.get("--watch-namespace", ""),
        object_names={named_by: flags[named_by.value] for named_by in NamedBy},
    )


def rule_grants(role_kind: RoleKind, rules: Iterable[Mapping[str, Any]]) -> set[Grant]:
    """Every (group, resource, verb, names) one role's rules grant, as separate grants."""
    return {
        Grant(role_kind, group, resource, verb, tuple(rule.get("resourceNames") or ()))
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def operator_grants(documents: list[Document], setup: Installation) -> set[Grant]:
    """What the bindings naming the operator's ServiceAccount grant it.

    A ClusterRoleBinding grants everywhere (`RoleKind.CLUSTER_ROLE`); a RoleBinding grants in its own namespace
    only, which must be the operator's (`RoleKind.ROLE`) or, for a component's (native-power), the watched one
    (`RoleKind.WATCHED_NAMESPACE_ROLE`), whichever kind of role it refers to.
    """
    subject = {"kind": "ServiceAccount", "name": setup.service_account, "namespace": setup.operator_namespace}
    grants: set[Grant] = set()
    for binding in documents:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding") or subject not in binding.get("subjects", []):
            continue
        reference = binding["roleRef"]
        role = _one(documents, reference["kind"], reference["name"])
        if binding["kind"] == "ClusterRoleBinding":
            grants |= rule_grants(RoleKind.CLUSTER_ROLE, role["rules"])
        elif binding["metadata"]["namespace"] == setup.operator_namespace:
            grants |= rule_grants(RoleKind.ROLE, role["rules"])
        else:
            assert binding["metadata"]["namespace"] == setup.watch_namespace, (
                f"RoleBinding {binding['metadata']['name']} binds the operator outside its own and the watched "
                "namespace"
            )
            grants |= rule_grants(RoleKind.WATCHED_NAMESPACE_ROLE, role["rules"])
    return grants


def allows(grant: Grant, request: ApiRequest, operator_namespace: str, watch_namespace: str = "") -> bool:
    """Whether `grant` admits `request`, as the RBAC authorizer decides (no wildcards: we never write them)."""
    if grant.role is RoleKind.ROLE and request.namespace != operator_namespace:
        return False
    if grant.role is RoleKind.WATCHED_NAMESPACE_ROLE and request.namespace != watch_namespace:
        return False
    if (grant.group, grant.resource, grant.verb) != (request.group, request.resource, request.verb):
        return False
    return not grant.resource_names or request.name in grant.resource_names
