"""`homelab-autoscaler explain NODE`: why one machine is in its state and what happens next, in plain sentences.

The thin shell of `homelab_autoscaler.explain_view` (pure): it reads the Node resource, its Group, its power Jobs
and the Events on both through a kubeconfig, and, when given `--metrics-url`, the operator's `/metrics`, then prints
the explanation as text or JSON. Like `status` it needs no operator running; it only reads.

Exit status: 0 when explained; 1 when the machine or the API cannot be read; 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

PROG: Final = "homelab-autoscaler explain"
OUTPUT_FORMATS: Final = ("text", "json")
METRICS_TIMEOUT_SECONDS: Final = 5.0
EXIT_API_ERROR: Final = 1
EXIT_USAGE: Final = 2
NO_METRICS_URL: Final = (
    "no --metrics-url given (for example: kubectl -n homelab-autoscaler port-forward "
    "svc/homelab-autoscaler-metrics 8080, then --metrics-url http://127.0.0.1:8080/metrics)"
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="say why a machine is in its state and what happens next",
        description="Explain one machine (a Node resource): why it is in its power state, what happens next and "
        "when (cooldown, boot and shutdown deadlines, quarantine), its recent power Jobs and Events, and what "
        "Cluster Autoscaler last asked of its group. Exit status 1 when it cannot be read, 2 for usage errors.",
    )
    parser.add_argument("node", metavar="NODE", help="name of the Node resource (the machine)")
    parser.add_argument("--kubeconfig", type=Path, metavar="FILE", help="kubeconfig to use (default as kubectl)")
    parser.add_argument("--context", help="kubeconfig context to use (default: the current context)")
    parser.add_argument("-n", "--namespace", help="namespace of the machine (default: the context's namespace)")
    parser.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="text", help="text (default) or json")
    parser.add_argument(
        "--metrics-url", metavar="URL", help="the operator's metrics endpoint, for what it holds of the machine now"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kubernetes.config import ConfigException
    from yaml import YAMLError

    from actors.errors import OperatorError

    if getattr(args, "output", "text") not in OUTPUT_FORMATS:
        return _fail(f"--output must be one of {', '.join(OUTPUT_FORMATS)}", EXIT_USAGE)
    try:
        return _explain(args)
    except (OperatorError, ConfigException, OSError, YAMLError, ValueError) as error:
        return _fail(str(error) or type(error).__name__, EXIT_API_ERROR)


def _explain(args: argparse.Namespace) -> int:
    from homelab_autoscaler import explain_view
    from homelab_autoscaler.commands.status import current_namespace, list_all
    from homelab_autoscaler.status_view import parse_group, parse_node
    from kubeapi.kube_client import KubeApi, KubeNotFound, new_api_client
    from schemas import GROUP_VERSION
    from schemas.labels import GROUP_LABEL, MACHINE_LABEL

    kubeconfig: Path | None = args.kubeconfig
    name: str = args.node
    api_client = new_api_client(kubeconfig, args.context, pool_size=2)
    try:
        api = KubeApi(api_client)
        namespace = args.namespace or current_namespace(kubeconfig, args.context)
        base = f"/apis/{GROUP_VERSION}/namespaces/{namespace}"
        try:
            raw_node = api.get(f"{base}/nodes/{name}", {}, what=f"read Node {name}")
        except KubeNotFound:
            return _fail(f"no Node resource {name!r} in namespace {namespace}", EXIT_API_ERROR)
        node = parse_node(raw_node)
        group_name = ((raw_node.get("metadata") or {}).get("labels") or {}).get(GROUP_LABEL)
        raw_group: dict[str, Any] | None = None
        if group_name:
            try:
                raw_group = api.get(f"{base}/groups/{group_name}", {}, what=f"read Group {group_name}")
            except KubeNotFound:
                raw_group = None
        jobs_path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        jobs = list_all(api, jobs_path, {"labelSelector": f"{MACHINE_LABEL}={name}"}, "Job")
        node_events = _events(api, namespace, "Node", name)
        group_events = _events(api, namespace, "Group", group_name) if group_name else []
    finally:
        api_client.close()  # type: ignore[no-untyped-call]  # the client's close() is unannotated

    metrics, reason = _read_metrics(args.metrics_url)
    explanation = explain_view.explain(
        node,
        parse_group(raw_group) if raw_group is not None else None,
        jobs,
        # The kind alone does not tell our Node from a core Node of the same name: keep our API group's.
        [event for event in node_events if _ours(event, GROUP_VERSION)],
        group_events,
        datetime.now(UTC),
        metrics,
        reason,
    )
    if args.output == "json":
        sys.stdout.write(json.dumps(explain_view.to_document(explanation), indent=2) + "\n")
    else:
        sys.stdout.write(explain_view.render_text(explanation, datetime.now(UTC)))
    return 0


def _events(api: Any, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    from homelab_autoscaler.commands.status import list_all

    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    return list_all(api, f"/api/v1/namespaces/{namespace}/events", {"fieldSelector": selector}, "Event")


def _read_metrics(url: str | None) -> tuple[dict[str, dict[tuple[tuple[str, str], ...], float]] | None, str]:
    from homelab_autoscaler import explain_view

    if not url:
        return None, NO_METRICS_URL
    try:
        with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT_SECONDS) as answer:
            return explain_view.parse_metrics(answer.read().decode()), ""
    except (OSError, ValueError) as error:  # unreachable, refused, timed out, not an exposition
        return None, f"{url} could not be read ({error})"


def _ours(event: dict[str, Any], group_version: str) -> bool:
    api_version = str((event.get("involvedObject") or {}).get("apiVersion") or "")
    return api_version.split("/")[0] == group_version.split("/")[0]


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code
