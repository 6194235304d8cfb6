"""The native-power examples name valid driver blocks in valid combinations, and Secrets their headers create."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from schemas.power import PowerSpec

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "native-power"


def _files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))


def test_there_is_one_example_per_kind_of_setup() -> None:
    assert [path.name for path in _files()] == ["ipmi.yaml", "redfish.yaml", "wake-on-lan-ssh.yaml"]


@pytest.mark.parametrize("path", _files(), ids=lambda path: path.name)
def test_every_node_has_a_usable_power_block_whose_secrets_the_header_creates(path: Path) -> None:
    text = path.read_text()
    nodes = [document for document in yaml.safe_load_all(text) if document and document.get("kind") == "Node"]
    assert nodes
    for node in nodes:
        power = PowerSpec.model_validate(node["spec"]["power"])
        assert power.problems() == (), node["metadata"]["name"]
        assert "startupJob" not in node["spec"]
        headers = "".join(other.read_text() for other in _files())
        for secret in power.secret_names():
            assert f"create secret generic {secret}" in headers, secret
