"""The short chaos soak, as CI runs it: 100 machines, 20 s of faults, one operator kill, a fixed seed.

`bench/soak.py` runs in a child process exactly as a person would run it (its own fake API process, the real
operator, a CA-like driver over gRPC) and writes its figures to JSON; these tests read the figures. The run takes
25 to 35 s on a 2-core machine, so it runs once for the module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

REPOSITORY: Final = Path(__file__).resolve().parents[3]
PROFILE: Final = ("--machines", "100", "--duration", "20", "--seed", "7")
RUN_TIMEOUT: Final = 110.0
"""A hung soak fails the test instead of blocking CI (a run normally takes 25 to 35 s here)."""
FAULT_KINDS: Final = {
    "api-errors", "latency", "drop-watches", "compaction", "boot-failure", "hang-boot", "fail-shutdown",
    "power-on", "power-off",
}


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    figures_path = tmp_path_factory.mktemp("soak") / "figures.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.soak", *PROFILE, "--json", str(figures_path)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )
    assert figures_path.exists(), f"the soak wrote no figures:\n{completed.stdout}\n{completed.stderr[-4000:]}"
    figures: dict[str, Any] = json.loads(figures_path.read_text(encoding="utf-8"))
    figures["exit_status"] = completed.returncode
    figures["printed"] = completed.stdout
    return figures


def test_the_soak_drives_the_operator_through_every_kind_of_fault(soak: dict[str, Any]) -> None:
    assert soak["operator_kills"] == 1
    assert set(soak["faults_by_kind"]) == FAULT_KINDS
    assert soak["completed_by_kind"].get("increase", 0) > 0
    assert soak["completed_by_kind"].get("delete running nodes", 0) > 0
    assert soak["promises_started"] > 0
    assert soak["operations_refused_as_expected"] > 0, "increases past maxSize are always refused"
    assert "verdict:" in soak["printed"]


def test_no_job_is_duplicated_no_target_overshoots_and_every_invariant_holds_after_convergence(
    soak: dict[str, Any],
) -> None:
    summary = soak["printed"]
    assert soak["converged"], summary
    assert soak["violation_detail"] == [], summary
    assert soak["duplicate_detail"] == [], summary
    assert soak["max_target_overshoot"] == 0, summary
    assert soak["unexpected"] == [], summary
    assert soak["lost"] == soak["lost_across_a_kill"], f"scale-ups lost without any kill:\n{summary}"
    # What a person running the soak reads: the verdict line and the exit status, both saying it held.
    assert soak["problems"] == [], summary
    assert "verdict: PASS" in summary
    assert soak["exit_status"] == 0, summary


def test_no_scale_up_is_lost_across_an_operator_kill(soak: dict[str, Any]) -> None:
    assert soak["lost_detail"] == [], soak["printed"]
    assert soak["lost"] == 0, soak["printed"]
    assert soak["exit_status"] == 0, soak["printed"]
