"""Energy accounting as Prometheus sees it: the operator's `/metrics` after a simulated day, compressed in time.

The operator runs on a clock the test moves: a machine is booted through the gateway the way Cluster Autoscaler
boots it, kept on for six hours, powered off and left off for eighteen. Its counters must say exactly what a
machine that draws 100 W on and 10 W in standby used and saved in that day, its group's cost at the group's price,
and must read the same from a new operator after a restart (they are derived from the Node status, not kept in
memory). A machine without a declared draw has no figures, only a count of unknown machines.
"""

from __future__ import annotations

import threading
import urllib.request
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from tests.support.operator_homelab import GROUP_ID, Homelab, RunningOperator, simulated
from tests.support.polling import wait_for

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
HOUR = 3600.0


class MovableClock:
    """The operator's clock: stands still until the test moves it (read from the operator's threads)."""

    def __init__(self, start: datetime) -> None:
        self._lock = threading.Lock()
        self._now = start

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, hours: float) -> None:
        with self._lock:
            self._now += timedelta(hours=hours)


def scrape(running: RunningOperator) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://127.0.0.1:{running.operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "energy" in sample.name or "power_draw" in sample.name
    }


def machine(name: str, node: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (f"homelab_autoscaler_machine_{name}", (("group", GROUP_ID), ("node", node)))


def group(name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (f"homelab_autoscaler_group_{name}", (("group", GROUP_ID),))


def test_a_day_of_energy_is_counted_from_the_status_and_survives_a_restart(homelab: Homelab) -> None:
    clock = MovableClock(T0)
    homelab.add_group(max_size=2, energyPrice="0.30")
    homelab.add_machine("m1", priority=10, pricing={"powerWatts": 100, "standbyWatts": 10})
    homelab.add_machine("m2")  # no declared draw: unknown
    homelab.simulate(simulated("m1"), simulated("m2"))
    first = homelab.start_operator(clock=clock)

    first.increase_size(1)
    homelab.wait_state("m1", "Ready")  # the clock stands still: the boot takes no simulated time
    clock.advance(6)
    first.delete_nodes("homelab://homelab/m1", names=["m1"])
    homelab.wait_state("m1", "Shutdown")
    clock.advance(18)

    # 6 h at 100 W and 18 h at 10 W used; 18 h at (100 - 10) W avoided; 0.78 kWh at 0.30 a kWh.
    used, avoided = (100 * 6 + 10 * 18) * HOUR, (100 - 10) * 18 * HOUR
    expected = {
        machine("energy_used_joules_total", "m1"): used,
        machine("energy_avoided_joules_total", "m1"): avoided,
        machine("power_draw_watts", "m1"): 10.0,
        group("energy_used_joules_total"): used,
        group("energy_avoided_joules_total"): avoided,
        group("power_draw_watts"): 10.0,
        group("energy_cost_total"): 0.78 * 0.30,
        group("energy_unknown_machines"): 1.0,
    }
    figures = scrape(first)
    assert {key: round(value, 6) for key, value in figures.items() if key in expected} == {
        key: round(value, 6) for key, value in expected.items()
    }
    assert not [key for key in figures if ("node", "m2") in key[1]], "an unknown draw must not be a series"

    homelab.stop_operator(first)
    second = homelab.start_operator(clock=clock)
    wait_for(lambda: machine("energy_used_joules_total", "m1") in scrape(second), what="the new operator's counters")
    assert scrape(second) == figures
