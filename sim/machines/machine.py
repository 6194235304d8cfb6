"""One simulated machine at run time: its power state, its kubelet, and the knobs a test turns.

The kubelet part registers the core/v1 Node after a boot, heartbeats its Ready condition and its Lease,
re-registers when its Node is deleted under it, and goes quiet when powered off. All of that runs on the
simulator's scheduler thread (the handle's `on_*` and `power_*` steps are only ever called there), so the
state needs no lock of its own; a condition variable only publishes it to readers on other threads and
lets tests wait for a change instead of sleeping. Every scheduled step carries the power epoch it was
scheduled in and does nothing if the machine has been power-cycled since.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from kubeapi.kube_client import MERGE_PATCH, KubeApi, KubeError
from sim.machines import manifests
from sim.machines.clock import Clock
from sim.machines.model import PowerState, SimulatedMachine
from sim.machines.scheduler import Scheduler

logger = logging.getLogger(__name__)

NOT_FOUND: Final = 404
ALREADY_EXISTS: Final = 409
MAX_RETRY_SECONDS: Final = 1.0
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
"""What a kubelet sends for Node status: conditions merge by type instead of replacing the list."""


@dataclass(frozen=True)
class KubeletSettings:
    """How every simulated kubelet behaves."""

    heartbeat_seconds: float = 10.0
    """Interval between Ready-condition heartbeats and Lease renewals."""
    mark_not_ready: bool = False
    """On power-off, write the NotReady/Unknown conditions the node-lifecycle controller would."""


@dataclass(frozen=True)
class MachineContext:
    """What a machine needs from the simulator that runs it."""

    rest: KubeApi
    scheduler: Scheduler
    clock: Clock
    settings: KubeletSettings


class MachineHandle:
    """A running simulated machine: read its state, inject faults, wait for it to change."""

    def __init__(self, machine: SimulatedMachine, context: MachineContext) -> None:
        self.machine = machine
        self._context = context
        self._changed = threading.Condition()
        self._state = PowerState.OFF
        self._epoch = 0
        self._boots = 0
        self._shutdowns = 0
        self._registrations = 0
        self._heartbeats = 0
        self._fail_next_boots = 0
        self._hang_next_boots = 0
        self._fail_next_shutdowns = 0
        self._ready_since = context.clock.now()
        self._kubelet_started = False  # only a machine that finished booting has a Node worth marking

    # ---- readable state (any thread) ----

    @property
    def name(self) -> str:
        return self.machine.name

    @property
    def state(self) -> PowerState:
        return self._state

    @property
    def powered_on(self) -> bool:
        """True from power-on until power is cut (booting, hung and shutting down included)."""
        return self._state is not PowerState.OFF

    @property
    def boots(self) -> int:
        """Times the machine was powered on (by a Job or by itself)."""
        return self._boots

    @property
    def shutdowns(self) -> int:
        """Times the machine lost power (by a Job or by itself)."""
        return self._shutdowns

    @property
    def registrations(self) -> int:
        """Times its kubelet registered the Node (a re-registration after deletion counts too)."""
        return self._registrations

    @property
    def heartbeats(self) -> int:
        """Heartbeats posted since the simulator started."""
        return self._heartbeats

    def wait_until(self, predicate: Callable[[MachineHandle], bool], timeout: float) -> bool:
        """Blocks until `predicate(self)` holds (checked on every change) or `timeout` passes; returns it."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    # ---- runtime faults and power buttons (any thread) ----

    def power_on_unexpectedly(self) -> None:
        """Someone pressed the power button: it boots and registers without any Job."""
        self._context.scheduler.call_soon(lambda: self.power_on("pressed power button"))

    def power_off_unexpectedly(self) -> None:
        """Power is cut: heartbeats stop at once, without any Job."""
        self._context.scheduler.call_soon(lambda: self.power_off(graceful=False))

    def command_power_on(self, source: str) -> None:
        """A native power-on (Wake-on-LAN, a BMC) reached the machine: it boots exactly as after a startup Job."""
        self._context.scheduler.call_soon(lambda: self.on_power_on_command(source))

    def command_shutdown(self, source: str) -> None:
        """A native graceful power-off reached the machine: it shuts down exactly as after a shutdown Job."""
        self._context.scheduler.call_soon(lambda: self.on_shutdown_command(source))

    def command_power_cut(self) -> None:
        """A BMC cut the power: heartbeats stop at once."""
        self._context.scheduler.call_soon(lambda: self.power_off(graceful=False))

    def fail_next_boot(self) -> None:
        """The next startup Job this simulator completes fails (only when it plays the Job controller)."""
        with self._changed:
            self._fail_next_boots += 1

    def hang_next_boot(self) -> None:
        """The next boot hangs: power comes on but the Node never registers."""
        with self._changed:
            self._hang_next_boots += 1

    def fail_next_shutdown(self) -> None:
        """The next shutdown Job this simulator completes fails and the machine stays on."""
        with self._changed:
            self._fail_next_shutdowns += 1

    # ---- decisions the simulated Job controller asks for (scheduler thread) ----

    def take_boot_failure(self) -> bool:
        """Whether the startup Job being finished now fails; consumes a one-shot fault."""
        with self._changed:
            if self.machine.failures.fail_boot:
                return True
            if self._fail_next_boots:
                self._fail_next_boots -= 1
                return True
            return False

    def take_shutdown_failure(self) -> bool:
        """Whether the shutdown Job being finished now fails; consumes a one-shot fault."""
        with self._changed:
            if self.machine.failures.fail_shutdown:
                return True
            if self._fail_next_shutdowns:
                self._fail_next_shutdowns -= 1
                return True
            return False

    # ---- power transitions (scheduler thread) ----

    def on_startup_succeeded(self, job_name: str) -> None:
        """A startup Job for this machine succeeded: that is the power-on signal."""
        self.on_power_on_command(f"startup Job {job_name} succeeded")

    def on_shutdown_succeeded(self, job_name: str) -> None:
        """A shutdown Job for this machine succeeded: it powers off after shutdown_seconds."""
        self.on_shutdown_command(f"shutdown Job {job_name} succeeded")

    def on_power_on_command(self, cause: str) -> None:
        """Something told the machine to power on (a startup Job, a magic packet, a BMC)."""
        if self._state is PowerState.OFF:
            self.power_on(cause)
        else:
            logger.info("machine %s: %s while %s; nothing to do", self.name, cause, self._state)

    def on_shutdown_command(self, cause: str) -> None:
        """Something told the machine to shut down (a shutdown Job, a BMC's soft off, an SSH command)."""
        if self._state in (PowerState.OFF, PowerState.SHUTTING_DOWN):
            logger.info("machine %s: %s while %s; nothing to do", self.name, cause, self._state)
            return
        logger.info("machine %s: shutting down (%s)", self.name, cause)
        epoch = self._epoch
        self._set_state(PowerState.SHUTTING_DOWN)
        self._context.scheduler.call_later(self.machine.shutdown_seconds, lambda: self._finish_shutdown(epoch))

    def power_on(self, cause: str) -> None:
        """Applies power (an Off machine only): it boots, or hangs if a hang fault is armed."""
        if self._state is not PowerState.OFF:
            return
        with self._changed:
            hang = self.machine.failures.hang_boot or self._hang_next_boots > 0
            if self._hang_next_boots:
                self._hang_next_boots -= 1
            self._epoch += 1
            self._boots += 1
        epoch = self._epoch
        if hang:
            logger.info("machine %s: powered on (%s) and hung in boot", self.name, cause)
            self._set_state(PowerState.HUNG)
            return
        logger.info("machine %s: powered on (%s), booting for %.2f s", self.name, cause, self.machine.boot_seconds)
        self._set_state(PowerState.BOOTING)
        self._context.scheduler.call_later(self.machine.boot_seconds, lambda: self._finish_boot(epoch))

    def power_off(self, graceful: bool) -> None:
        """Cuts power now: heartbeats stop; `graceful` says whether it was a shutdown or a power loss."""
        if self._state is PowerState.OFF:
            return
        was_registered = self._kubelet_started
        self._kubelet_started = False
        with self._changed:
            self._epoch += 1
            self._shutdowns += 1
        self._set_state(PowerState.OFF)
        logger.info("machine %s: powered off (%s)", self.name, "shutdown" if graceful else "power lost")
        if was_registered and self._context.settings.mark_not_ready:
            self._mark_not_ready(graceful)

    # ---- the kubelet ----

    def _finish_boot(self, epoch: int) -> None:
        if epoch != self._epoch or self._state is not PowerState.BOOTING:
            return
        self._kubelet_started = True
        self._set_state(PowerState.RUNNING)
        self._register_then_heartbeat(epoch)

    def _register_then_heartbeat(self, epoch: int) -> None:
        if epoch != self._epoch or self._state not in (PowerState.RUNNING, PowerState.SHUTTING_DOWN):
            return
        if self._register_node():
            self._schedule_heartbeat(epoch)
        else:
            self._context.scheduler.call_later(self._retry_seconds, lambda: self._register_then_heartbeat(epoch))

    def _finish_shutdown(self, epoch: int) -> None:
        if epoch == self._epoch and self._state is PowerState.SHUTTING_DOWN:
            self.power_off(graceful=True)

    def _heartbeat(self, epoch: int) -> None:
        if epoch != self._epoch or self._state not in (PowerState.RUNNING, PowerState.SHUTTING_DOWN):
            return
        rest = self._context.rest
        now = self._context.clock.now()
        try:
            rest.patch(
                f"/api/v1/nodes/{self.machine.kubernetes_node_name}/status",
                manifests.node_heartbeat_patch(self._ready_since, now),
                STRATEGIC_MERGE_PATCH,
            )
        except KubeError as error:
            if error.status != NOT_FOUND:
                logger.warning("machine %s: heartbeat failed: %s", self.name, error)
            else:
                # The Node was deleted while the kubelet runs: it registers again, as a kubelet does.
                logger.info(
                    "machine %s: Node %s is gone, registering again",
                    self.name,
                    self.machine.kubernetes_node_name,
                )
                self._register_node()
        else:
            self._renew_lease()
            with self._changed:
                self._heartbeats += 1
                self._changed.notify_all()
        self._schedule_heartbeat(epoch)

    def _schedule_heartbeat(self, epoch: int) -> None:
        self._context.scheduler.call_later(self._context.settings.heartbeat_seconds, lambda: self._heartbeat(epoch))

    def _register_node(self) -> bool:
        """Creates (or adopts) the Node and posts its full status; False if the server refused."""
        rest = self._context.rest
        name = self.machine.kubernetes_node_name
        now = self._context.clock.now()
        self._ready_since = now
        manifest = manifests.node_manifest(self.machine, self._boots, now, now)
        try:
            try:
                rest.post("/api/v1/nodes", manifest)
            except KubeError as error:
                if error.status != ALREADY_EXISTS:
                    raise
                # A Node left from an earlier boot: the kubelet takes it over and refreshes its labels.
                rest.patch(f"/api/v1/nodes/{name}", {"metadata": {"labels": manifests.node_labels(self.machine)}})
            # Servers that drop .status on create get it here; on the others this is a harmless repeat.
            rest.patch(f"/api/v1/nodes/{name}/status", {"status": manifest["status"]}, STRATEGIC_MERGE_PATCH)
        except KubeError as error:
            logger.warning("machine %s: registering Node %s failed: %s", self.name, name, error)
            return False
        with self._changed:
            self._registrations += 1
            self._changed.notify_all()
        logger.info("machine %s: registered Node %s (providerID %r)", self.name, name, self.machine.provider_id)
        self._renew_lease()
        return True

    def _renew_lease(self) -> None:
        rest = self._context.rest
        name = self.machine.kubernetes_node_name
        now = self._context.clock.now()
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{manifests.LEASE_NAMESPACE}/leases"
        try:
            rest.patch(f"{leases}/{name}", manifests.lease_renew_patch(name, now), MERGE_PATCH)
            return
        except KubeError as error:
            if error.status != NOT_FOUND:
                logger.warning("machine %s: renewing Lease failed: %s", self.name, error)
                return
        try:
            node_uid = str(rest.get(f"/api/v1/nodes/{name}").get("metadata", {}).get("uid", ""))
            try:
                rest.post(leases, manifests.lease_manifest(name, node_uid, now))
            except KubeError as error:
                if error.status != NOT_FOUND:
                    raise
                # Only a bare fake API lacks kube-node-lease; a real cluster always has it.
                self._create_namespace(manifests.LEASE_NAMESPACE)
                rest.post(leases, manifests.lease_manifest(name, node_uid, now))
        except KubeError as error:
            if error.status != ALREADY_EXISTS:
                logger.warning("machine %s: creating Lease failed: %s", self.name, error)

    def _create_namespace(self, namespace: str) -> None:
        try:
            self._context.rest.post(
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            )
        except KubeError as error:
            if error.status != ALREADY_EXISTS:
                raise

    def _mark_not_ready(self, graceful: bool) -> None:
        try:
            self._context.rest.patch(
                f"/api/v1/nodes/{self.machine.kubernetes_node_name}/status",
                manifests.node_not_ready_patch(graceful, self._context.clock.now()),
                STRATEGIC_MERGE_PATCH,
            )
        except KubeError as error:
            if error.status != NOT_FOUND:  # already deleted by the operator: nothing to mark
                logger.warning("machine %s: marking Node not ready failed: %s", self.name, error)

    @property
    def _retry_seconds(self) -> float:
        return min(self._context.settings.heartbeat_seconds, MAX_RETRY_SECONDS)

    def _set_state(self, state: PowerState) -> None:
        with self._changed:
            self._state = state
            self._changed.notify_all()
