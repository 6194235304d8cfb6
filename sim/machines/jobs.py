"""Reading a batch/v1 Job as a power operation: which machine, which operation, how far it got.

Pure, because it is the contract between the operator and the simulator (the labels and the Job status
fields both sides agree on) and deserves to be testable and documented on its own. Anything that is not
a well-formed power Job reads as None and is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from schemas import labels as label_names
from schemas.node import OperationKind


class JobProgress(StrEnum):
    PENDING = "Pending"
    """Created; no pod started yet (no startTime)."""
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class PowerJob:
    """The parts of a power Job the simulator acts on."""

    namespace: str
    name: str
    uid: str
    machine: str
    operation: OperationKind
    progress: JobProgress
    suspended: bool
    deleting: bool

    @property
    def finished(self) -> bool:
        return self.progress in (JobProgress.SUCCEEDED, JobProgress.FAILED)


def job_selector() -> str:
    """The label selector that picks every power Job of the operator. Pure."""
    return f"{label_names.MANAGED_BY_LABEL}={label_names.MANAGED_BY_VALUE}"


def read_power_job(job: dict[str, Any]) -> PowerJob | None:
    """The power operation `job` describes, or None when it is not one. Pure."""
    metadata = job.get("metadata") or {}
    labels = metadata.get("labels") or {}
    if labels.get(label_names.MANAGED_BY_LABEL) != label_names.MANAGED_BY_VALUE:
        return None
    machine = labels.get(label_names.MACHINE_LABEL)
    try:
        operation = OperationKind(labels.get(label_names.OPERATION_LABEL, ""))
    except ValueError:
        return None
    if not machine or not metadata.get("name") or not metadata.get("uid"):
        return None
    return PowerJob(
        namespace=metadata.get("namespace", ""),
        name=metadata["name"],
        uid=metadata["uid"],
        machine=machine,
        operation=operation,
        progress=job_progress(job.get("status") or {}),
        suspended=bool((job.get("spec") or {}).get("suspend")),
        deleting=bool(metadata.get("deletionTimestamp")),
    )


def job_progress(status: dict[str, Any]) -> JobProgress:
    """How far a Job got, from its status the way the Job controller reports it. Pure.

    The terminal conditions decide; the counters are a fallback for servers (or older controllers)
    that count pods without writing conditions.
    """
    conditions = {condition.get("type"): condition.get("status") for condition in status.get("conditions") or ()}
    if conditions.get("Failed") == "True":
        return JobProgress.FAILED
    if conditions.get("Complete") == "True":
        return JobProgress.SUCCEEDED
    if (status.get("succeeded") or 0) >= 1 and not status.get("active"):
        return JobProgress.SUCCEEDED
    if status.get("startTime") or status.get("active"):
        return JobProgress.RUNNING
    return JobProgress.PENDING
