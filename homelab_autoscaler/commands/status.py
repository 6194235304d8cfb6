"""`homelab-autoscaler status`: the groups and machines of any cluster, as a table or as JSON, from a kubeconfig.

This module is the thin shell: it parses the flags, lists Group and Node resources over the API and prints what
`homelab_autoscaler.status_view` (pure) makes of them. It needs no operator running, only read access to the two
resources, so it works the same against a real cluster, the simulator or the demo.

Exit status: 0 normally; 3 when any listed machine is Quarantined (it stays out of service until a person resets
it, so scripts and monitoring can alert on the exit status alone); 1 when the API cannot be read (a message on
stderr, no traceback); 2 for usage errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from kubeapi.kube_client import KubeApi

# The Kubernetes client is imported only when the command runs, so that building the top-level parser (which loads
# every command module) stays cheap.

PROG: Final = "homelab-autoscaler status"
OUTPUT_FORMATS: Final = ("text", "json", "wide")
PAGE_SIZE: Final = 500
"""Items per list request: a 5000-machine homelab is ten requests, none of them huge."""
SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE: Final = "default"
EXIT_API_ERROR: Final = 1
EXIT_USAGE: Final = 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show groups and machines: state, since, operation, last error, cooldown",
        description="Show every Group (min, max, target, ready) and every machine (state, since, current "
        "operation, last error, cooldown, power policy) from the cluster of a kubeconfig. Exit status 3 when "
        "a machine is Quarantined, 1 when the API cannot be read, 2 for usage errors.",
    )
    configure_parser(parser)
    parser.set_defaults(handler=run)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Adds every `status` option to `parser`."""
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="FILE",
        help="kubeconfig to use (default: in a pod its service account, else $KUBECONFIG or ~/.kube/config)",
    )
    parser.add_argument("--context", help="kubeconfig context to use (default: the current context)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="namespace to show (default: the context's namespace, else default)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="show every namespace")
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_FORMATS,
        default="text",
        help="text (default), wide (adds per-state counts, provider ids, powered-on time) or json (for scripts)",
    )
    parser.add_argument("--group", metavar="NAME", help="show only this group and its machines")


def run(args: argparse.Namespace) -> int:
    from kubernetes.config import ConfigException
    from yaml import YAMLError

    from actors.errors import OperatorError

    output = getattr(args, "output", "text")
    if output not in OUTPUT_FORMATS:
        return _fail(f"--output must be one of {', '.join(OUTPUT_FORMATS)}, not {output!r}", EXIT_USAGE)
    if getattr(args, "namespace", None) and getattr(args, "all_namespaces", False):
        return _fail("--namespace and --all-namespaces cannot be combined", EXIT_USAGE)
    try:
        return _show(args, output)
    except (OperatorError, ConfigException, OSError, YAMLError, ValueError) as error:
        return _fail(str(error) or type(error).__name__, EXIT_API_ERROR)


def _show(args: argparse.Namespace, output: str) -> int:
    from homelab_autoscaler import status_view
    from kubeapi.kube_client import KubeApi, new_api_client

    kubeconfig: Path | None = getattr(args, "kubeconfig", None)
    context: str | None = getattr(args, "context", None)
    group_name: str | None = getattr(args, "group", None)
    api_client = new_api_client(kubeconfig, context, pool_size=2)
    try:
        namespace: str | None = None
        if not getattr(args, "all_namespaces", False):
            namespace = getattr(args, "namespace", None) or current_namespace(kubeconfig, context)
        raw_groups, raw_nodes = _list_resources(KubeApi(api_client), namespace, group_name)
    finally:
        api_client.close()  # type: ignore[no-untyped-call]  # the client's close() is unannotated

    view = status_view.build_view(
        [status_view.parse_group(raw) for raw in raw_groups],
        [status_view.parse_node(raw) for raw in raw_nodes],
        datetime.now(UTC),
    )
    where = f"namespace {namespace}" if namespace is not None else "any namespace"
    if group_name is not None and not view.groups and not view.machines:
        return _fail(f"no Group named {group_name!r} and no machines in it in {where}", EXIT_API_ERROR)
    if output == "json":
        import json

        text = json.dumps(status_view.to_document(view), indent=2) + "\n"
    else:
        text = status_view.render_text(
            view, wide=output == "wide", show_namespace=namespace is None, colour=use_colour(sys.stdout)
        )
    if not view.groups and not view.machines:
        hint = "" if namespace is None else " (-A shows every namespace)"
        print(f"No Group or Node resources found in {where}{hint}.", file=sys.stderr)
    _write(text)
    return status_view.exit_code(view)


def _list_resources(
    api: KubeApi, namespace: str | None, group_name: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from schemas import GROUP_VERSION
    from schemas.labels import GROUP_LABEL

    base = f"/apis/{GROUP_VERSION}" + (f"/namespaces/{namespace}" if namespace is not None else "")
    groups = list_all(api, f"{base}/groups", {}, "Group")
    node_query = {"labelSelector": f"{GROUP_LABEL}={group_name}"} if group_name is not None else {}
    nodes = list_all(api, f"{base}/nodes", node_query, "Node")
    if group_name is not None:
        groups = [group for group in groups if (group.get("metadata") or {}).get("name") == group_name]
    return groups, nodes


def list_all(api: KubeApi, path: str, query: Mapping[str, str], kind: str) -> list[dict[str, Any]]:
    """Every item of a list, page by page; a resource that is not served names the likely cause."""
    from kubeapi.kube_client import KubeNotFound

    items: list[dict[str, Any]] = []
    token = ""
    while True:
        page_query = {**query, "limit": str(PAGE_SIZE), **({"continue": token} if token else {})}
        try:
            answer = api.get(path, page_query, what=f"list {kind} resources")
        except KubeNotFound as error:
            if error.details_name:
                raise
            raise KubeNotFound(
                f"{error.message} (are the homelab-autoscaler CRDs installed? kubectl apply -k manifests/)",
                error.status,
                error.reason,
                error.body,
            ) from error
        items.extend(item for item in answer.get("items") or () if isinstance(item, dict))
        token = str((answer.get("metadata") or {}).get("continue") or "")
        if not token:
            return items


def current_namespace(kubeconfig: Path | None, context: str | None) -> str:
    """The namespace kubectl would use: the context's, the pod's own in a cluster, else `default`."""
    from kubernetes import config as kube_config

    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or DEFAULT_NAMESPACE
        except OSError:
            return DEFAULT_NAMESPACE
    contexts, active = kube_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig) if kubeconfig is not None else None
    )
    chosen = next((entry for entry in contexts if entry.get("name") == context), None) if context else active
    settings = (chosen or {}).get("context") or {}
    return str(settings.get("namespace") or DEFAULT_NAMESPACE)


def use_colour(stream: IO[str]) -> bool:
    """Colour only a terminal, and never when NO_COLOR is set (https://no-color.org) or TERM is dumb."""
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # `status | head` closed the pipe: the reader has what it wanted. Point stdout at /dev/null so the
        # interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code
