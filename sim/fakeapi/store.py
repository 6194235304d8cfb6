"""The object store: every object, the single global resourceVersion counter, bounded history, and watch fan-out.

Separate because it is the one piece of shared mutable state; everything else is either a pure rule
(``admission``, ``patch``, ``selectors``) or I/O (``server``). One re-entrant lock serialises writes, so a
write is O(1) dictionary work plus O(watchers of that resource) filter checks, and events reach every watcher
in resourceVersion order. Stored objects are never mutated after they are stored: every write builds a new
dict, so readers may serialise a stored object outside the lock.

Two ways in: the HTTP layer calls the ``*_object`` methods with a resolved ``ResourceType`` and must treat
the returned dicts as read-only; tests and simulators use the convenience methods (``create``, ``get``,
``list``, ``update``, ``patch``, ``delete``) addressed by ``apiVersion`` + plural, which return deep copies
and raise ``ApiError`` exactly where the HTTP API would answer with a Status.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sim.fakeapi import admission, crds, disruption, errors
from sim.fakeapi.errors import ApiError, GroupResource
from sim.fakeapi.patch import (
    PatchApplyError,
    PatchFormatError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from sim.fakeapi.resources import Propagation, ResourceRegistry, ResourceType, StorageKey
from sim.fakeapi.selectors import (
    FieldRequirement,
    LabelRequirement,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from sim.fakeapi.watch import EventType, Watcher, WatchFilter

ObjectKey = tuple[StorageKey, str, str]  # storage, namespace ("" when cluster-scoped), name
PatchType = Literal["json", "merge", "strategic"]

FINALIZER_ORPHAN = "orphan"
FINALIZER_FOREGROUND = "foregroundDeletion"
FINALIZER_CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
NAMESPACE_FINALIZER = "kubernetes"
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_NAMESPACE_STORAGE: StorageKey = ("", "namespaces")
_NAMESPACES = GroupResource("", "namespaces")
_POD_STORAGE: StorageKey = ("", "pods")
_BUDGET_STORAGE: StorageKey = (disruption.POLICY_GROUP, "poddisruptionbudgets")
EVICTED: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


@dataclass(frozen=True)
class HistoryEvent:
    """One committed write, kept so a watch can resume from any resourceVersion still in the window."""

    resource_version: int
    storage: StorageKey
    event_type: EventType
    obj: dict[str, Any]
    previous: dict[str, Any] | None


@dataclass(frozen=True)
class ListQuery:
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""


@dataclass(frozen=True)
class ListResult:
    items: list[dict[str, Any]]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


@dataclass(frozen=True)
class DeleteOptions:
    propagation_policy: Propagation | None = None
    precondition_uid: str | None = None
    precondition_resource_version: str | None = None


@dataclass
class _Indexes:
    """Secondary indexes kept in step with the objects (all guarded by the store lock)."""

    by_uid: dict[str, ObjectKey] = field(default_factory=dict)
    dependents: dict[str, set[ObjectKey]] = field(default_factory=dict)
    sorted_keys: dict[StorageKey, list[tuple[str, str]]] = field(default_factory=dict)


def _owner_uids(obj: dict[str, Any] | None) -> set[str]:
    if obj is None:
        return set()
    return {
        ref.get("uid", "") for ref in (obj.get("metadata") or {}).get("ownerReferences") or [] if isinstance(ref, dict)
    }


def _finalizers(obj: dict[str, Any]) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def _ready_to_remove(obj: dict[str, Any]) -> bool:
    """A deleting object disappears once no finalizer (nor a namespace's spec finalizer) holds it."""
    if not (obj.get("metadata") or {}).get("deletionTimestamp") or _finalizers(obj):
        return False
    return not (obj.get("spec") or {}).get("finalizers") if obj.get("kind") == "Namespace" else True


def _selectors(
    resource: ResourceType, query: ListQuery
) -> tuple[tuple[LabelRequirement, ...], tuple[FieldRequirement, ...]]:
    try:
        labels = parse_label_selector(query.label_selector)
        fields = parse_field_selector(query.field_selector)
    except SelectorError as error:
        raise errors.bad_request(str(error)) from error
    for requirement in fields:
        if not resource.supports_field(requirement.field):
            raise errors.bad_request(f"field label not supported: {requirement.field}")
    return labels, fields


def _encode_continue(resource_version: int, last: tuple[str, str]) -> str:
    raw = json.dumps({"rv": resource_version, "start": list(last)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error) as error:
        raise errors.bad_request("continue key is not valid: " + str(error)) from error


class Store:
    """Thread-safe object store with Kubernetes write semantics (see the module docstring)."""

    def __init__(
        self,
        registry: ResourceRegistry,
        *,
        history_limit: int = 5000,
        watch_queue_limit: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self._lock = threading.RLock()
        self._clock = clock
        self._history_limit = max(1, history_limit)
        self._watch_queue_limit = watch_queue_limit
        self._objects: dict[StorageKey, dict[tuple[str, str], dict[str, Any]]] = {}
        self._resource_version = 0
        self._history: deque[HistoryEvent] = deque()
        self._compacted_through = 0  # events with resourceVersion <= this are gone from history
        self._watchers: dict[StorageKey, set[Watcher]] = {}
        self._indexes = _Indexes()
        self._random = random.Random()
        # Set by the garbage collector; called (under the lock) with the work that a write leaves for it.
        self.on_garbage: Callable[[tuple[Any, ...]], None] = lambda task: None
        for namespace in ("default", "kube-system"):
            self.create("v1", "namespaces", {"metadata": {"name": namespace}})

    # ----------------------------------------------------------------------------------- lookups and views

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._resource_version

    def resource(self, api_version: str, plural: str) -> ResourceType:
        resource = self.registry.lookup_api_version(api_version, plural)
        if resource is None:
            raise errors.resource_not_served()
        return resource

    @staticmethod
    def view(resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as seen through ``resource``'s version (only ``apiVersion`` differs, like strategy None)."""
        if obj.get("apiVersion") == resource.api_version:
            return obj
        return {**obj, "apiVersion": resource.api_version}

    def _key(self, resource: ResourceType, namespace: str | None, name: str) -> tuple[str, str]:
        return ((namespace or "") if resource.namespaced else "", name)

    def _require(self, resource: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._objects.get(resource.storage_key, {}).get(self._key(resource, namespace, name))
        if obj is None:
            raise errors.not_found(resource.group_resource, name)
        return obj

    def _lookup_key(self, key: ObjectKey) -> dict[str, Any] | None:
        storage, namespace, name = key
        return self._objects.get(storage, {}).get((namespace, name))

    def uid_exists(self, uid: str) -> bool:
        with self._lock:
            return uid in self._indexes.by_uid

    def key_of_uid(self, uid: str) -> ObjectKey | None:
        with self._lock:
            return self._indexes.by_uid.get(uid)

    def object_at(self, key: ObjectKey) -> dict[str, Any] | None:
        with self._lock:
            return self._lookup_key(key)

    def dependents_of(self, uid: str) -> list[ObjectKey]:
        with self._lock:
            return sorted(self._indexes.dependents.get(uid, set()))

    def keys_of_storage(self, storage: StorageKey) -> list[ObjectKey]:
        with self._lock:
            return [(storage, ns, name) for (ns, name) in self._objects.get(storage, {})]

    def keys_in_namespace(self, namespace: str) -> list[ObjectKey]:
        with self._lock:
            return [
                (storage, ns, name)
                for storage, objects in self._objects.items()
                for (ns, name) in objects
                if ns == namespace
            ]

    # ----------------------------------------------------------------------------------------- committing

    def _commit(
        self,
        key: ObjectKey,
        new: dict[str, Any] | None,
        previous: dict[str, Any] | None,
        event_type: EventType,
        *,
        removed_form: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store ``new`` under a fresh resourceVersion and tell every watcher.

        ``new`` None removes the object; the DELETED event then carries ``removed_form`` (the last version,
        e.g. with its final finalizer just removed), or ``previous`` when nothing changed on the way out.
        """
        storage, namespace, name = key
        self._resource_version += 1
        rv = self._resource_version
        final = new if new is not None else copy.copy(removed_form if removed_form is not None else previous)
        assert final is not None
        final["metadata"] = {**final["metadata"], "resourceVersion": str(rv)}
        objects = self._objects.setdefault(storage, {})
        if new is None:
            objects.pop((namespace, name), None)
            self._indexes.sorted_keys.pop(storage, None)
            self._indexes.by_uid.pop(final["metadata"].get("uid", ""), None)
        else:
            if (namespace, name) not in objects:
                self._indexes.sorted_keys.pop(storage, None)
            objects[(namespace, name)] = final
            self._indexes.by_uid[final["metadata"]["uid"]] = key
        self._reindex_owners(key, previous, new)
        self._history.append(HistoryEvent(rv, storage, event_type, final, previous))
        while len(self._history) > self._history_limit:
            self._compacted_through = self._history.popleft().resource_version
        self._dispatch(storage, event_type, final, previous)
        self._after_commit(key, final, previous, removed=new is None)
        return final

    def _reindex_owners(self, key: ObjectKey, previous: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for uid in _owner_uids(previous) - _owner_uids(new):
            dependents = self._indexes.dependents.get(uid)
            if dependents is not None:
                dependents.discard(key)
                if not dependents:
                    del self._indexes.dependents[uid]
        for uid in _owner_uids(new):
            self._indexes.dependents.setdefault(uid, set()).add(key)

    def _dispatch(
        self, storage: StorageKey, event_type: EventType, obj: dict[str, Any], previous: dict[str, Any] | None
    ) -> None:
        overflowed: list[Watcher] = []
        for watcher in self._watchers.get(storage, ()):
            delivered = _event_for(watcher, event_type, obj, previous)
            if delivered is not None and not watcher.offer(delivered, self.view(watcher.resource, obj)):
                overflowed.append(watcher)
        for watcher in overflowed:
            self._watchers[storage].discard(watcher)

    def _after_commit(
        self, key: ObjectKey, obj: dict[str, Any], previous: dict[str, Any] | None, *, removed: bool
    ) -> None:
        """Hand follow-up work to the garbage collector and keep CRD-served resources and budgets in step."""
        storage, namespace, _ = key
        metadata = obj["metadata"]
        if storage == (crds.CRD_GROUP, "customresourcedefinitions"):
            self._sync_crd(obj, removed=removed)
        if storage == _POD_STORAGE:
            self._refresh_budgets(
                namespace,
                lambda budget: (
                    disruption.selects(budget, obj) or (previous is not None and disruption.selects(budget, previous))
                ),
            )
        elif storage == _BUDGET_STORAGE and not removed:
            self._refresh_budgets(namespace, lambda budget: budget["metadata"]["name"] == metadata["name"])
        if removed:
            self.on_garbage(("removed", storage, metadata.get("uid", ""), tuple(_owner_uids(obj)), namespace))
            return
        finalizers = _finalizers(obj)
        if metadata.get("deletionTimestamp"):
            if FINALIZER_ORPHAN in finalizers:
                self.on_garbage(("orphan", key))
            if FINALIZER_FOREGROUND in finalizers:
                self.on_garbage(("foreground", key))
            if FINALIZER_CRD_CLEANUP in finalizers:
                self.on_garbage(("crd-cleanup", key))
            if storage == _NAMESPACE_STORAGE:
                self.on_garbage(("namespace", metadata["name"]))
        owners = _owner_uids(obj)
        if (
            owners
            and (previous is None or owners != _owner_uids(previous))
            and not all(uid in self._indexes.by_uid for uid in owners)
        ):
            self.on_garbage(("check", key))

    def _sync_crd(self, crd: dict[str, Any], *, removed: bool) -> None:
        spec = crd.get("spec") or {}
        storage = (str(spec.get("group", "")), str((spec.get("names") or {}).get("plural", "")))
        self.registry.replace_custom(storage, [] if removed else crds.custom_resource_types(crd))
        if removed:
            for watcher in self._watchers.pop(storage, set()):
                watcher.close("resource-removed")
            self._objects.pop(storage, None)
            self._indexes.sorted_keys.pop(storage, None)

    def _refresh_budgets(self, namespace: str, affected: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite the status of each affected budget in ``namespace`` as the disruption controller would.

        Done at once, under the lock, rather than by a background controller: an eviction then always reads a
        current budget, so the fake never needs the real server's "still being processed" answer.
        """
        budgets = [
            (name, budget)
            for (budget_namespace, name), budget in self._objects.get(_BUDGET_STORAGE, {}).items()
            if budget_namespace == namespace and affected(budget)
        ]
        if not budgets:
            return
        pods = [
            pod for (pod_namespace, _), pod in self._objects.get(_POD_STORAGE, {}).items() if pod_namespace == namespace
        ]
        timestamp = admission.format_timestamp(self._clock())
        for name, budget in budgets:
            status = disruption.budget_status(budget, pods, timestamp)
            if status != budget.get("status"):
                self._commit((_BUDGET_STORAGE, namespace, name), {**budget, "status": status}, budget, "MODIFIED")

    # ------------------------------------------------------------------------------------------- create

    def create_object(
        self,
        resource: ResourceType,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        field_validation: admission.FieldValidation = "Ignore",
        warnings: list[str] | None = None,
    ) -> dict[str, Any]:
        candidate = admission.check_type_meta(resource, body)
        metadata = candidate["metadata"]
        if resource.namespaced:
            body_namespace = metadata.get("namespace")
            if namespace is None:
                namespace = body_namespace or "default"
            elif body_namespace and body_namespace != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
        with self._lock:
            name = metadata.get("name") or ""
            if resource.custom:
                self._refuse_if_crd_terminating(resource)
            if not name and not metadata.get("generateName"):
                raise errors.invalid(
                    resource.kind,
                    resource.group,
                    "",
                    [
                        errors.FieldCause(
                            "metadata.name", "FieldValueRequired", "Required value: name or generateName is required"
                        )
                    ],
                )
            if resource.namespaced:
                assert namespace is not None
                self._require_live_namespace(resource, namespace, name or metadata.get("generateName", ""))
            objects = self._objects.setdefault(resource.storage_key, {})
            if not name:
                name = self._generated_name(objects, resource, namespace, metadata["generateName"])
            elif self._key(resource, namespace, name) in objects:
                raise errors.already_exists(resource.group_resource, name)
            stored = admission.prepare_create(
                resource,
                candidate,
                namespace=namespace,
                name=name,
                uid=str(uuid.uuid4()),
                now=self._clock(),
                field_validation=field_validation,
                warnings=warnings,
            )
            if not resource.custom and resource.group == crds.CRD_GROUP:
                stored["metadata"]["finalizers"] = sorted({*_finalizers(stored), FINALIZER_CRD_CLEANUP})
            if dry_run:
                return stored
            key: ObjectKey = (resource.storage_key, *self._key(resource, namespace, name))
            return self.view(resource, self._commit(key, stored, None, "ADDED"))

    def _generated_name(
        self, objects: dict[tuple[str, str], Any], resource: ResourceType, namespace: str | None, prefix: str
    ) -> str:
        # The real server retries a few times on a collision before giving up with AlreadyExists.
        for _ in range(8):
            name = prefix + "".join(self._random.choice(_GENERATE_ALPHABET) for _ in range(5))
            if self._key(resource, namespace, name) not in objects:
                return name
        raise errors.already_exists(resource.group_resource, prefix)

    def _require_live_namespace(self, resource: ResourceType, namespace: str, name: str) -> None:
        namespace_obj = self._objects.get(_NAMESPACE_STORAGE, {}).get(("", namespace))
        if namespace_obj is None:
            raise errors.not_found(_NAMESPACES, namespace)
        if namespace_obj["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                resource.group_resource,
                name,
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def _refuse_if_crd_terminating(self, resource: ResourceType) -> None:
        crd = self._objects.get((crds.CRD_GROUP, "customresourcedefinitions"), {}).get(
            ("", f"{resource.plural}.{resource.group}")
        )
        if crd is not None and crd["metadata"].get("deletionTimestamp"):
            raise ApiError(
                405, "MethodNotAllowed", "create not allowed while custom resource definition is terminating"
            )

    # ------------------------------------------------------------------------------------------- reading

    def get_object(self, resource: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        with self._lock:
            return self.view(resource, self._require(resource, namespace, name))

    def list_objects(self, resource: ResourceType, namespace: str | None, query: ListQuery) -> ListResult:
        labels, fields = _selectors(resource, query)
        watch_filter = WatchFilter(namespace if resource.namespaced else None, labels, fields)
        with self._lock:
            list_version = self._resource_version
            start_after: tuple[str, str] | None = None
            if query.continue_token:
                list_version, start_after = _decode_continue(query.continue_token)
                if list_version < self._compacted_through:
                    raise errors.gone(
                        "The provided continue parameter is too old to display a consistent list "
                        "result. You can start a new list without the continue parameter."
                    )
            elif query.resource_version not in ("", "0"):
                self._check_not_compacted(self._parse_version(query.resource_version))
            objects = self._objects.get(resource.storage_key, {})
            keys = self._indexes.sorted_keys.get(resource.storage_key)
            if keys is None:
                keys = sorted(objects)
                self._indexes.sorted_keys[resource.storage_key] = keys
            matching = [
                objects[key]
                for key in keys
                if (start_after is None or key > start_after) and watch_filter.matches(objects[key])
            ]
        if query.limit > 0 and len(matching) > query.limit:
            page = matching[: query.limit]
            last = page[-1]["metadata"]
            token = _encode_continue(list_version, (last.get("namespace", ""), last["name"]))
            return ListResult([self.view(resource, o) for o in page], list_version, token, len(matching) - query.limit)
        return ListResult([self.view(resource, o) for o in matching], list_version)

    def _parse_version(self, text: str) -> int:
        try:
            version = int(text)
        except ValueError as error:
            raise errors.bad_request(f'Invalid value: "{text}": resourceVersion must be an integer') from error
        if version < 0:
            raise errors.bad_request(f'Invalid value: "{text}": resourceVersion must not be negative')
        return version

    def _check_not_compacted(self, version: int) -> None:
        if version < self._compacted_through:
            raise errors.gone(f"too old resource version: {version} ({self._compacted_through})")

    # ------------------------------------------------------------------------------------------- writing

    def replace_object(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: admission.FieldValidation = "Ignore",
        warnings: list[str] | None = None,
    ) -> dict[str, Any]:
        candidate = admission.check_type_meta(resource, body)
        metadata = candidate["metadata"]
        if metadata.get("name") != name:
            raise errors.bad_request(
                f"the name of the object ({metadata.get('name')}) does not match the name on the URL ({name})"
            )
        if resource.namespaced and metadata.get("namespace") not in (None, "", namespace):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        with self._lock:
            old = self._require(resource, namespace, name)
            return self._update(
                resource,
                old,
                candidate,
                subresource=subresource,
                dry_run=dry_run,
                field_validation=field_validation,
                warnings=warnings,
            )

    def patch_object(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        patch_type: PatchType,
        document: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: admission.FieldValidation = "Ignore",
        warnings: list[str] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            old = self._require(resource, namespace, name)
            seen = self.view(resource, old)
            try:
                if patch_type == "json":
                    patched = json_patch(seen, document)
                elif patch_type == "merge":
                    patched = merge_patch(seen, document)
                else:
                    if resource.merge_strategies is None:
                        raise errors.unsupported_media_type(
                            "application/strategic-merge-patch+json",
                            (
                                "application/json-patch+json",
                                "application/merge-patch+json",
                                "application/apply-patch+yaml",
                            ),
                        )
                    patched = strategic_merge_patch(seen, document, resource.merge_strategies)
            except PatchFormatError as error:
                raise errors.bad_request(str(error)) from error
            except PatchApplyError as error:
                raise errors.unprocessable(str(error)) from error
            candidate = admission.check_type_meta(resource, patched)
            if candidate["metadata"].get("name") != name:
                raise errors.invalid(
                    resource.kind,
                    resource.group,
                    name,
                    [errors.FieldCause("metadata.name", "FieldValueInvalid", "field is immutable")],
                )
            return self._update(
                resource,
                old,
                candidate,
                subresource=subresource,
                dry_run=dry_run,
                field_validation=field_validation,
                warnings=warnings,
            )

    def _update(
        self,
        resource: ResourceType,
        old: dict[str, Any],
        candidate: dict[str, Any],
        *,
        subresource: str | None,
        dry_run: bool,
        field_validation: admission.FieldValidation = "Ignore",
        warnings: list[str] | None = None,
    ) -> dict[str, Any]:
        name = old["metadata"]["name"]
        wanted_version = candidate["metadata"].get("resourceVersion")
        if wanted_version and wanted_version != old["metadata"]["resourceVersion"]:
            raise errors.conflict(resource.group_resource, name, errors.STALE_OBJECT)
        seen = self.view(resource, old)
        stored = admission.prepare_update(
            resource,
            seen,
            candidate,
            subresource=subresource,
            now=self._clock(),
            field_validation=field_validation,
            warnings=warnings,
        )
        stored["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if stored == seen:
            return seen  # a no-op write keeps its resourceVersion and emits no event, as on a real server
        if dry_run:
            return stored
        key: ObjectKey = (resource.storage_key, old["metadata"].get("namespace", ""), name)
        if _ready_to_remove(stored):
            return self.view(resource, self._commit(key, None, old, "DELETED", removed_form=stored))
        return self.view(resource, self._commit(key, stored, old, "MODIFIED"))

    # ------------------------------------------------------------------------------------------- deleting

    def delete_object(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        options: DeleteOptions | None = None,
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        options = options or DeleteOptions()
        with self._lock:
            obj = self._require(resource, namespace, name)
            _check_preconditions(resource, obj, options)
            policy = options.propagation_policy or resource.default_propagation
            key: ObjectKey = (resource.storage_key, obj["metadata"].get("namespace", ""), name)
            return self.view(resource, self._delete_locked(key, obj, policy, dry_run=dry_run))

    def evict_pod(
        self, namespace: str, name: str, options: DeleteOptions | None = None, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """The Eviction API: delete the pod unless a disruption budget forbids it now (see ``disruption``).

        Returns the success Status; raises 404 for a missing pod, 409 for a failed precondition, 429 when the
        budget allows no disruption and 500 when several budgets select the pod. Checking the budget and
        deleting the pod happen under one lock, so two evictions can never both spend the last disruption.
        """
        options = options or DeleteOptions()
        pods = self.resource("v1", "pods")
        with self._lock:
            pod = self._require(pods, namespace, name)
            _check_preconditions(pods, pod, options)
            budgets = [
                budget
                for (budget_namespace, _), budget in self._objects.get(_BUDGET_STORAGE, {}).items()
                if budget_namespace == namespace
            ]
            refusal = disruption.eviction_refusal(pod, budgets)
            if refusal is not None:
                raise refusal
            if dry_run:
                return dict(EVICTED)
            key: ObjectKey = (_POD_STORAGE, namespace, name)
            marked = disruption.with_disruption_target(pod, admission.format_timestamp(self._clock()))
            if marked != pod:
                pod = self._commit(key, marked, pod, "MODIFIED")
            self._delete_locked(key, pod, options.propagation_policy or pods.default_propagation)
            return dict(EVICTED)

    def _delete_locked(
        self, key: ObjectKey, obj: dict[str, Any], policy: Propagation, *, dry_run: bool = False
    ) -> dict[str, Any]:
        metadata = obj["metadata"]
        if metadata.get("deletionTimestamp"):
            return obj  # already being deleted: a repeated DELETE changes nothing
        finalizers = _finalizers(obj)
        if policy == "Orphan" and FINALIZER_ORPHAN not in finalizers:
            finalizers.append(FINALIZER_ORPHAN)
        elif policy == "Foreground" and FINALIZER_FOREGROUND not in finalizers:
            finalizers.append(FINALIZER_FOREGROUND)
        held_by_namespace_finalizer = key[0] == _NAMESPACE_STORAGE and bool((obj.get("spec") or {}).get("finalizers"))
        if not finalizers and not held_by_namespace_finalizer:
            return obj if dry_run else self._commit(key, None, obj, "DELETED")
        marked = copy.deepcopy(obj)
        marked["metadata"]["finalizers"] = finalizers
        marked["metadata"]["deletionTimestamp"] = admission.format_timestamp(self._clock())
        marked["metadata"]["deletionGracePeriodSeconds"] = 0
        if key[0] == _NAMESPACE_STORAGE:
            marked.setdefault("status", {})["phase"] = "Terminating"
        return marked if dry_run else self._commit(key, marked, obj, "MODIFIED")

    def delete_collection(
        self,
        resource: ResourceType,
        namespace: str | None,
        query: ListQuery,
        options: DeleteOptions | None = None,
        *,
        dry_run: bool = False,
    ) -> list[dict[str, Any]]:
        with self._lock:
            listed = self.list_objects(resource, namespace, ListQuery(query.label_selector, query.field_selector))
            return [
                self.delete_object(
                    resource,
                    item["metadata"].get("namespace"),
                    item["metadata"]["name"],
                    DeleteOptions(options.propagation_policy if options else None),
                    dry_run=dry_run,
                )
                for item in listed.items
            ]

    # ---------------------------------------------------------------- system writes (garbage collector)

    def system_update(self, key: ObjectKey, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` to a copy of the object as a controller would; removes it if now finalizer-free."""
        with self._lock:
            old = self._lookup_key(key)
            if old is None:
                return
            new = copy.deepcopy(old)
            change(new)
            if new == old:
                return
            if _ready_to_remove(new):
                self._commit(key, None, old, "DELETED", removed_form=new)
            else:
                self._commit(key, new, old, "MODIFIED")

    def system_delete(self, key: ObjectKey, policy: Propagation) -> None:
        with self._lock:
            obj = self._lookup_key(key)
            if obj is not None:
                self._delete_locked(key, obj, policy)

    # ------------------------------------------------------------------------------------------ watching

    def open_watch(self, resource: ResourceType, namespace: str | None, query: ListQuery) -> Watcher:
        """Register a watcher and queue its first events (raises 410 if the version left the history)."""
        labels, fields = _selectors(resource, query)
        watcher = Watcher(
            resource, WatchFilter(namespace if resource.namespaced else None, labels, fields), self._watch_queue_limit
        )
        with self._lock:
            initial: list[tuple[EventType, dict[str, Any]]] = []
            if query.resource_version in ("", "0"):
                objects = self._objects.get(resource.storage_key, {})
                initial = [
                    ("ADDED", self.view(resource, objects[key]))
                    for key in sorted(objects)
                    if watcher.filter.matches(objects[key])
                ]
            else:
                since = self._parse_version(query.resource_version)
                self._check_not_compacted(since)
                for event in self._history:
                    if event.resource_version > since and event.storage == resource.storage_key:
                        delivered = _event_for(watcher, event.event_type, event.obj, event.previous)
                        if delivered is not None:
                            initial.append((delivered, self.view(resource, event.obj)))
            watcher.preload(initial)
            self._watchers.setdefault(resource.storage_key, set()).add(watcher)
        return watcher

    def close_watch(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers.get(watcher.resource.storage_key, set()).discard(watcher)

    def bookmark_version(self, watcher: Watcher) -> int | None:
        """The current resourceVersion if ``watcher`` has nothing pending (else a bookmark would lie)."""
        with self._lock:
            return self._resource_version if watcher.is_idle() else None

    def close_all_watches(self, reason: Literal["dropped", "stopped"]) -> int:
        with self._lock:
            watchers = [w for group in self._watchers.values() for w in group]
            self._watchers.clear()
        for watcher in watchers:
            watcher.close(reason)
        return len(watchers)

    def compact_history(self) -> int:
        """Forget every past event: a watch or list from any older resourceVersion now answers 410."""
        with self._lock:
            self._history.clear()
            self._compacted_through = self._resource_version
            return self._compacted_through

    # ----------------------------------------------------------------- convenience API (tests, simulators)

    def create(
        self,
        api_version: str,
        plural: str,
        body: dict[str, Any],
        namespace: str | None = None,
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        resource = self.resource(api_version, plural)
        return copy.deepcopy(self.create_object(resource, namespace, copy.deepcopy(body), dry_run=dry_run))

    def get(self, api_version: str, plural: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return copy.deepcopy(self.get_object(self.resource(api_version, plural), namespace, name))

    def list(
        self,
        api_version: str,
        plural: str,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[dict[str, Any]]:
        result = self.list_objects(
            self.resource(api_version, plural),
            namespace,
            ListQuery(label_selector=label_selector, field_selector=field_selector),
        )
        return copy.deepcopy(result.items)

    def update(
        self,
        api_version: str,
        plural: str,
        body: dict[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        resource = self.resource(api_version, plural)
        name = (body.get("metadata") or {}).get("name", "")
        namespace = namespace or (body.get("metadata") or {}).get("namespace")
        return copy.deepcopy(
            self.replace_object(resource, namespace, name, copy.deepcopy(body), subresource=subresource)
        )

    def patch(
        self,
        api_version: str,
        plural: str,
        name: str,
        document: Any,
        namespace: str | None = None,
        *,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        resource = self.resource(api_version, plural)
        return copy.deepcopy(
            self.patch_object(resource, namespace, name, patch_type, copy.deepcopy(document), subresource=subresource)
        )

    def delete(
        self,
        api_version: str,
        plural: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: Propagation | None = None,
    ) -> dict[str, Any]:
        resource = self.resource(api_version, plural)
        return copy.deepcopy(self.delete_object(resource, namespace, name, DeleteOptions(propagation_policy)))

    def count(self, api_version: str, plural: str) -> int:
        resource = self.resource(api_version, plural)
        with self._lock:
            return len(self._objects.get(resource.storage_key, {}))


def _check_preconditions(resource: ResourceType, obj: dict[str, Any], options: DeleteOptions) -> None:
    metadata = obj["metadata"]
    name = metadata["name"]
    if options.precondition_uid and options.precondition_uid != metadata.get("uid"):
        raise errors.conflict(
            resource.group_resource,
            name,
            f"Precondition failed: UID in precondition: {options.precondition_uid}, "
            f"UID in object meta: {metadata.get('uid')}",
        )
    if options.precondition_resource_version and options.precondition_resource_version != metadata.get(
        "resourceVersion"
    ):
        raise errors.conflict(
            resource.group_resource,
            name,
            "Precondition failed: ResourceVersion in precondition: "
            f"{options.precondition_resource_version}, ResourceVersion in object meta: "
            f"{metadata.get('resourceVersion')}",
        )


def _event_for(
    watcher: Watcher, event_type: EventType, obj: dict[str, Any], previous: dict[str, Any] | None
) -> EventType | None:
    """The event this watcher sees, given its filter: a change that moves an object in or out of the
    selection arrives as ADDED or DELETED, like the real watch cache does it."""
    if event_type == "DELETED":
        return "DELETED" if watcher.filter.matches(obj) else None
    now_matches = watcher.filter.matches(obj)
    before_matches = previous is not None and event_type == "MODIFIED" and watcher.filter.matches(previous)
    if now_matches and before_matches:
        return "MODIFIED"
    if now_matches:
        return "ADDED"
    if before_matches:
        return "DELETED"
    return None
