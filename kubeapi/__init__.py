"""The only code that talks to the Kubernetes API: client and errors, effect writer, watches, leader election.

Actors never do I/O: they emit effects and receive observations. This package is the other side of that seam,
and the only package allowed to import the `kubernetes` client (checked by import-linter), so every assumption
about the API server (retries, ordering, optimistic concurrency, watch resumption) lives here and is tested
against the fake API over real HTTP. Modules:

- `kube_client`: building an ApiClient, raw-JSON calls, and the KubeError tree every caller sees;
- `job_manifest`: the pure rendering of a power Job;
- `writer`: `KubeWriter`, the effect executor (per-machine order, bounded parallelism, retries, drain, events);
- `watch`: `ResourceWatch`, list-then-watch threads feeding the KubeWatcherActor (`actors.watch_port`);
- `backoff`: the retry pacing the writer and the watches share;
- `reachability`: `ApiReachability`, whether the API server answers, told once per outage;
- `leader`: `LeaderElector`, Lease-based leader election;
- `webhook_certs`, `admission_lookup`: the admission webhook's certificate keeper and its read-only caches;
- `api_calls`: every request the operator makes, as data (the docs and the RBAC manifest are checked against it).

Who may import this package (import-linter): the composition root (`homelab_autoscaler`) and the simulator (`sim`)
only; the actors, the gateway and the webhook server meet it through the ports in `actors`.

This file imports nothing on purpose: importing `kubeapi.job_manifest` must not pull in the client.
"""
