"""The cases of spec.power's exactly-one-way and driver-combination rules that both API servers (the fake and the
real one) must decide alike: a Node spec, and the message of its refusal (None: accepted)."""

from __future__ import annotations

from typing import Any

from schemas import GROUP_VERSION
from schemas.labels import GROUP_LABEL

IPMI = {"host": "10.0.0.5", "credentials": {"name": "bmc"}}
REDFISH = {"endpoint": "https://10.0.0.6", "credentials": {"name": "bmc"}}
WAKE_ON_LAN = {"macAddress": "aa:bb:cc:dd:ee:ff"}
JOB = {"image": "busybox:1.36"}

CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("ipmi", {"power": {"ipmi": IPMI}}, None),
    ("wol-redfish", {"power": {"wakeOnLan": WAKE_ON_LAN, "redfish": REDFISH}}, None),
    ("jobs", {"startupJob": JOB, "shutdownJob": JOB}, None),
    (
        "jobs-and-power",
        {"startupJob": JOB, "shutdownJob": JOB, "power": {"ipmi": IPMI}},
        "a Node is powered either by Jobs (startupJob and shutdownJob) or natively (power), not both",
    ),
    ("one-job", {"startupJob": JOB}, "a Node needs both startupJob and shutdownJob, or power"),
    ("two-bmcs", {"power": {"ipmi": IPMI, "redfish": REDFISH}}, "name at most one BMC (ipmi or redfish), not both"),
    ("wol-only", {"power": {"wakeOnLan": WAKE_ON_LAN}}, "nothing can power the machine off: add ssh, ipmi or redfish"),
    (
        "ca-bundle-neither",
        {"power": {"redfish": {**REDFISH, "caBundle": {}}}},
        "set exactly one of secretKeyRef and configMapKeyRef",
    ),
]


def node(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Node",
        "metadata": {"name": name, "labels": {GROUP_LABEL: "workers"}},
        "spec": spec,
    }
