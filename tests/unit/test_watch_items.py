"""How a watch hands a list over: raw objects freed as the consumer reads them, managedFields never kept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import urllib3

from actors.watch_port import Listed, WatchOutput, drain_items
from kubeapi.kube_client import KubeTransient
from kubeapi.watch import ResourceWatch


def _raw(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "homelab", "resourceVersion": "1"}}


@pytest.mark.parametrize(
    "container",
    [pytest.param(list, id="list-handed-over"), pytest.param(tuple, id="tuple")],
)
def test_drain_items_yields_every_item_in_order(container: type) -> None:
    items = container(_raw(name) for name in ("a", "b", "c"))
    listed = Listed("machines", items, "7")

    read = [raw["metadata"]["name"] for raw in drain_items(listed)]

    assert read == ["a", "b", "c"]
    # A handed-over list is emptied as it is read, so each raw object can be freed once parsed.
    assert len(listed.items) == (0 if container is list else 3)


def test_a_list_is_delivered_without_managed_fields() -> None:
    pages = [
        {
            "metadata": {"resourceVersion": "9"},
            "items": [
                {**_raw("a"), "spec": {"x": 1}},
                {"metadata": {**_raw("b")["metadata"], "managedFields": [{"manager": "kubectl"}]}},
            ],
        }
    ]
    delivered: list[Listed] = []

    def list_page(_query: Mapping[str, str]) -> dict[str, Any]:
        return pages[0]

    def open_watch(_query: Mapping[str, str], _read_timeout: float) -> urllib3.BaseHTTPResponse:
        raise KubeTransient("no watch in this test")

    def sink(output: WatchOutput) -> None:
        if isinstance(output, Listed):
            delivered.append(output)

    watch = ResourceWatch("machines", list_page, open_watch, sink, initial_backoff=60.0)
    watch.start()
    try:
        assert watch.wait_synced(5.0)
    finally:
        watch.stop()

    assert [raw["metadata"] for raw in delivered[0].items] == [_raw("a")["metadata"], _raw("b")["metadata"]]
    assert delivered[0].items[0]["spec"] == {"x": 1}
