"""The record of one machine's exercise boot (`status.lastExercise`): begun, checked, concluded.

Separate from the node machine because it is bookkeeping on the status alone, which the node machine, the group
policy and the status command all read: an exercise is in flight exactly while its record's outcome is Running,
so a restarted operator knows which machine is being exercised from the status it wrote, with nothing else kept.
The node machine decides *when* each step happens (`actors.fsm.node`); this module says what the record then reads.
Pure: every function takes `now`.
"""

from __future__ import annotations

from datetime import datetime

from schemas.common import format_duration
from schemas.node import ExerciseOutcome, ExerciseRecord, NodeStatus


def is_exercising(status: NodeStatus) -> bool:
    """Whether an exercise boot of the machine is in flight (hidden from CA until it ends). Pure."""
    record = status.last_exercise
    return record is not None and record.outcome is ExerciseOutcome.RUNNING


def begun(now: datetime) -> ExerciseRecord:
    """The record of an exercise boot whose startup Job was just created. Pure."""
    return ExerciseRecord(started=now, outcome=ExerciseOutcome.RUNNING, message="booting")


def checked(record: ExerciseRecord, now: datetime, read_back: bool = False) -> ExerciseRecord:
    """The running record once the check passed: the Kubernetes Node is Ready (and, `read_back`, the BMC read the
    power back On). Pure."""
    took = format_duration(max(0.0, (now - record.started).total_seconds()))
    power = ", power read back On" if read_back else ""
    return record.model_copy(update={"message": f"Ready {took} after the power-on{power}; powering off again"})


def concluded(record: ExerciseRecord, outcome: ExerciseOutcome, now: datetime, message: str) -> ExerciseRecord:
    """The record with its outcome decided at `now`. Pure."""
    return record.model_copy(update={"outcome": outcome, "finished": now, "message": message})


def success_message(record: ExerciseRecord) -> str:
    """What a successful exercise says: the check's finding, and that the machine is off again. Pure."""
    found = record.message.removesuffix("; powering off again")
    return f"{found}; powered off again"
