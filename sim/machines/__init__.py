"""The machine simulator: plays physical homelab machines against any Kubernetes API server.

It watches the operator's power Jobs, powers simulated machines on and off when they succeed, and plays
each machine's kubelet (Node registration, heartbeats, Lease). Optionally it also plays the Job controller
(needed on our fake API, never on a real cluster). The Job/label contract it relies on is written down in
docs/development/simulator.md. Modules: `model` (what a machine is), `manifests` and `jobs` (pure shapes
and parsing), `scheduler` and `watcher` (the two threads; I/O goes through `kubeapi`), `machine` (one machine at run
time), `simulator` (the whole), `emulators` and `native_power` (a Wake-on-LAN listener and an IPMI BMC per
machine, so the operator's native power drivers can switch simulated machines too).
"""

from sim.machines.clock import Clock, RealClock
from sim.machines.machine import MachineHandle
from sim.machines.model import DEFAULT_CAPACITY, MachineFailures, PowerState, ProviderIdMode, SimulatedMachine
from sim.machines.simulator import MachineSimulator

__all__ = [
    "DEFAULT_CAPACITY",
    "Clock",
    "MachineFailures",
    "MachineHandle",
    "MachineSimulator",
    "PowerState",
    "ProviderIdMode",
    "RealClock",
    "SimulatedMachine",
]
