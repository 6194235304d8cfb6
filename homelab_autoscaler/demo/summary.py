"""The demo's closing summary: what each machine went through, how long boots took, what failed, what was saved.

Pure: everything is computed from the run's `History` (the states each machine was seen in, with the operator's own
timestamps) and each machine's power draw, so the numbers can be checked against hand-made histories.

Energy is an estimate and says so. A machine counts as drawing its `powerWatts` whenever it is not known to be off
(Shutdown and Quarantined are off; a failed boot counts as on, because a half-started machine may well be), and
what was saved is the off time against the same machines left on, the way a homelab without an autoscaler runs.
The run lasts seconds, so the saving is extrapolated: a day spent the way the run was spent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from homelab_autoscaler.demo.observation import History, StateEntry, boot_durations
from homelab_autoscaler.status_view import human_age
from schemas.node import NodeState

OFF_STATES: Final = frozenset({NodeState.SHUTDOWN.value, NodeState.QUARANTINED.value})
SECONDS_PER_DAY: Final = 86400.0


@dataclass(frozen=True)
class MachineSummary:
    name: str
    group: str
    states: tuple[str, ...]
    """Every state seen, in order, starting with the one the run began in."""
    boot_seconds: tuple[float, ...]
    failed_boots: int
    off_seconds: float
    power_watts: int
    final_state: str

    @property
    def transitions(self) -> int:
        return max(0, len(self.states) - 1)


@dataclass(frozen=True)
class BootTimes:
    count: int
    minimum: float
    average: float
    maximum: float


@dataclass(frozen=True)
class EnergyEstimate:
    run_seconds: float
    always_on_watt_hours: float
    """What every machine would have drawn on for the whole run."""
    saved_watt_hours: float

    @property
    def saved_fraction(self) -> float:
        return self.saved_watt_hours / self.always_on_watt_hours if self.always_on_watt_hours > 0 else 0.0

    @property
    def saved_kwh_per_day(self) -> float:
        return self._per_day(self.saved_watt_hours)

    @property
    def always_on_kwh_per_day(self) -> float:
        return self._per_day(self.always_on_watt_hours)

    def _per_day(self, watt_hours: float) -> float:
        return watt_hours / 1000 * SECONDS_PER_DAY / self.run_seconds if self.run_seconds > 0 else 0.0


@dataclass(frozen=True)
class DemoSummary:
    duration_seconds: float
    machines: tuple[MachineSummary, ...]
    boot_times: BootTimes | None
    failures: tuple[str, ...]
    energy: EnergyEstimate
    reached: bool
    outcome: str

    def machine(self, name: str) -> MachineSummary:
        for machine in self.machines:
            if machine.name == name:
                return machine
        raise KeyError(name)


def summarize(history: History, power_watts: Mapping[str, int], *, reached: bool, outcome: str) -> DemoSummary:
    """The summary of a run. Pure."""
    first, last = history.first, history.last
    start = first.elapsed if first is not None else 0.0
    end = last.elapsed if last is not None else start
    duration = max(0.0, end - start)
    rows = {row.name: row for row in last.view.machines} if last is not None else {}
    machines = []
    for name, timeline in history.timelines.items():
        row = rows.get(name)
        machines.append(
            MachineSummary(
                name=name,
                group=(row.group if row is not None else None) or "",
                states=tuple(entry.state for entry in timeline),
                boot_seconds=tuple(boot_durations(timeline)),
                failed_boots=sum(entry.state == NodeState.BOOT_FAILED.value for entry in timeline),
                off_seconds=off_seconds(timeline, start, end),
                power_watts=power_watts.get(name, 0),
                final_state=timeline[-1].state if timeline else "",
            )
        )
    boots = [seconds for machine in machines for seconds in machine.boot_seconds]
    boot_times = (
        BootTimes(len(boots), min(boots), sum(boots) / len(boots), max(boots)) if boots else None
    )
    always_on = sum(machine.power_watts for machine in machines) * duration / 3600
    saved = sum(machine.power_watts * machine.off_seconds for machine in machines) / 3600
    return DemoSummary(
        duration_seconds=duration,
        machines=tuple(machines),
        boot_times=boot_times,
        failures=tuple(_failures(history, machines)),
        energy=EnergyEstimate(duration, always_on, saved),
        reached=reached,
        outcome=outcome,
    )


def off_seconds(timeline: Sequence[StateEntry], start: float, end: float) -> float:
    """Seconds of [start, end] the machine spent in an off state, by when each state was seen. Pure."""
    total = 0.0
    for index, entry in enumerate(timeline):
        begins = max(start, entry.seen_at)
        ends = min(end, timeline[index + 1].seen_at) if index + 1 < len(timeline) else end
        if entry.state in OFF_STATES and ends > begins:
            total += ends - begins
    return total


def _failures(history: History, machines: Sequence[MachineSummary]) -> list[str]:
    failures = []
    last = history.last
    for machine in machines:
        if not machine.failed_boots:
            continue
        text = f"{machine.name}: {machine.failed_boots} failed boot{'s' if machine.failed_boots > 1 else ''}"
        error = history.errors.get(machine.name)
        if error:
            text += f" ({error})"
        row = last.machine(machine.name) if last is not None else None
        if row is not None and row.cooldown_seconds:
            text += f"; now {row.state}, cooling down for {human_age(row.cooldown_seconds)} more"
        elif row is not None:
            text += f"; now {row.state}"
        failures.append(text)
    for job in history.jobs.values():
        if job.outcome == "failed" and not any(machine.name == job.machine and machine.failed_boots
                                               for machine in machines):
            failures.append(f"{job.machine}: {job.operation} Job {job.name} failed")
    return failures


# --- text ------------------------------------------------------------------------------------------------------


def render_summary(summary: DemoSummary) -> str:
    """The summary as text for the terminal. Pure."""
    verdict = "reached" if summary.reached else "NOT REACHED"
    lines = [
        f"Summary of the demo ({summary.duration_seconds:.1f} s)",
        f"  Outcome {verdict}: {summary.outcome}.",
        "",
    ]
    name_width = max([len("MACHINE"), *(len(machine.name) for machine in summary.machines)])
    group_width = max([len("GROUP"), *(len(machine.group) for machine in summary.machines)])
    lines.append(f"  {'MACHINE'.ljust(name_width)}   {'GROUP'.ljust(group_width)}   BOOT     TRANSITIONS")
    for machine in summary.machines:
        boot = ", ".join(f"{seconds:.1f} s" for seconds in machine.boot_seconds) or "-"
        path = " → ".join(machine.states)
        lines.append(
            f"  {machine.name.ljust(name_width)}   {machine.group.ljust(group_width)}   {boot:<8} "
            f"{machine.transitions}: {path}"
        )
    lines.append("")
    times = summary.boot_times
    if times is not None:
        lines.append(
            f"  Boot times: {times.count} boot{'s' if times.count != 1 else ''}, min {times.minimum:.1f} s, "
            f"avg {times.average:.1f} s, max {times.maximum:.1f} s (startup Job created → Node Ready)"
        )
    else:
        lines.append("  Boot times: no machine finished booting")
    if summary.failures:
        lines.append("  Failures:")
        lines += [f"    {failure}" for failure in summary.failures]
    else:
        lines.append("  Failures: none")
    energy = summary.energy
    lines.append(
        f"  Energy (estimate): the machines were off {energy.saved_fraction:.0%} of the time. A day spent like "
        f"this run saves about {energy.saved_kwh_per_day:.1f} kWh of the {energy.always_on_kwh_per_day:.1f} kWh "
        "they would draw left on."
    )
    return "\n".join(lines) + "\n"

