"""kubectl's table columns in the fake API read the same JSONPaths a real API server reads."""

from __future__ import annotations

from typing import Any

import pytest

from sim.fakeapi.tables import evaluate

OBJECT: dict[str, Any] = {
    "metadata": {"labels": {"infra.homecluster.dev/group": "minis"}},
    "status": {"state": "Ready", "conditions": [{"type": "Ready", "status": "True"}]},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param(r".metadata.labels.infra\.homecluster\.dev/group", "minis", id="label-with-escaped-dots"),
        pytest.param(".status.state", "Ready", id="plain-field"),
        pytest.param(".status.conditions[0].status", "True", id="index"),
        pytest.param('.status.conditions[?(@.type=="Ready")].status', "True", id="filter"),
        pytest.param(".status.missing", None, id="missing-field"),
    ],
)
def test_printer_column_paths(path: str, expected: object) -> None:
    assert evaluate(OBJECT, path) == expected
