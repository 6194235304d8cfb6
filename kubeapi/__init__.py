"""The only code that talks to Kubernetes: client and errors, effect writer, watches, leader election.

Actors never do I/O: they emit effects and receive observations. This package is the other side of that seam,
and the only package allowed to import the `kubernetes` client (checked by import-linter), so every assumption
about the API server (retries, ordering, optimistic concurrency, watch resumption) lives here and is tested
against the fake API over real HTTP. Modules:

- `kube_client`: building an ApiClient, raw-JSON calls, and the KubeError tree every caller sees;
- `job_manifest`: the pure rendering of a power Job;
- `writer`: `KubeWriter`, the effect executor (per-machine order, bounded parallelism, retries, drain, events);
- `watch`: `ResourceWatch`, list-then-watch threads feeding the KubeWatcherActor;
- `leader`: `LeaderElector`, Lease-based leader election.

This file imports nothing on purpose: importing `kubeapi.job_manifest` must not pull in the client.
"""
