"""Test helpers shared by more than one test folder, importable as `tests.support.<module>` from any of them.

A helper lives here once a second folder needs it, so nobody puts another folder on `sys.path` or keeps a copy in
step; a fixture every folder uses is in tests/conftest.py, and a helper one folder uses stays beside its tests
(e.g. tests/e2e/e2e_support.py). The repository root is on the import path through `pythonpath` in setup.cfg's
[tool:pytest], so `pytest`, `python -m pytest` and `pytest tests/e2e` all resolve these modules the same way. Plain
modules rather than conftest files, because conftest files are not meant to be imported by name.

- `operator_homelab`: the operator on a homelab of the fake API and its CA-side gRPC client (operator and
  reliability integration tests, the e2e harness).
- `control_plane`: the real control plane of `sim.controlplane` in a test: a skip without binaries, component logs
  on failure, a failure for a process left running (the control-plane integration tests, later the e2e suite).
- `polling`: `wait_for`, the one poll loop every integration and e2e test waits with.
- `actor_fakes`: the recording effect port, a hand-moved clock, resource builders and a small lab for the actors
  (actor tests, the gateway fuzzer, bench/actors.py).
- `rbac`: RBAC as Kubernetes evaluates it, against the rendered manifests (security integration tests,
  tests/integration/manifests/test_manifests.py).
"""
