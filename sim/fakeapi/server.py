"""HTTP front of the fake: routing, request decoding, responses, watch streaming, and the server lifecycle.

Separate from the store because this is the only code that touches sockets. It runs on the standard
library's ``ThreadingHTTPServer`` speaking HTTP/1.1 (keep-alive; watches use chunked transfer encoding), so
the official client and kubectl work against it unchanged and the fake needs no async framework. One thread
per connection; ``stop()`` closes the listening socket, every watch and every open connection, then joins
the threads it started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from sim.fakeapi import discovery, disruption, errors, openapi, protobuf, tables, watch, webhooks
from sim.fakeapi.errors import ApiError
from sim.fakeapi.faults import FaultInjector
from sim.fakeapi.garbage import GarbageCollector
from sim.fakeapi.kubeconfig import write_kubeconfig
from sim.fakeapi.resources import Propagation, ResourceRegistry, ResourceType, builtin_resources
from sim.fakeapi.store import DeleteOptions, ListQuery, PatchType, Store

log = logging.getLogger(__name__)

RequestHook = Callable[[str, str, bytes], None]
DEFAULT_WATCH_TIMEOUT_SECONDS = 1800.0
_PATCH_TYPES: dict[str, PatchType] = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}
_WEBHOOK_OPERATIONS = {"create": "CREATE", "update": "UPDATE", "patch": "UPDATE", "delete": "DELETE"}
_BUILTIN_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


@dataclass
class Reply:
    """A complete (non-streaming) response."""

    code: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class WatchReply:
    """A watch to stream; ``error`` set means: send it as one ERROR event and end (e.g. 410 Gone)."""

    resource: ResourceType
    watcher: watch.Watcher | None
    timeout_seconds: float
    bookmarks: bool
    as_table: bool
    error: ApiError | None = None


@dataclass(frozen=True)
class _Target:
    resource: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _table_requested(accept: str) -> bool:
    return "as=Table" in accept


def _include_object(query: dict[str, str]) -> str:
    return query.get("includeObject", "Metadata") or "Metadata"


def _strip_type_meta(resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """List items of built-in kinds carry no kind/apiVersion on a real server (custom resources do)."""
    if resource.custom:
        return obj
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


class _Router:
    """Maps one decoded request to a store operation and a reply; knows nothing of sockets."""

    def __init__(self, api: FakeApiServer) -> None:
        self.api = api
        self.store = api.store
        self.registry = api.store.registry

    # -- entry point

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply | WatchReply:
        segments = [unquote(s) for s in path.strip("/").split("/") if s]
        if path in ("/healthz", "/readyz", "/livez"):
            return Reply(200, b"ok", content_type="text/plain")
        if path == "/version":
            return Reply(200, discovery.version_document())
        if segments[:1] == ["_fake"]:
            return self._control(method, segments[1:], body)
        if segments[:2] == ["openapi", "v3"]:
            if len(segments) == 2:
                return Reply(200, openapi.index(self.registry))
            document = openapi.group_version_document(self.registry, "/".join(segments[2:]))
            if document is not None:
                return Reply(200, document)
        if segments[:1] == ["openapi"]:
            return Reply(404, b"404 page not found", content_type="text/plain")
        if segments[:1] == ["api"]:
            if len(segments) == 1:
                return Reply(200, discovery.core_versions(self.api.address))
            if segments[1] != "v1":
                raise errors.resource_not_served()
            if len(segments) == 2:
                return self._discovery(discovery.resource_list(self.registry, "", "v1"))
            return self._resource(method, "", "v1", segments[2:], query, headers, body)
        if segments[:1] == ["apis"]:
            if len(segments) == 1:
                return Reply(200, discovery.group_list(self.registry))
            if len(segments) == 2:
                return self._discovery(discovery.group(self.registry, segments[1]))
            if len(segments) == 3:
                return self._discovery(discovery.resource_list(self.registry, segments[1], segments[2]))
            return self._resource(method, segments[1], segments[2], segments[3:], query, headers, body)
        return Reply(404, b"404 page not found", content_type="text/plain")

    @staticmethod
    def _discovery(document: dict[str, Any] | None) -> Reply:
        if document is None:
            raise errors.resource_not_served()
        return Reply(200, document)

    def _control(self, method: str, segments: list[str], body: bytes) -> Reply:
        faults = self.api.faults
        if segments == ["faults"] and method == "POST":
            return Reply(200, faults.apply_control(_decode_json(body)))
        if segments == ["faults"] and method == "GET":
            return Reply(200, faults.describe())
        if segments == ["counters"] and method == "GET":
            return Reply(200, faults.counters_document())
        if segments == ["counters"] and method == "DELETE":
            faults.reset_counts()
            return Reply(200, faults.counters_document())
        raise errors.resource_not_served()

    # -- resources

    def _target(self, group: str, version: str, rest: list[str]) -> _Target:
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            namespace, rest = rest[1], rest[2:]
        resource = self.registry.lookup(group, version, rest[0])
        if resource is None or len(rest) > 3 or (namespace is not None and not resource.namespaced):
            raise errors.resource_not_served()
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if subresource is not None and not (
            (subresource == "status" and resource.has_status) or resource.action(subresource) is not None
        ):
            raise errors.resource_not_served()
        return _Target(resource, namespace, name, subresource)

    @staticmethod
    def _verb(method: str, target: _Target, query: dict[str, str]) -> str:
        collection = target.name is None
        verbs = {
            "GET": ("watch" if _truthy(query.get("watch")) else "list") if collection else "get",
            "POST": "create" if collection else "",
            "PUT": "" if collection else "update",
            "PATCH": "" if collection else "patch",
            "DELETE": "deletecollection" if collection else "delete",
        }
        verb = verbs.get(method, "")
        resource = target.resource
        if resource.action(target.subresource) is not None:
            if method != "POST" or (resource.namespaced and target.namespace is None):
                raise errors.method_not_allowed()
            return "create"
        if (
            not verb
            or verb not in resource.verbs
            or (target.subresource == "status" and verb not in ("get", "update", "patch"))
            or (resource.namespaced and target.namespace is None and verb not in ("list", "watch"))
        ):
            raise errors.method_not_allowed()
        return verb

    def _resource(
        self,
        method: str,
        group: str,
        version: str,
        rest: list[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Reply | WatchReply:
        target = self._target(group, version, rest)
        verb = self._verb(method, target, query)
        resource = target.resource
        fault_resource = resource.plural + (f"/{target.subresource}" if target.subresource else "")
        delay, failure = self.api.faults.before_request(verb, fault_resource, target.name)
        if delay:
            self.api.stopping.wait(delay)
        if failure is not None:
            raise failure
        dry_run = "All" in query.get("dryRun", "")
        accept = headers.get("accept", "")
        name = target.name or ""
        if resource.action(target.subresource) is not None:
            return self._evict(target, query, _decode_body(headers, body))
        if verb == "get":
            obj = self.store.get_object(resource, target.namespace, name)
            return self._object_reply(200, resource, obj, accept, query)
        if verb == "list":
            return self._list(target, query, accept)
        if verb == "watch":
            return self._watch(target, query, accept)
        field_validation = _field_validation(query)
        warnings: list[str] = []
        if verb in _WEBHOOK_OPERATIONS:
            # Validating webhooks see the object as it would be stored, after its own validation, as on a
            # real server; their warnings lead the ones the write itself produces.
            warnings += self._admit_through_webhooks(verb, target, headers, body, dry_run, field_validation)
        if verb == "create":
            created = self.store.create_object(
                resource,
                target.namespace,
                _decode_object(resource, headers, body),
                dry_run=dry_run,
                field_validation=field_validation,
                warnings=warnings,
            )
            return Reply(201, created, _warning_headers(warnings))
        if verb == "update":
            updated = self.store.replace_object(
                resource,
                target.namespace,
                name,
                _decode_object(resource, headers, body),
                subresource=target.subresource,
                dry_run=dry_run,
                field_validation=field_validation,
                warnings=warnings,
            )
            return Reply(200, updated, _warning_headers(warnings))
        if verb == "patch":
            patched = self._patch(target, headers, body, dry_run, field_validation, warnings)
            return Reply(200, patched, _warning_headers(warnings))
        options, warning = self._delete_options(resource, query, _decode_body(headers, body) if body.strip() else {})
        reply_headers = _warning_headers(warnings + ([warning] if warning else []))
        if verb == "delete":
            deleted = self.store.delete_object(resource, target.namespace, name, options, dry_run=dry_run)
            return Reply(200, deleted, reply_headers)
        removed = self.store.delete_collection(
            resource,
            target.namespace,
            ListQuery(query.get("labelSelector", ""), query.get("fieldSelector", "")),
            options,
            dry_run=dry_run,
        )
        return Reply(
            200,
            {
                "kind": resource.list_kind,
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": removed,
            },
            reply_headers,
        )

    def _admit_through_webhooks(
        self, verb: str, target: _Target, headers: dict[str, str], body: bytes, dry_run: bool, field_validation: str
    ) -> list[str]:
        """Call the validating webhooks that match this write (see ``webhooks``); their warnings, or raise."""
        configuration_type = self.registry.lookup(webhooks.ADMISSION_GROUP, "v1", webhooks.CONFIGURATIONS[1])
        if configuration_type is None or target.resource.group == webhooks.ADMISSION_GROUP:
            return []
        configurations = self.store.list_objects(configuration_type, None, ListQuery()).items
        if not self.api.webhooks.may_match(
            configurations, _WEBHOOK_OPERATIONS[verb], target.resource, target.subresource
        ):
            return []  # most writes (leases, jobs, events) concern no webhook: no dry run for them
        resource, namespace, name = target.resource, target.namespace, target.name or ""
        old = None if verb == "create" else self.store.get_object(resource, namespace, name)
        obj: dict[str, Any] | None = None
        if verb == "create":
            obj = self.store.create_object(
                resource,
                namespace,
                _decode_object(resource, headers, body),
                dry_run=True,
                field_validation=field_validation,
                warnings=[],
            )
            name = obj["metadata"].get("name") or obj["metadata"].get("generateName", "")
        elif verb == "update":
            obj = self.store.replace_object(
                resource,
                namespace,
                name,
                _decode_object(resource, headers, body),
                subresource=target.subresource,
                dry_run=True,
                field_validation=field_validation,
                warnings=[],
            )
        elif verb == "patch":
            obj = self._patch(target, headers, body, True, field_validation, [])
        namespace_labels: dict[str, str] = {}
        if resource.namespaced and namespace:
            namespace_type = self.registry.lookup("", "v1", "namespaces")
            assert namespace_type is not None
            namespace_obj = self.store.get_object(namespace_type, None, namespace)
            namespace_labels = namespace_obj["metadata"].get("labels") or {}
        return self.api.webhooks.admit(
            configurations,
            webhooks.AdmissionCall(
                operation=_WEBHOOK_OPERATIONS[verb],
                resource=resource,
                subresource=target.subresource,
                namespace=namespace,
                name=name,
                obj=obj,
                old=old,
                dry_run=dry_run,
                namespace_labels=namespace_labels,
            ),
        )

    def _evict(self, target: _Target, query: dict[str, str], body: Any) -> Reply:
        namespace, name = target.namespace or "", target.name or ""
        document = disruption.deletion_options_of(body, namespace, name)
        options, _ = self._delete_options(target.resource, {}, document)
        dry_run = "All" in query.get("dryRun", "") or "All" in (document.get("dryRun") or [])
        return Reply(201, self.store.evict_pod(namespace, name, options, dry_run=dry_run))

    def _object_reply(
        self, code: int, resource: ResourceType, obj: dict[str, Any], accept: str, query: dict[str, str]
    ) -> Reply:
        if _table_requested(accept):
            return Reply(
                code,
                tables.table(
                    resource,
                    [obj],
                    include_object=_include_object(query),
                    now=self.api.clock(),
                    metadata={},
                    row_object=lambda o: o,
                ),
            )
        return Reply(code, obj)

    def _list(self, target: _Target, query: dict[str, str], accept: str) -> Reply:
        resource = target.resource
        try:
            limit = int(query.get("limit") or 0)
        except ValueError as error:
            raise errors.bad_request(f"invalid limit {query.get('limit')!r}") from error
        result = self.store.list_objects(
            resource,
            target.namespace,
            ListQuery(
                label_selector=query.get("labelSelector", ""),
                field_selector=query.get("fieldSelector", ""),
                limit=limit,
                continue_token=query.get("continue", ""),
                resource_version=query.get("resourceVersion", ""),
            ),
        )
        metadata: dict[str, Any] = {"resourceVersion": str(result.resource_version)}
        if result.continue_token:
            metadata["continue"] = result.continue_token
            metadata["remainingItemCount"] = result.remaining
        if _table_requested(accept):
            return Reply(
                200,
                tables.table(
                    resource,
                    result.items,
                    include_object=_include_object(query),
                    now=self.api.clock(),
                    metadata=metadata,
                    row_object=lambda o: o,
                ),
            )
        return Reply(
            200,
            {
                "kind": resource.list_kind,
                "apiVersion": resource.api_version,
                "metadata": metadata,
                "items": [_strip_type_meta(resource, item) for item in result.items],
            },
        )

    def _watch(self, target: _Target, query: dict[str, str], accept: str) -> WatchReply:
        resource = target.resource
        try:
            timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT_SECONDS)
        except ValueError as error:
            raise errors.bad_request(f"invalid timeoutSeconds {query.get('timeoutSeconds')!r}") from error
        bookmarks = _truthy(query.get("allowWatchBookmarks"))
        as_table = _table_requested(accept)
        try:
            watcher = self.store.open_watch(
                resource,
                target.namespace,
                ListQuery(
                    label_selector=query.get("labelSelector", ""),
                    field_selector=query.get("fieldSelector", ""),
                    resource_version=query.get("resourceVersion", ""),
                ),
            )
        except ApiError as error:
            if error.code != 410:
                raise
            return WatchReply(resource, None, timeout, bookmarks, as_table, error)
        return WatchReply(resource, watcher, timeout, bookmarks, as_table)

    def _patch(
        self,
        target: _Target,
        headers: dict[str, str],
        body: bytes,
        dry_run: bool,
        field_validation: str,
        warnings: list[str],
    ) -> dict[str, Any]:
        resource = target.resource
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        patch_type = _PATCH_TYPES.get(content_type)
        accepted = (
            _BUILTIN_PATCH_TYPES
            if resource.merge_strategies is not None
            else tuple(t for t in _BUILTIN_PATCH_TYPES if "strategic" not in t)
        )
        if patch_type is None or (patch_type == "strategic" and resource.merge_strategies is None):
            raise errors.unsupported_media_type(content_type, accepted)
        return self.store.patch_object(
            resource,
            target.namespace,
            target.name or "",
            patch_type,
            _decode_json(body),
            subresource=target.subresource,
            dry_run=dry_run,
            field_validation=field_validation,
            warnings=warnings,
        )

    @staticmethod
    def _delete_options(resource: ResourceType, query: dict[str, str], document: Any) -> tuple[DeleteOptions, str]:
        """DeleteOptions from a DELETE's body and query (or an Eviction's ``deleteOptions``), plus any warning."""
        if not isinstance(document, dict):
            raise errors.bad_request("DeleteOptions must be a JSON object")
        policy = document.get("propagationPolicy") or query.get("propagationPolicy") or None
        orphan = document.get("orphanDependents")
        if orphan is None and "orphanDependents" in query:
            orphan = _truthy(query["orphanDependents"])
        if policy is None and orphan is not None:
            policy = "Orphan" if orphan else "Background"
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.bad_request(
                f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan"'
            )
        preconditions = document.get("preconditions") or {}
        warning = ""
        if policy is None and resource.default_propagation == "Orphan":
            warning = (
                "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background "
                "to remove them or set propagationPolicy=Orphan to suppress this warning"
            )
        typed_policy = cast(Propagation | None, policy)
        return DeleteOptions(typed_policy, preconditions.get("uid"), preconditions.get("resourceVersion")), warning


# What a body may be sent as, as on a real server: JSON, YAML, and protobuf, which kubectl 1.32 sends for
# built-in kinds (`kubectl create namespace|secret|configmap|...`) and does not retry as JSON after a 415. Any
# other type is answered 415 like a real server's. A request without Content-Type is read as JSON (a real
# server answers it 415): the tests' raw HTTP helpers send none.
_BODY_TYPES = ("application/json", "application/yaml", protobuf.MEDIA_TYPE)


def _decode_body(headers: dict[str, str], body: bytes) -> Any:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("", "application/json"):
        return _decode_json(body)
    if content_type == "application/yaml":
        try:
            return yaml.safe_load(body.decode("utf-8")) if body else None
        except (UnicodeDecodeError, yaml.YAMLError) as error:
            raise errors.bad_request(f"the request body is not valid YAML: {error}") from error
    if content_type == protobuf.MEDIA_TYPE:
        return protobuf.decode(body, _BODY_TYPES)
    raise errors.unknown_body_format(_BODY_TYPES)


def _field_validation(query: dict[str, str]) -> str:
    """The ``fieldValidation`` of a write: Strict refuses unknown fields, Warn (the default) prunes and warns."""
    value = query.get("fieldValidation") or "Warn"
    if value not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(
            f'fieldValidation parameter {value!r} is invalid: valid values are "Ignore", "Warn", or "Strict"'
        )
    return value


def _warning_headers(warnings: list[str]) -> dict[str, str]:
    """One ``Warning: 299 - "..."`` entry per warning, comma-joined as HTTP allows (kubectl splits them)."""
    if not warnings:
        return {}
    return {"Warning": ", ".join("299 - " + json.dumps(text) for text in warnings)}


def _decode_object(resource: ResourceType, headers: dict[str, str], body: bytes) -> Any:
    """The object of a create or update, refused in the real server's words when it is not JSON."""
    try:
        return _decode_body(headers, body)
    except ApiError as error:
        if error.code != 400 or not error.message.startswith("the request body is not valid JSON: "):
            raise
        why = error.message.removeprefix("the request body is not valid JSON: ")
        text = body.decode("utf-8", "replace")
        excerpt = text if len(text) <= 30 else text[:30] + " ..."
        raise errors.bad_request(
            f"the object provided is unrecognized (must be of type {resource.kind}): couldn't "
            f"get version/kind; json parse error: {why} ({excerpt})"
        ) from error


