"""Seeding a homelab: the right number of Groups and Node CRs, labelled and valid against our CRDs, and
the machine list the simulator gets matches them one for one."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import jsonschema
import pytest
from kubernetes import client as kube_client

from schemas import API_GROUP, API_VERSION
from schemas import labels as label_names
from schemas.crds import render_crds
from schemas.validation import validate_group, validate_node
from sim.fakeapi import FakeApiServer
from sim.machines import ProviderIdMode
from sim.seed import machines_from_cluster, plan_homelab, seed_homelab


def crd_schema(kind: str) -> dict[str, Any]:
    crd = next(crd for crd in render_crds() if crd["spec"]["names"]["kind"] == kind)
    version = next(version for version in crd["spec"]["versions"] if version["name"] == API_VERSION)
    return dict(version["schema"]["openAPIV3Schema"])


def custom_objects(api_client: kube_client.ApiClient, namespace: str, plural: str) -> list[dict[str, Any]]:
    listing = kube_client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, plural
    )
    return list(listing["items"])


@pytest.mark.parametrize(
    ("machines", "groups", "sizes"),
    [
        pytest.param(6, 2, [3, 3], id="even"),
        pytest.param(7, 3, [3, 2, 2], id="remainder-goes-to-the-first-groups"),
        pytest.param(2, 3, [1, 1, 0], id="more-groups-than-machines"),
        pytest.param(0, 1, [0], id="no-machines"),
    ],
)
def test_machines_fill_groups_in_blocks_of_nearly_equal_size(
    machines: int, groups: int, sizes: list[int]
) -> None:
    plan = plan_homelab("lab", groups, machines)

    members = Counter(machine.group for machine in plan.machines)
    assert [members[f"group-{number}"] for number in range(1, groups + 1)] == sizes
    assert [group["spec"].get("maxSize") for group in plan.groups] == sizes
    assert [machine.name for machine in plan.machines] == [f"machine-{n:04d}" for n in range(1, machines + 1)]


def test_every_planned_object_passes_the_admission_rules() -> None:
    plan = plan_homelab("lab", 3, 12, provider_id_mode=ProviderIdMode.K3S)

    assert [error for group in plan.groups for error in validate_group(group)] == []
    assert [error for node in plan.nodes for error in validate_node(node)] == []
    assert {node["spec"]["providerID"] for node in plan.nodes} == {f"k3s://{m.name}" for m in plan.machines}


def test_seeding_500_machines_into_the_fake_store(
    fake_api: FakeApiServer, api_client: kube_client.ApiClient
) -> None:
    namespace = f"seed-{uuid.uuid4().hex[:8]}"

    machines = seed_homelab(fake_api, namespace, groups=7, machines=500, boot_seconds=0.1)

    groups = custom_objects(api_client, namespace, "groups")
    nodes = custom_objects(api_client, namespace, "nodes")
    assert (len(groups), len(nodes), len(machines)) == (7, 500, 500)
    group_validator = jsonschema.Draft7Validator(crd_schema("Group"))
    node_validator = jsonschema.Draft7Validator(crd_schema("Node"))
    assert [error.message for group in groups for error in group_validator.iter_errors(group)] == []
    assert [error.message for node in nodes for error in node_validator.iter_errors(node)] == []
    members = Counter(node["metadata"]["labels"][label_names.GROUP_LABEL] for node in nodes)
    assert {group["metadata"]["name"]: group["spec"]["maxSize"] for group in groups} == dict(members)
    assert {(m.name, m.group) for m in machines} == {
        (node["metadata"]["name"], node["metadata"]["labels"][label_names.GROUP_LABEL]) for node in nodes
    }
    assert {m.boot_seconds for m in machines} == {0.1}
    templates = {group["metadata"]["name"]: group["spec"]["template"]["capacity"] for group in groups}
    assert all(dict(m.capacity) == templates[m.group] for m in machines)


def test_seeding_over_http_is_the_same_and_can_be_repeated(
    fake_api: FakeApiServer, api_client: kube_client.ApiClient
) -> None:
    namespace = f"seed-{uuid.uuid4().hex[:8]}"

    first = seed_homelab(api_client, namespace, groups=2, machines=30, provider_id_mode=ProviderIdMode.PRESET)
    again = seed_homelab(api_client, namespace, groups=2, machines=30, provider_id_mode=ProviderIdMode.PRESET)

    assert first == again
    assert len(custom_objects(api_client, namespace, "nodes")) == 30
    assert len(custom_objects(api_client, namespace, "groups")) == 2
    assert first[0].provider_id == f"homelab://{namespace}/machine-0001"


def test_machines_can_be_read_back_from_existing_node_resources(
    fake_api: FakeApiServer, api_client: kube_client.ApiClient
) -> None:
    namespace = f"seed-{uuid.uuid4().hex[:8]}"
    seeded = seed_homelab(fake_api, namespace, groups=2, machines=5, provider_id_mode=ProviderIdMode.K3S)

    found = machines_from_cluster(api_client, namespace)

    assert sorted((m.name, m.group, m.provider_id_mode, m.kubernetes_node_name) for m in found) == sorted(
        (m.name, m.group, m.provider_id_mode, m.kubernetes_node_name) for m in seeded
    )
