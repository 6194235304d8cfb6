"""The controllers a real control plane runs behind the API: garbage collection and namespace/CRD cleanup.

Separate from the store because on a real cluster this work is asynchronous: the owner disappears first, its
dependents a moment later, and clients must not assume otherwise. One worker thread takes the follow-up work
that store writes leave behind (``Store.on_garbage``) and performs it as ordinary writes, so every step is a
visible watch event with its own resourceVersion:

- an object removed -> each dependent whose owners are all gone is deleted (background); dangling owner
  references are stripped from dependents that still have a live owner;
- ``orphan`` finalizer -> owner references to the owner are stripped from its dependents, then the finalizer;
- ``foregroundDeletion`` finalizer -> dependents are deleted (in foreground too), then the finalizer goes;
- a Namespace being deleted -> everything in it is deleted, then its ``kubernetes`` finalizer is dropped;
- a CRD being deleted -> every custom resource of it is deleted, then its cleanup finalizer is dropped;
- a new object whose owner does not exist is itself garbage (as on a real cluster).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from sim.fakeapi.store import (
    FINALIZER_CRD_CLEANUP,
    FINALIZER_FOREGROUND,
    FINALIZER_ORPHAN,
    NAMESPACE_FINALIZER,
    ObjectKey,
    Store,
)

log = logging.getLogger(__name__)

_STOP = ("stop",)


def _remove_finalizer(name: str) -> Any:
    def change(obj: dict[str, Any]) -> None:
        obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or [] if f != name]
        if not obj["metadata"]["finalizers"]:
            del obj["metadata"]["finalizers"]

    return change


def _strip_owner_references(uids: set[str]) -> Any:
    def change(obj: dict[str, Any]) -> None:
        kept = [ref for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("uid") not in uids]
        if kept:
            obj["metadata"]["ownerReferences"] = kept
        else:
            obj["metadata"].pop("ownerReferences", None)

    return change


class GarbageCollector:
    """One background worker applying the follow-up work described in the module docstring."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._thread: threading.Thread | None = None
        store.on_garbage = self._queue.put

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fakeapi-garbage-collector", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def wait_idle(self, timeout: float) -> bool:
        """Block until every queued task (and the tasks they caused) is done; False on timeout."""
        end = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            try:
                if task == _STOP:
                    return
                self._handle(task)
            except Exception:  # a controller keeps running whatever one object does to it
                log.exception("garbage collector task %r failed", task)
            finally:
                self._queue.task_done()

    def _handle(self, task: tuple[Any, ...]) -> None:
        kind = task[0]
        if kind == "removed":
            _, storage, uid, owner_uids, namespace = task
            self._after_removal(storage, uid, set(owner_uids), namespace)
        elif kind == "orphan":
            self._orphan(task[1])
        elif kind == "foreground":
            self._foreground(task[1])
        elif kind == "check":
            self._check_dependent(task[1])
        elif kind == "namespace":
            self._clean_namespace(task[1])
        elif kind == "crd-cleanup":
            self._clean_crd(task[1])

    def _uid_of(self, key: ObjectKey) -> str | None:
        obj = self._store.object_at(key)
        return None if obj is None else str(obj["metadata"].get("uid", ""))

    def _after_removal(self, storage: tuple[str, str], uid: str, owner_uids: set[str], namespace: str) -> None:
        for dependent in self._store.dependents_of(uid):
            self._check_dependent(dependent)
        for owner_uid in owner_uids:
            owner_key = self._store.key_of_uid(owner_uid)
            owner = None if owner_key is None else self._store.object_at(owner_key)
            if (
                owner_key is not None
                and owner is not None
                and FINALIZER_FOREGROUND in (owner["metadata"].get("finalizers") or [])
            ):
                self._foreground(owner_key)
        if namespace:
            namespace_obj = self._store.object_at((("", "namespaces"), "", namespace))
            if namespace_obj is not None and namespace_obj["metadata"].get("deletionTimestamp"):
                self._clean_namespace(namespace)
        crd_key: ObjectKey = (("apiextensions.k8s.io", "customresourcedefinitions"), "", f"{storage[1]}.{storage[0]}")
        crd = self._store.object_at(crd_key)
        if crd is not None and crd["metadata"].get("deletionTimestamp"):
            self._clean_crd(crd_key)

    def _check_dependent(self, key: ObjectKey) -> None:
        obj = self._store.object_at(key)
        if obj is None:
            return
        references = obj["metadata"].get("ownerReferences") or []
        if not references:
            return
        dead = {ref.get("uid") for ref in references if not self._store.uid_exists(ref.get("uid", ""))}
        if len(dead) == len(references):
            self._store.system_delete(key, "Background")
        elif dead:
            self._store.system_update(key, _strip_owner_references({str(uid) for uid in dead}))

    def _orphan(self, owner_key: ObjectKey) -> None:
        uid = self._uid_of(owner_key)
        if uid is None:
            return
        for dependent in self._store.dependents_of(uid):
            self._store.system_update(dependent, _strip_owner_references({uid}))
        self._store.system_update(owner_key, _remove_finalizer(FINALIZER_ORPHAN))

    def _foreground(self, owner_key: ObjectKey) -> None:
        uid = self._uid_of(owner_key)
        if uid is None:
            return
        dependents = self._store.dependents_of(uid)
        for dependent in dependents:
            self._store.system_delete(dependent, "Foreground")
        if not self._store.dependents_of(uid):
            self._store.system_update(owner_key, _remove_finalizer(FINALIZER_FOREGROUND))

    def _clean_namespace(self, namespace: str) -> None:
        contents = [key for key in self._store.keys_in_namespace(namespace) if key[0] != ("", "namespaces")]
        for key in contents:
            self._store.system_delete(key, "Background")
        if not [key for key in self._store.keys_in_namespace(namespace) if key[0] != ("", "namespaces")]:

            def finalize(obj: dict[str, Any]) -> None:
                spec = obj.setdefault("spec", {})
                spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != NAMESPACE_FINALIZER]
                if not spec["finalizers"]:
                    del spec["finalizers"]

            self._store.system_update((("", "namespaces"), "", namespace), finalize)

    def _clean_crd(self, crd_key: ObjectKey) -> None:
        crd = self._store.object_at(crd_key)
        if crd is None:
            return
        spec = crd.get("spec") or {}
        storage = (str(spec.get("group", "")), str((spec.get("names") or {}).get("plural", "")))
        for key in self._store.keys_of_storage(storage):
            self._store.system_delete(key, "Background")
        if not self._store.keys_of_storage(storage):
            self._store.system_update(crd_key, _remove_finalizer(FINALIZER_CRD_CLEANUP))