def _decode_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8") if body else "null")
    except (UnicodeDecodeError, ValueError) as error:
        raise errors.bad_request(f"the request body is not valid JSON: {error}") from error


class _Handler(BaseHTTPRequestHandler):
    """One connection's request loop; every request is routed through ``_Router``."""

    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; without TCP_NODELAY, Nagle plus the client's delayed ACK
    # adds ~40 ms to every response.
    disable_nagle_algorithm = True
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        api = self.server.api
        body = self._read_body()
        for hook in list(api.on_request):
            try:
                hook(method, self.path, body)
            except Exception:  # a broken test hook must not take the server down
                log.exception("on_request hook failed")
        split = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(split.query, keep_blank_values=True).items()}
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            reply = api.router.route(method, split.path, query, headers, body)
        except ApiError as error:
            reply = Reply(error.code, error.status_body(), error.headers)
        except Exception as error:  # report like the real server: a Status, not a dropped connection
            log.exception("fake API request failed: %s %s", method, self.path)
            failure = errors.internal(str(error))
            reply = Reply(failure.code, failure.status_body())
        if isinstance(reply, WatchReply):
            self._stream(reply)
        else:
            self._send(reply)

    def _send(self, reply: Reply) -> None:
        data = reply.payload if isinstance(reply.payload, bytes) else json.dumps(reply.payload).encode()
        self.send_response(reply.code)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _client_gone(self) -> bool:
        """True once the client closed its end (a readable socket with nothing to read is EOF)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True

    def _stream(self, reply: WatchReply) -> None:
        api = self.server.api
        resource = reply.resource

        def render(event_type: str, obj: dict[str, Any]) -> bytes:
            if reply.as_table and event_type not in ("BOOKMARK", "ERROR"):
                obj = tables.table(
                    resource, [obj], include_object="Object", now=api.clock(), metadata={}, row_object=lambda o: o
                )
            return watch.encode_event(event_type, obj)

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        try:
            if reply.error is not None or reply.watcher is None:
                error = reply.error or errors.internal("watch could not start")
                self._write_chunk(render("ERROR", error.status_body()))
                self.wfile.write(b"0\r\n\r\n")
                return
            reason = watch.stream(
                reply.watcher,
                self._write_chunk,
                render,
                api.store.bookmark_version,
                timeout_seconds=reply.timeout_seconds,
                bookmarks=reply.bookmarks,
                bookmark_interval=api.bookmark_interval,
                client_gone=self._client_gone,
            )
            if reason in ("timeout", "resource-removed", "overflow"):
                self.wfile.write(b"0\r\n\r\n")
            else:
                # Dropped or stopped: cut the connection mid-stream, as a crashing API server would.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            self.close_connection = True
        finally:
            if reply.watcher is not None:
                api.store.close_watch(reply.watcher)


class _HttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that remembers its connections and threads so ``stop()`` can end them all."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: FakeApiServer) -> None:
        self.api = api
        self.connection_lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.threads: set[threading.Thread] = set()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"fakeapi-connection-{client_address[1]}",
            daemon=True,
        )
        with self.connection_lock:
            self.connections.add(request)
            self.threads.add(thread)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self.connection_lock:
                self.connections.discard(request)
                self.threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-request (an operator killed by a test or the soak) is ordinary for an API
        # server, not worth a traceback on stderr; anything else is still printed.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> None:
        with self.connection_lock:
            connections = list(self.connections)
            threads = list(self.threads)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class FakeApiServer:
    """A stateful fake Kubernetes API server on real HTTP (see docs/development/fake-api.md).

    Constructing it starts nothing; ``start()`` binds and serves in background threads; ``stop()`` (or
    leaving the ``with`` block) ends every watch, connection and thread it started. ``eviction_api=False`` plays
    a server that does not serve ``pods/eviction`` (404 on POST, absent from discovery).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        history_limit: int = 5000,
        *,
        watch_queue_limit: int = 10_000,
        bookmark_interval: float = 2.0,
        clock: Callable[[], float] = time.time,
        eviction_api: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.clock = clock
        self.bookmark_interval = bookmark_interval
        self.registry = ResourceRegistry(builtin_resources(eviction_api=eviction_api))
        self.store = Store(self.registry, history_limit=history_limit, watch_queue_limit=watch_queue_limit, clock=clock)
        self.garbage = GarbageCollector(self.store)
        self.faults = FaultInjector(self.store)
        self.webhooks = webhooks.WebhookCaller()
        self.on_request: list[RequestHook] = []
        self.stopping = threading.Event()
        self.router = _Router(self)
        self._http: _HttpServer | None = None
        self._serve_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._http is None:
            raise RuntimeError("the fake API server is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> FakeApiServer:
        if self._http is not None:
            return self
        self.stopping.clear()
        self._http = _HttpServer((self.host, self.port), self)
        self.port = int(self._http.server_address[1])
        self.garbage.start()
        self._serve_thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, name="fakeapi-listener", daemon=True
        )
        self._serve_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._http is None:
            return
        self.stopping.set()
        self._http.shutdown()
        self._http.server_close()
        self.store.close_all_watches("stopped")
        self._http.close_connections(timeout)
        if self._serve_thread is not None:
            self._serve_thread.join(timeout)
        self.garbage.stop(timeout)
        self._http = None
        self._serve_thread = None

    def expose_service(self, namespace: str, name: str, port: int, address: tuple[str, int]) -> None:
        """Let a webhook's ``clientConfig.service`` ``namespace/name:port`` reach ``address`` (e.g. loopback)."""
        self.webhooks.expose_service(namespace, name, port, address)

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        return write_kubeconfig(path, self.url, namespace)

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait until the garbage collector has nothing left to do (owners' dependents gone, etc.)."""
        return self.garbage.wait_idle(timeout)

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
