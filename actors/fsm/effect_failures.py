"""Which event a failed effect becomes: the node actor's answer to the writer's `EffectFailed`, as a pure function.

The writer reports an effect it could not apply (refused at once, or still failing after its retries). What that
means for the machine is a decision, so it lives here beside the transition table rather than in the actor:

- a startup or shutdown Job the API server refused is a failed power operation (`JobFailed`), handled like a Job
  that ran and failed;
- a drain that could not even start ended unsuccessfully (`DrainFinished`);
- any other write the machine asked for (a Job still failing after the retries, cordon, Node labels and taints,
  providerID, Job deletion, the Node deletion) becomes `WriteFailed`, which only makes the failure visible as a
  condition and an Event; the state machine's timers catch what it leaves undone (a Job never created times out);
- a failed status or Event write becomes nothing: reporting it would take another such write, and the next
  transition writes the status again anyway.
"""

from __future__ import annotations

from actors.fsm import effects
from actors.fsm.events import DrainFinished, JobFailed, WriteFailed


def failure_event(
    effect: effects.Effect, message: str, permanent: bool
) -> JobFailed | DrainFinished | WriteFailed | None:
    """The event the machine is given when `effect` failed with `message`; None when it is only logged. Pure."""
    if isinstance(effect, effects.CreateJob) and permanent:
        return JobFailed(effect.kind, effect.job_name, message)
    if isinstance(effect, effects.Drain):
        return DrainFinished(succeeded=False, message=message)
    if isinstance(effect, effects.PatchStatus | effects.RecordEvent):
        return None
    return WriteFailed(type(effect).__name__, message, permanent)
