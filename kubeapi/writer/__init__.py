"""The effect executor: applies the actors' effects to the Kubernetes API on a bounded pool of threads.

Actors only describe what must change (`actors.fsm.effects`); this module is the one place that performs those
changes, so every rule about doing it safely lives here:

- Order. The effects of one machine are applied strictly in submission order: each machine has a FIFO of batches
  and at most one thread works on it at a time, so a Cordon always lands before the shutdown Job it precedes and a
  status write never overtakes an older one. Different machines proceed in parallel on `workers` threads.
- Drains take long (they wait for disruption budgets), so a Drain moves the machine's work to a separate pool of
  drain threads: the machine's FIFO stays paused until the drain and the rest of its batch are done, while the
  regular workers keep serving other machines (a scale-up must never wait behind someone's drain).
- Retries. Transient failures (5xx, 429, timeouts, lost connections) and conflicts that a fresh read resolves are
  retried with exponential backoff and jitter (`kubeapi.backoff`), up to `max_retries` times; each retry re-runs
  the effect from its read, so read-modify-write effects see the latest object. A permanent refusal is reported at
  once as `EffectFailed(permanent=True)`; a transient failure that outlives the retries as
  `EffectFailed(permanent=False)`.
- Outages. A call that got no answer at all (the API server is unreachable: a control plane rebooting) does not
  use up the retries: the effect waits for the server's return, reported to and told once by the process's
  `ApiReachability`, and is applied as soon as the server answers again. Since the machine's FIFO waits with it,
  every write of the outage lands afterwards in its order, and nothing turns into `EffectFailed` (a startup Job
  that could not be created during an eight-second reboot must not count as a failed boot). Once the return has
  been told, each machine whose writes waited gets one Normal `WritesDelayed` Event saying how many and for how
  long: once per outage, however many attempts failed. It is the one Event the writer records on its own rather
  than for an actor, because it is about the writes themselves, which no actor sees.
- Idempotence. Every effect may be applied twice (a restarted actor resubmits): a Job that exists is adopted when
  it is ours, deletes of missing objects succeed, status writes replace the whole status.
- Optimistic concurrency. Node taints, labels and providerID are read-modify-written with the resourceVersion
  that was read, so a concurrent change by CA or the kubelet makes our write fail (409) instead of erasing theirs.
- One write per Node change. Consecutive effects that only change the machine's Kubernetes Node (`NODE_WRITES`:
  uncordon, drop CA's taints, the Group's labels and taints, the providerID) are applied as one read and one patch
  (`node_patch`), so a member turns usable all at once: the scheduler and CA never see it half done, and it takes
  one round trip instead of four on the way from Node Ready to a bound pod.

Status writes replace the whole `.status` with one JSON patch `add /status` operation: conflict-free (no
resourceVersion involved) like a merge patch, but a merge patch would merge nested maps and so keep keys the
machine no longer has (old labels in `lastReady`, a state count that went to zero).

Modules: `scheduling` (`KubeWriter`: order, pools, retries, outages), `appliers` (one applier per effect, and the
pure Node patch), `drain` (evictions), `events` (Events and their de-duplication cache), `calls` (the counted API
calls and resource names they share).
"""

from kubeapi.writer.appliers import merge_taints, node_patch
from kubeapi.writer.drain import needs_eviction
from kubeapi.writer.scheduling import KubeWriter, batch_key

__all__ = ["KubeWriter", "batch_key", "merge_taints", "needs_eviction", "node_patch"]
