"""Server-side printing: ``meta.k8s.io/v1`` ``Table`` answers for clients (kubectl) that ask for them.

Separate because it is presentation only, chosen per request by the ``Accept`` header
(``as=Table;g=meta.k8s.io;v=v1``). Columns are a short fixed set for built-ins and a CRD's
``additionalPrinterColumns`` for custom resources (``Age`` when it declares none), evaluated with a small
JSONPath subset: ``.a.b``, ``[n]`` and ``[?(@.key=="value")]``. Nodes, events, pods and Jobs are what a user
of the demo looks at most, so they are printed by code ported from the real server's printers (``printNode``,
``printEvent``, ``printPod``, ``printJob``): a node's STATUS is ``Ready``/``NotReady``/``Unknown`` plus
``SchedulingDisabled``; an event has no NAME column first but LAST SEEN, TYPE, REASON, OBJECT and MESSAGE; a
pod shows READY, STATUS and RESTARTS; a Job STATUS, COMPLETIONS and DURATION. Ages are phrased like the real
server's ``duration.HumanDuration`` (``7m57s``, ``3h20m``, ``2d4h``).
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from typing import Any

from sim.fakeapi.resources import PrinterColumn, ResourceType

_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")
_BUILTIN_COLUMNS: dict[tuple[str, str], tuple[PrinterColumn, ...]] = {
    ("", "namespaces"): (PrinterColumn("Status", "string", ".status.phase"), _AGE),
    ("coordination.k8s.io", "leases"): (PrinterColumn("Holder", "string", ".spec.holderIdentity"), _AGE),
    ("policy", "poddisruptionbudgets"): (
        PrinterColumn("Min Available", "string", ".spec.minAvailable", absent="N/A"),
        PrinterColumn("Max Unavailable", "string", ".spec.maxUnavailable", absent="N/A"),
        PrinterColumn("Allowed Disruptions", "integer", ".status.disruptionsAllowed"),
        _AGE,
    ),
}
# A field may contain escaped dots, as in `.metadata.labels.infra\.homecluster\.dev/group`.
_TOKEN = re.compile(r'\.((?:\\\.|[^.\[\\])+)|\[(\d+)\]|\[\?\(@\.([^=]+)==["\']([^"\']*)["\']\)\]')


def columns_for(resource: ResourceType) -> tuple[PrinterColumn, ...]:
    if resource.custom:
        return resource.printer_columns or (_AGE,)
    return _BUILTIN_COLUMNS.get((resource.group, resource.plural), (_AGE,))


def evaluate(obj: Any, path: str) -> Any:
    """Evaluate the supported JSONPath subset; None when any step is missing."""
    current = obj
    position = 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None or current is None:
            return None
        field, index, filter_key, filter_value = match.groups()
        if field is not None:
            key = field.replace("\\.", ".")
            current = current.get(key) if isinstance(current, dict) else None
        elif index is not None:
            current = current[int(index)] if isinstance(current, list) and int(index) < len(current) else None
        else:
            current = (
                next(
                    (
                        item
                        for item in current or []
                        if isinstance(item, dict) and str(item.get(filter_key)) == filter_value
                    ),
                    None,
                )
                if isinstance(current, list)
                else None
            )
        position = match.end()
    return current


def _parse_timestamp(text: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (``MicroTime`` fractions allowed), None if unset."""
    if not isinstance(text, str) or not text:
        return None
    whole, _, fraction = text.rstrip("Z").partition(".")
    try:
        seconds = float(calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")))
        return seconds + (float(f"0.{fraction}") if fraction.isdigit() else 0.0)
    except ValueError:
        return None


def human_duration(seconds_total: float) -> str:
    """The real server's ``duration.HumanDuration``: two units while the smaller still says something."""
    seconds = int(seconds_total)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def human_age(created: Any, now: float) -> str:
    """Time since ``created`` as ``kubectl get`` shows it; ``<unknown>`` for a missing timestamp."""
    when = _parse_timestamp(created)
    return "<unknown>" if when is None else human_duration(now - when)


def _cell(column: PrinterColumn, obj: dict[str, Any], now: float) -> Any:
    value = evaluate(obj, column.json_path)
    if column.type == "date":
        return human_age(value, now) if isinstance(value, str) else "<unknown>"
    if value is None:
        return column.absent if column.type == "string" else None
    if isinstance(value, (dict, list)):
        return str(value)
    return value


_NAME_DESCRIPTION = "Name must be unique within a namespace."


def _definition(
    name: str, description: str, *, priority: int = 0, type_: str = "string", format_: str = ""
) -> dict[str, Any]:
    return {"name": name, "type": type_, "format": format_, "priority": priority, "description": description}


_NODE_DEFINITIONS = [
    _definition("Name", _NAME_DESCRIPTION, format_="name"),
    _definition("Status", "The status of the node"),
    _definition("Roles", "The roles of the node"),
    _definition("Age", "CreationTimestamp is a timestamp representing the server time when this object was created."),
    _definition("Version", "Kubelet Version reported by the node."),
    _definition("Internal-IP", "List of addresses reachable to the node.", priority=1),
    _definition("External-IP", "List of addresses reachable to the node.", priority=1),
    _definition("OS-Image", "OS Image reported by the node from /etc/os-release.", priority=1),
    _definition("Kernel-Version", "Kernel Version reported by the node from 'uname -r'.", priority=1),
    _definition(
        "Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API.", priority=1
    ),
]
_ROLE_PREFIX = "node-role.kubernetes.io/"


def _node_cells(node: dict[str, Any], now: float) -> list[Any]:
    """``printNode``: the Ready condition as Ready/NotReady (Unknown without one), then SchedulingDisabled."""
    status = node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"), None)
    states = ["Unknown" if ready is None else "Ready" if ready.get("status") == "True" else "NotReady"]
    if (node.get("spec") or {}).get("unschedulable"):
        states.append("SchedulingDisabled")
    labels = (node.get("metadata") or {}).get("labels") or {}
    roles = {key[len(_ROLE_PREFIX) :] for key in labels if key.startswith(_ROLE_PREFIX) and key != _ROLE_PREFIX}
    if labels.get("kubernetes.io/role"):
        roles.add(labels["kubernetes.io/role"])
    info = status.get("nodeInfo") or {}

    def address(kind: str) -> str:
        return next(
            (
                a.get("address", "")
                for a in status.get("addresses") or []
                if isinstance(a, dict) and a.get("type") == kind
            ),
            "<none>",
        )

    return [
        node["metadata"]["name"],
        ",".join(states),
        ",".join(sorted(roles)) or "<none>",
        human_age(node["metadata"].get("creationTimestamp"), now),
        info.get("kubeletVersion", ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


_EVENT_DEFINITIONS = [
    _definition("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    _definition("Type", "Type of this event (Normal, Warning), new types could be added in the future."),
    _definition(
        "Reason",
        "This should be a short, machine understandable string that gives the reason for the "
        "transition into the object's current status.",
    ),
    _definition("Object", "The object that this event is about."),
    _definition(
        "Subobject",
        "If referring to a piece of an object instead of an entire object, this string "
        "should contain a valid JSON/Go field access statement.",
        priority=1,
    ),
    _definition("Source", "The component reporting this event.", priority=1),
    _definition("Message", "A human-readable description of the status of this operation."),
    _definition("First Seen", "The time at which the event was first recorded.", priority=1),
    _definition("Count", "The number of times this event has occurred.", priority=1),
    _definition("Name", _NAME_DESCRIPTION, priority=1, format_="name"),
]


def _as_core_event(event: dict[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event in core/v1 field names, as the real server converts it before printing."""
    if "regarding" not in event and "note" not in event and "deprecatedSource" not in event:
        return event
    return {
        "metadata": event.get("metadata") or {},
        "involvedObject": event.get("regarding") or {},
        "reason": event.get("reason"),
        "message": event.get("note"),
        "type": event.get("type"),
        "source": event.get("deprecatedSource") or {},
        "firstTimestamp": event.get("deprecatedFirstTimestamp"),
        "lastTimestamp": event.get("deprecatedLastTimestamp"),
        "count": event.get("deprecatedCount"),
        "series": event.get("series"),
        "eventTime": event.get("eventTime"),
        "reportingComponent": event.get("reportingController"),
        "reportingInstance": event.get("reportingInstance"),
    }


def _event_cells(raw: dict[str, Any], now: float) -> list[Any]:
    """``printEvent``: ages fall back from lastTimestamp to firstTimestamp to eventTime; a series wins."""
    event = _as_core_event(raw)
    first = human_age(event.get("firstTimestamp") or event.get("eventTime"), now)
    last = human_age(event["lastTimestamp"], now) if event.get("lastTimestamp") else first
    count = event.get("count") or 1  # singleton events of the newer API carry no count
    series = event.get("series")
    if isinstance(series, dict):
        last = human_age(series.get("lastObservedTime"), now)
        count = series.get("count") or count
    involved = event.get("involvedObject") or {}
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    instance = source.get("host") or event.get("reportingInstance") or ""
    source_text = ", ".join(part for part in (component, instance) if part) if component else ""
    return [
        last,
        event.get("type") or "",
        event.get("reason") or "",
        target,
        involved.get("fieldPath") or "",
        source_text,
        str(event.get("message") or "").strip(),
        first,
        int(count),
        event["metadata"].get("name", ""),
    ]


_POD_DEFINITIONS = [
    _definition("Name", _NAME_DESCRIPTION, format_="name"),
    _definition("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _definition("Status", "The aggregate status of the containers in this pod."),
    _definition(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last "
        "container in this pod has restarted.",
    ),
    _definition("Age", "CreationTimestamp is a timestamp representing the server time when this object was created."),
    _definition("IP", "IP address allocated to the pod. Routable at least within the cluster.", priority=1),
    _definition("Node", "NodeName is a request to schedule this pod onto a specific node.", priority=1),
    _definition(
        "Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node.", priority=1
    ),
    _definition(
        "Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.", priority=1
    ),
]


def _pod_cells(pod: dict[str, Any], now: float) -> list[Any]:
    """``printPod`` without init containers: READY counts ready running containers, STATUS is the phase or the
    reason a container waits or ended with, ``Terminating`` while being deleted."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or ""
    restarts, ready, has_running, last_restart = 0, 0, False, None
    for container in reversed(status.get("containerStatuses") or []):
        restarts += int(container.get("restartCount") or 0)
        finished = _parse_timestamp(((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        if finished is not None and (last_restart is None or finished > last_restart):
            last_restart = finished
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated:
            signal = terminated.get("signal")
            reason = f"Signal:{signal}" if signal else f"ExitCode:{terminated.get('exitCode', 0)}"
        elif container.get("ready") and state.get("running") is not None:
            has_running, ready = True, ready + 1
    if reason == "Completed" and has_running:
        pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        reason = "Running" if pod_ready else "NotReady"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif status.get("phase") not in ("Succeeded", "Failed"):
            reason = "Terminating"
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(now - last_restart)} ago)"
    pod_ips = status.get("podIPs") or []
    gates = spec.get("readinessGates") or []
    gate_text = "<none>"
    if gates:
        true_types = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
        gate_text = f"{sum(1 for g in gates if g.get('conditionType') in true_types)}/{len(gates)}"
    return [
        pod["metadata"]["name"],
        f"{ready}/{len(spec.get('containers') or [])}",
        reason,
        restarts_text,
        human_age(pod["metadata"].get("creationTimestamp"), now),
        (pod_ips[0].get("ip") if pod_ips else "") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gate_text,
    ]


_JOB_DEFINITIONS = [
    _definition("Name", _NAME_DESCRIPTION, format_="name"),
    _definition("Status", "Status of the job."),
    _definition("Completions", "The desired number of successfully finished pods the job should be run with."),
    _definition("Duration", "Time required to complete the job."),
    _definition("Age", "CreationTimestamp is a timestamp representing the server time when this object was created."),
    _definition("Containers", "Names of each container in the template.", priority=1),
    _definition("Images", "Images referenced by each container in the template.", priority=1),
    _definition("Selector", "A label query over pods that should match the pod count.", priority=1),
]
_JOB_CONDITION_STATUS = (
    ("Complete", "Complete"),
    ("Failed", "Failed"),
    ("Suspended", "Suspended"),
    ("FailureTarget", "FailureTarget"),
    ("SuccessCriteriaMet", "SuccessCriteriaMet"),
)


def format_label_selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``: ``k=v`` and ``key in (a,b)`` joined by commas; ``<none>`` when empty."""
    if not isinstance(selector, dict):
        return "<none>"
    parts = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        operator, key = str(expression.get("operator", "")), expression.get("key", "")
        values = ",".join(sorted(str(v) for v in expression.get("values") or []))
        parts.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": str(key),
                "DoesNotExist": f"!{key}",
            }.get(operator, f"{key} {operator} ({values})")
        )
    return ",".join(parts) or "<none>"


def _job_cells(job: dict[str, Any], now: float) -> list[Any]:
    """``printJob``: STATUS from the conditions (Running by default), COMPLETIONS succeeded/wanted, DURATION."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    succeeded = int(status.get("succeeded") or 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif int(spec.get("parallelism") or 1) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    started, finished = _parse_timestamp(status.get("startTime")), _parse_timestamp(status.get("completionTime"))
    duration = "" if started is None else human_duration((finished if finished is not None else now) - started)
    true_types = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
    state = next((shown for condition, shown in _JOB_CONDITION_STATUS[:2] if condition in true_types), None)
    if state is None and (job.get("metadata") or {}).get("deletionTimestamp"):
        state = "Terminating"
    if state is None:
        state = next((shown for condition, shown in _JOB_CONDITION_STATUS[2:] if condition in true_types), "Running")
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [
        job["metadata"]["name"],
        state,
        completions,
        duration,
        human_age(job["metadata"].get("creationTimestamp"), now),
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
        format_label_selector(spec.get("selector")),
    ]


_PRINTERS: dict[tuple[str, str], tuple[list[dict[str, Any]], Callable[[dict[str, Any], float], list[Any]]]] = {
    ("", "nodes"): (_NODE_DEFINITIONS, _node_cells),
    ("", "pods"): (_POD_DEFINITIONS, _pod_cells),
    ("batch", "jobs"): (_JOB_DEFINITIONS, _job_cells),
    ("", "events"): (_EVENT_DEFINITIONS, _event_cells),
    ("events.k8s.io", "events"): (_EVENT_DEFINITIONS, _event_cells),
}


def _definitions_and_cells(
    resource: ResourceType,
) -> tuple[list[dict[str, Any]], Callable[[dict[str, Any], float], list[Any]]]:
    if not resource.custom and (resource.group, resource.plural) in _PRINTERS:
        return _PRINTERS[(resource.group, resource.plural)]
    columns = columns_for(resource)
    definitions = [_definition("Name", _NAME_DESCRIPTION, format_="name")]
    definitions += [
        _definition(
            c.name, c.description, priority=c.priority, format_=c.format, type_="string" if c.type == "date" else c.type
        )
        for c in columns
    ]

    def cells(obj: dict[str, Any], now: float) -> list[Any]:
        return [obj["metadata"]["name"], *(_cell(c, obj, now) for c in columns)]

    return definitions, cells


def table(
    resource: ResourceType,
    objects: list[dict[str, Any]],
    *,
    include_object: str,
    now: float,
    metadata: dict[str, Any],
    row_object: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    definitions, cells = _definitions_and_cells(resource)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": cells(obj, now)}
        if include_object == "Object":
            row["object"] = row_object(obj)
        elif include_object == "Metadata":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    }
