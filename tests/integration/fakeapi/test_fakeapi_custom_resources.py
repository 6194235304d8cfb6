"""CustomResourceDefinitions: creating one starts serving its resource (discovery included), custom objects
get full CRUD and status-subresource semantics, deleting the CRD stops serving."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fakeapi_test_support import WIDGET_CRD, raw_request, status_of
from kubernetes import client

from sim.fakeapi import FakeApiServer
from tests.support.polling import wait_for


def _widget(name: str, color: str = "red") -> dict[str, Any]:
    return {"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"color": color}}


def test_crd_is_established_and_discoverable(fake_api: FakeApiServer, widgets: str,
                                             api_client: client.ApiClient) -> None:
    crd = client.ApiextensionsV1Api(api_client).read_custom_resource_definition("widgets.example.dev")
    _, _, resources = raw_request(fake_api.url, "GET", "/apis/example.dev/v1")
    _, _, groups = raw_request(fake_api.url, "GET", "/apis")

    assert {c.type: c.status for c in crd.status.conditions} == {"NamesAccepted": "True", "Established": "True"}
    assert "example.dev" in [group["name"] for group in groups["groups"]]
    entries = {entry["name"]: entry for entry in resources["resources"]}
    assert entries["widgets"]["kind"] == "Widget"
    assert entries["widgets"]["namespaced"] is True
    assert entries["widgets"]["shortNames"] == ["wd"]
    assert "watch" in entries["widgets"]["verbs"]
    assert entries["widgets/status"]["verbs"] == ["get", "patch", "update"]


def test_custom_object_crud(custom: client.CustomObjectsApi, widgets: str, namespace: str) -> None:
    created = custom.create_namespaced_custom_object("example.dev", "v1", namespace, widgets, _widget("w"))
    patched = custom.patch_namespaced_custom_object("example.dev", "v1", namespace, widgets, "w",
                                                    {"spec": {"color": "blue"}})
    patched["spec"]["size"] = 3
    replaced = custom.replace_namespaced_custom_object("example.dev", "v1", namespace, widgets, "w", patched)
    listed = custom.list_namespaced_custom_object("example.dev", "v1", namespace, widgets)
    custom.delete_namespaced_custom_object("example.dev", "v1", namespace, widgets, "w")

    assert created["metadata"]["generation"] == 1
    assert replaced["spec"] == {"color": "blue", "size": 3}
    assert replaced["metadata"]["generation"] == 3
    assert [item["metadata"]["name"] for item in listed["items"]] == ["w"]
    assert listed["items"][0]["kind"] == "Widget"
    with pytest.raises(client.ApiException) as caught:
        custom.get_namespaced_custom_object("example.dev", "v1", namespace, widgets, "w")
    assert status_of(caught.value)["message"] == 'widgets.example.dev "w" not found'


def test_custom_object_status_subresource(custom: client.CustomObjectsApi, widgets: str, namespace: str) -> None:
    created = custom.create_namespaced_custom_object("example.dev", "v1", namespace, widgets,
                                                     {**_widget("w"), "status": {"state": "ignored"}})
    status_patched = custom.patch_namespaced_custom_object_status(
        "example.dev", "v1", namespace, widgets, "w", {"spec": {"color": "green"}, "status": {"state": "Ready"}})
    main_patched = custom.patch_namespaced_custom_object("example.dev", "v1", namespace, widgets, "w",
                                                         {"status": {"state": "Broken"}})

    assert "status" not in created
    assert status_patched["spec"]["color"] == "red"
    assert status_patched["status"] == {"state": "Ready"}
    assert status_patched["metadata"]["generation"] == 1
    assert main_patched["status"] == {"state": "Ready"}


def test_custom_object_selectable_field(custom: client.CustomObjectsApi, widgets: str, namespace: str) -> None:
    for name, color in (("a", "red"), ("b", "blue")):
        custom.create_namespaced_custom_object("example.dev", "v1", namespace, widgets, _widget(name, color))

    listed = custom.list_namespaced_custom_object("example.dev", "v1", namespace, widgets,
                                                  field_selector="spec.color=blue")

    assert [item["metadata"]["name"] for item in listed["items"]] == ["b"]


def test_deleting_a_crd_removes_its_objects_and_stops_serving(
        fake_api: FakeApiServer, api_client: client.ApiClient, custom: client.CustomObjectsApi,
        namespace: str) -> None:
    crd = copy.deepcopy(WIDGET_CRD)
    crd["metadata"]["name"] = "gadgets.example.dev"
    crd["spec"]["names"] = {"plural": "gadgets", "kind": "Gadget"}
    extensions = client.ApiextensionsV1Api(api_client)
    extensions.create_custom_resource_definition(crd)
    custom.create_namespaced_custom_object("example.dev", "v1", namespace, "gadgets", {
        "apiVersion": "example.dev/v1", "kind": "Gadget", "metadata": {"name": "g"}})

    extensions.delete_custom_resource_definition("gadgets.example.dev")

    def not_served() -> bool:
        status, _, _ = raw_request(fake_api.url, "GET", f"/apis/example.dev/v1/namespaces/{namespace}/gadgets")
        return status == 404
    wait_for(not_served)
    _, _, resources = raw_request(fake_api.url, "GET", "/apis/example.dev/v1")
    assert "gadgets" not in [entry["name"] for entry in resources["resources"]]


def test_invalid_crd_is_rejected(api_client: client.ApiClient) -> None:
    crd = copy.deepcopy(WIDGET_CRD)
    crd["metadata"]["name"] = "wrong-name.example.dev"

    with pytest.raises(client.ApiException) as caught:
        client.ApiextensionsV1Api(api_client).create_custom_resource_definition(crd)

    assert (caught.value.status, status_of(caught.value)["reason"]) == (422, "Invalid")
