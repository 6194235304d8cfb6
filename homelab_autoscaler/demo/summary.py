"""The demo's closing summary: what each machine went through, how long boots took, what failed, how the natively
powered machines were switched and read back, what was saved.

Pure: everything is computed from the run's `History` (the states each machine was seen in, with the operator's own
timestamps), each machine's power draw and the operator's energy counters as read from its `/metrics` at the end
(`energy_from_metrics`), so the numbers can be checked against hand-made histories and exposition texts.

Energy is what the operator itself counted (`homelab_autoscaler_group_energy_used_joules_total` and `..._avoided_...`,
see `actors.fsm.energy`), not a separate estimate: the summary shows what a Prometheus scraping the operator saw.
The run lasts seconds, so the saving is also extrapolated: a day spent the way the run was spent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from homelab_autoscaler.demo.observation import History, boot_durations
from homelab_autoscaler.status_view import human_age, readback_text
from schemas.node import NodeState

HOURS_PER_DAY: Final = 24
JOULES_PER_WATT_HOUR: Final = 3600.0
USED_COUNTER: Final = "homelab_autoscaler_group_energy_used_joules_total"
AVOIDED_COUNTER: Final = "homelab_autoscaler_group_energy_avoided_joules_total"


@dataclass(frozen=True)
class MachineSummary:
    name: str
    group: str
    states: tuple[str, ...]
    """Every state seen, in order, starting with the one the run began in."""
    boot_seconds: tuple[float, ...]
    failed_boots: int
    power_watts: int
    final_state: str
    drivers: Mapping[str, str] = field(default_factory=dict)
    """Natively powered: the driver seen switching it, per operation (`startup`, `shutdown`); empty: Jobs."""
    readbacks: tuple[str, ...] = ()
    """The power states its BMC read back, in order (repeats dropped)."""
    last_readback: str = ""
    """The last readback as `status -o wide` shows it (`Off 1s ago (ipmi)`); "" when never read back."""

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
class CountedEnergy:
    """The operator's energy counters at the end of the run, summed over its groups."""

    used_watt_hours: float
    avoided_watt_hours: float
    """Compared with the same machines always on."""
    always_on_watts: int
    """What the machines with a known draw draw together when all are on."""

    @property
    def saved_fraction(self) -> float:
        always_on = self.used_watt_hours + self.avoided_watt_hours
        return self.avoided_watt_hours / always_on if always_on > 0 else 0.0

    @property
    def always_on_kwh_per_day(self) -> float:
        return self.always_on_watts * HOURS_PER_DAY / 1000

    @property
    def saved_kwh_per_day(self) -> float:
        return self.saved_fraction * self.always_on_kwh_per_day


def energy_from_metrics(exposition: str) -> tuple[float, float] | None:
    """(used, avoided) watt-hours summed over the groups in an operator's `/metrics` text; None without them. Pure."""
    totals = {USED_COUNTER: 0.0, AVOIDED_COUNTER: 0.0}
    seen = False
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
                seen = True
    if not seen:
        return None
    return totals[USED_COUNTER] / JOULES_PER_WATT_HOUR, totals[AVOIDED_COUNTER] / JOULES_PER_WATT_HOUR


@dataclass(frozen=True)
class DemoSummary:
    duration_seconds: float
    machines: tuple[MachineSummary, ...]
    boot_times: BootTimes | None
    failures: tuple[str, ...]
    energy: CountedEnergy | None
    """None when the operator's counters could not be read."""
    reached: bool
    outcome: str

    def machine(self, name: str) -> MachineSummary:
        for machine in self.machines:
            if machine.name == name:
                return machine
        raise KeyError(name)


def summarize(
    history: History,
    power_watts: Mapping[str, int],
    *,
    reached: bool,
    outcome: str,
    counted: tuple[float, float] | None = None,
) -> DemoSummary:
    """The summary of a run; `counted` is `energy_from_metrics` of the operator's `/metrics` at its end. Pure."""
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
                power_watts=power_watts.get(name, 0),
                final_state=timeline[-1].state if timeline else "",
                drivers=dict(history.drivers.get(name, {})),
                readbacks=tuple(history.readbacks.get(name, ())),
                last_readback=readback_text(row) if row is not None else "",
            )
        )
    boots = [seconds for machine in machines for seconds in machine.boot_seconds]
    boot_times = (
        BootTimes(len(boots), min(boots), sum(boots) / len(boots), max(boots)) if boots else None
    )
    always_on_watts = sum(machine.power_watts for machine in machines)
    energy = CountedEnergy(counted[0], counted[1], always_on_watts) if counted is not None else None
    return DemoSummary(
        duration_seconds=duration,
        machines=tuple(machines),
        boot_times=boot_times,
        failures=tuple(_failures(history, machines)),
        energy=energy,
        reached=reached,
        outcome=outcome,
    )


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


def _native_lines(machines: Sequence[MachineSummary]) -> list[str]:
    """How each machine switched by the operator's own drivers was switched and read back; none: no line."""
    lines = []
    for machine in machines:
        if not machine.drivers and not machine.readbacks:
            continue
        switched = ", ".join(
            f"{'on' if operation == 'startup' else 'off'} by {driver}" for operation, driver in machine.drivers.items()
        )
        read = " → ".join(machine.readbacks) or "never"
        text = f"{machine.name}: {switched or 'not switched'}; read back {read}"
        if machine.last_readback:
            text += f" (last: {machine.last_readback})"
        lines.append(f"    {text}")
    return ["  Native power (no power Jobs):", *lines] if lines else []


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
            f"avg {times.average:.1f} s, max {times.maximum:.1f} s (power-on sent → Node Ready)"
        )
    else:
        lines.append("  Boot times: no machine finished booting")
    if summary.failures:
        lines.append("  Failures:")
        lines += [f"    {failure}" for failure in summary.failures]
    else:
        lines.append("  Failures: none")
    lines += _native_lines(summary.machines)
    energy = summary.energy
    if energy is None:
        lines.append("  Energy: the operator's counters could not be read from its /metrics")
    else:
        lines.append(
            f"  Energy (the operator's counters): {energy.used_watt_hours:.2f} Wh used, "
            f"{energy.avoided_watt_hours:.2f} Wh avoided compared with always on ({energy.saved_fraction:.0%}). "
            f"A day spent like this run saves about {energy.saved_kwh_per_day:.1f} kWh of the "
            f"{energy.always_on_kwh_per_day:.1f} kWh they would draw left on."
        )
    return "\n".join(lines) + "\n"

