"""A real Kubernetes control plane for tests, envtest-style: the upstream binaries on loopback, owned by one test.

`sim.fakeapi` is fast and ours, so it is only as faithful as we made it; this package runs the real etcd,
kube-apiserver, kube-controller-manager and kube-scheduler (and finds Cluster Autoscaler for the tests that drive
it) when the environment provides them, so a test can check the operator against the real thing.

- `binaries`: where the binaries come from (`HOMELAB_K8S_BIN` or `KUBEBUILDER_ASSETS`), .xz files unpacked once
  into a shared cache, each checked to be an ELF executable for this machine.
- `pki`: a fresh CA, serving and client certificates and service-account keys per control plane.
- `processes`: `ManagedProcess`, one child program with its own process group and log, always reaped.
- `cluster`: `ControlPlane`, which starts them in order, waits until each is ready and stops exactly what it started.

    binaries = find_binaries()              # BinariesNotFound: skip; BadBinary: fail
    with ControlPlane(binaries, tmp_path) as control_plane:
        client = new_api_client(control_plane.kubeconfig)

The pytest side (skipping when no binaries are configured, logs on failure, leak checks) is in
tests/support/control_plane.py.
"""

from __future__ import annotations

from sim.controlplane.binaries import Binaries, cache_folder, find_binaries
from sim.controlplane.cluster import COMPONENTS, ControlPlane, free_ports, merge_arguments
from sim.controlplane.errors import BadBinary, BinariesNotFound, ControlPlaneError, ControlPlaneStartFailed
from sim.controlplane.pki import KeyPair, Pki, generate_pki
from sim.controlplane.processes import ManagedProcess

__all__ = [
    "COMPONENTS",
    "BadBinary",
    "Binaries",
    "BinariesNotFound",
    "ControlPlane",
    "ControlPlaneError",
    "ControlPlaneStartFailed",
    "KeyPair",
    "ManagedProcess",
    "Pki",
    "cache_folder",
    "find_binaries",
    "free_ports",
    "generate_pki",
    "merge_arguments",
]
