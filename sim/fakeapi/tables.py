"""Server-side printing: ``meta.k8s.io/v1`` ``Table`` answers for clients (kubectl) that ask for them.

Separate because it is presentation only, chosen per request by the ``Accept`` header
(``as=Table;g=meta.k8s.io;v=v1``). Columns are a short fixed set for built-ins and a CRD's
``additionalPrinterColumns`` for custom resources (``Age`` when it declares none), evaluated with a small
JSONPath subset: ``.a.b``, ``[n]`` and ``[?(@.key=="value")]``.
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
    ("", "nodes"): (PrinterColumn("Status", "string", '.status.conditions[?(@.type=="Ready")].status'), _AGE,
                    PrinterColumn("Version", "string", ".status.nodeInfo.kubeletVersion")),
    ("", "pods"): (PrinterColumn("Status", "string", ".status.phase"),
                   PrinterColumn("Node", "string", ".spec.nodeName", priority=1), _AGE),
    ("", "namespaces"): (PrinterColumn("Status", "string", ".status.phase"), _AGE),
    ("batch", "jobs"): (PrinterColumn("Succeeded", "integer", ".status.succeeded"),
                        PrinterColumn("Failed", "integer", ".status.failed"), _AGE),
    ("coordination.k8s.io", "leases"): (PrinterColumn("Holder", "string", ".spec.holderIdentity"), _AGE),
    ("policy", "poddisruptionbudgets"): (
        PrinterColumn("Min Available", "string", ".spec.minAvailable", absent="N/A"),
        PrinterColumn("Max Unavailable", "string", ".spec.maxUnavailable", absent="N/A"),
        PrinterColumn("Allowed Disruptions", "integer", ".status.disruptionsAllowed"), _AGE),
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
            current = next((item for item in current or [] if isinstance(item, dict)
                            and str(item.get(filter_key)) == filter_value), None) if isinstance(current, list) else None
        position = match.end()
    return current


def human_age(created: str, now: float) -> str:
    try:
        seconds = int(now - calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return "<unknown>"
    seconds = max(seconds, 0)
    for limit, unit, size in ((120, "s", 1), (120 * 60, "m", 60), (48 * 3600, "h", 3600)):
        if seconds < limit:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"


def _cell(column: PrinterColumn, obj: dict[str, Any], now: float) -> Any:
    value = evaluate(obj, column.json_path)
    if column.type == "date":
        return human_age(value, now) if isinstance(value, str) else "<unknown>"
    if value is None:
        return column.absent if column.type == "string" else None
    if isinstance(value, (dict, list)):
        return str(value)
    return value


def table(resource: ResourceType, objects: list[dict[str, Any]], *, include_object: str, now: float,
          metadata: dict[str, Any], row_object: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    columns = columns_for(resource)
    definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                    "description": "Name must be unique within a namespace."}]
    definitions += [{"name": c.name, "type": "string" if c.type == "date" else c.type, "format": c.format,
                     "priority": c.priority, "description": c.description} for c in columns]
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [obj["metadata"]["name"], *(_cell(c, obj, now) for c in columns)]}
        if include_object == "Object":
            row["object"] = row_object(obj)
        elif include_object == "Metadata":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": definitions, "rows": rows}
