"""Random AdmissionReviews against the real admission webhook over TLS: an answer for everything, never a crash.

One `WebhookServer` per module, on 127.0.0.1 port 0 with a certificate from `webhooks.certs`, judging with the real
`AdmissionRules` over a small in-memory cluster. The bodies are random: bytes that are not JSON, JSON that is
not an AdmissionReview, reviews of other kinds, reviews with fields missing or of the wrong type, nesting far
deeper than any object, and bodies around the 3 MiB limit. Every answer must be:

- HTTP 200 with a well-formed AdmissionReview v1 response echoing the request's uid, whose verdict is a denial
  with a reason (422) or an admission, never the 500 a rule's own exception turns into; or
- HTTP 400 (411 for a request without a Content-Length) with a plain message;

within the client's timeout, and the server must still admit a valid review afterwards.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas import API_GROUP, API_VERSION, GROUP_VERSION
from schemas.labels import GROUP_LABEL
from webhooks.admission import ALL_NAMESPACES, AdmissionRules, KnownMachine
from webhooks.certs import create_certificate_authority, create_serving_certificate
from webhooks.server import MAX_BODY_BYTES, WebhookServer

NAMESPACE: Final = "homelab"
CLIENT_TIMEOUT: Final = 15.0
"""Seconds the client waits for an answer: the API server gives a review 5 s; a hang shows up as a timeout."""
ADMISSION_API_VERSION: Final = "admission.k8s.io/v1"
MAX_FUZZED_DEPTH: Final = 3_000
"""Well past what the JSON parser holds (about 1000 levels): deeper bodies are refused with a 400."""
RULE_CRASH_CODE: Final = 500
"""The code of a denial the rules make when their own code raised (a lookup failure, here impossible)."""


@dataclass
class SmallCluster:
    """What the operator's caches would know: Group `workers`, machine `nas-1` (always on), its Kubernetes Node."""

    groups: set[tuple[str, str]] = field(default_factory=lambda: {(NAMESPACE, "workers")})
    machines: list[KnownMachine] = field(
        default_factory=lambda: [KnownMachine("nas-1", "nas-1", "homelab://nas-1", "On", "workers", NAMESPACE)]
    )

    def group_exists(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.groups

    def nodes(self, namespace: str) -> Iterable[KnownMachine]:
        return [m for m in self.machines if namespace == ALL_NAMESPACES or m.namespace == namespace]

    def kubernetes_node_exists(self, name: str) -> bool:
        return name == "nas-1"


@dataclass(frozen=True)
class Webhook:
    port: int
    client_context: ssl.SSLContext

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
        """POST a review and return (HTTP status, body, content type) of the answer."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.client_context, timeout=CLIENT_TIMEOUT
        )
        try:
            connection.putrequest("POST", "/validate?timeout=5s")
            for name, value in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                                **(headers or {})}.items():
                connection.putheader(name, value)
            # An oversized body is refused from its Content-Length alone, before a byte of it is read; sending it
            # anyway would race the server's close (a reset can discard the answer), so only its length is sent.
            # Headers and body leave in one write: two small writes would wait on Nagle and delayed ACKs.
            connection.endheaders(body if len(body) <= MAX_BODY_BYTES else None)
            response = connection.getresponse()
            return response.status, response.read(), response.getheader("Content-Type", "")
        finally:
            connection.close()


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    now = datetime.now(UTC)
    authority = create_certificate_authority(now)
    serving = create_serving_certificate(authority, ("homelab-autoscaler-webhook.homelab-autoscaler.svc",), now,
                                         ip_addresses=("127.0.0.1",))
    directory: Path = tmp_path_factory.mktemp("webhook-certs")
    (directory / "tls.crt").write_bytes(serving.cert_pem)
    (directory / "tls.key").write_bytes(serving.key_pem)
    server = WebhookServer(("127.0.0.1", 0), directory / "tls.crt", directory / "tls.key",
                           AdmissionRules(SmallCluster()))
    server.start()
    try:
        yield Webhook(server.port, ssl.create_default_context(cadata=authority.cert_pem.decode()))
    finally:
        server.stop()


# --- bodies ------------------------------------------------------------------------------------------------------


def node(name: str = "nas-2", group: str = "workers", **spec: Any) -> dict[str, Any]:
    template = {"image": "ghcr.io/example/wol:1"}
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Node",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {GROUP_LABEL: group}},
        "spec": {"startupJob": template, "shutdownJob": template, **spec},
    }


def group(name: str = "workers", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Group",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"maxSize": 3, **spec},
    }


def review(obj: Any, *, uid: Any = "uid-1", operation: Any = "CREATE", kind: Any = None, old: Any = None) -> dict[
    str, Any
]:
    """An AdmissionReview of `obj` (any JSON value): kind and name from it when it has them."""
    document: dict[str, Any] = obj if isinstance(obj, dict) else {}
    metadata: dict[str, Any] = document["metadata"] if isinstance(document.get("metadata"), dict) else {}
    request: dict[str, Any] = {
        "uid": uid,
        "kind": kind if kind is not None else {
            "group": API_GROUP, "version": API_VERSION, "kind": document.get("kind", "Node"),
        },
        "operation": operation,
        "namespace": NAMESPACE,
        "name": metadata.get("name", ""),
        "object": obj,
    }
    if old is not None:
        request["oldObject"] = old
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "request": request}


VALID: Final = json.dumps(review(node())).encode()

JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=False), st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children,
                                                                               max_size=4)),
    max_leaves=20,
)
KEYS_OF_A_REVIEW = st.sampled_from(["apiVersion", "kind", "request"])
REQUEST_KEYS = st.sampled_from(["uid", "kind", "operation", "namespace", "name", "object", "oldObject"])


def _without(document: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(document))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target.pop(path[-1], None)
    return copy


def _replaced(document: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(document))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


OBJECT_PATHS = st.sampled_from([
    ("request", "object", "metadata"), ("request", "object", "metadata", "name"),
    ("request", "object", "metadata", "labels"), ("request", "object", "spec"),
    ("request", "object", "spec", "startupJob"), ("request", "object", "spec", "powerPolicy"),
    ("request", "object", "spec", "providerID"), ("request", "object", "spec", "kubernetesNodeName"),
    ("request", "kind", "kind"), ("request", "kind", "group"), ("request", "namespace"), ("request", "name"),
])  # fmt: skip
BASE_REVIEWS = st.sampled_from([
    review(node()), review(node("nas-1")), review(node(group="missing")), review(group()),
    review(group(maxSize=0)), review(node(), operation="UPDATE", old=node()),
    review(group(), operation="UPDATE", old=group(maxSize=5)), review(node(), operation="DELETE"),
])  # fmt: skip
OLD_PATHS = st.sampled_from([("request", "oldObject"), ("request", "oldObject", "metadata"),
                             ("request", "oldObject", "spec")])


class Body:
    """A request body; its repr stays short, so a failing example of 3 MiB does not flood the report."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        head = self.data[:120]
        return f"Body({len(self.data)} bytes: {head!r}{'...' if len(self.data) > len(head) else ''})"


def _encode(document: Any) -> bytes:
    return json.dumps(document).encode()


def _nested(depth: int, opener: str) -> bytes:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return (opener * depth + "1" + closer * depth).encode()


def _long_integer(digits: int) -> bytes:
    """A review whose apiVersion is an integer of `digits` digits (Python converts at most 4300)."""
    return b'{"apiVersion": ' + b"9" * digits + b"}"


def _of_size(size: int) -> bytes:
    """A valid review padded with an annotation to exactly `size` bytes (when `size` allows)."""
    document = review(node())
    document["request"]["object"]["metadata"]["annotations"] = {"padding": ""}
    empty = len(_encode(document))
    document["request"]["object"]["metadata"]["annotations"]["padding"] = "x" * max(0, size - empty)
    return _encode(document)


BODIES = st.one_of(
    st.binary(max_size=512),
    JSON_VALUES.map(_encode),
    st.builds(review, JSON_VALUES).map(_encode),
    st.builds(lambda obj, kind: review(obj, kind=kind), st.dictionaries(st.text(max_size=8), JSON_VALUES),
              JSON_VALUES).map(_encode),
    st.builds(_without, BASE_REVIEWS, st.tuples(KEYS_OF_A_REVIEW)).map(_encode),
    st.builds(_without, BASE_REVIEWS, REQUEST_KEYS.map(lambda key: ("request", key))).map(_encode),
    st.builds(_replaced, BASE_REVIEWS, OBJECT_PATHS, JSON_VALUES).map(_encode),
    st.builds(lambda base, value: _replaced(base, ("request", "uid"), value), BASE_REVIEWS, JSON_VALUES).map(_encode),
    st.builds(lambda kind, operation: review(node(), kind=kind, operation=operation),
              st.fixed_dictionaries({"group": st.text(max_size=30), "version": st.text(max_size=10),
                                     "kind": st.sampled_from(["Node", "Group", "Pod", "", "node"])}),
              st.one_of(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", ""]), JSON_VALUES)).map(_encode),
    st.builds(lambda old_path, value: _replaced(review(node(), operation="UPDATE", old=node()), old_path, value),
              OLD_PATHS, JSON_VALUES).map(_encode),
    st.builds(_nested, st.integers(1, MAX_FUZZED_DEPTH), st.sampled_from(["[", '{"a":'])),
    st.integers(4_000, 5_000).map(_long_integer),
    st.integers(MAX_BODY_BYTES - 64, MAX_BODY_BYTES + 64).map(_of_size),
).map(Body)  # fmt: skip


# --- properties ----------------------------------------------------------------------------------------------------


def request_uid(body: bytes) -> str | None:
    """The uid a well-formed answer must echo, when the body has a usable one."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    request = document.get("request") if isinstance(document, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    return uid if isinstance(uid, str) and uid else None


def assert_well_answered(body: bytes, status: int, answer: bytes, content_type: str) -> None:
    assert status in (200, 400), f"HTTP {status}: {answer[:300]!r}"
    if status == 400:
        assert content_type.startswith("text/plain")
        assert answer.strip(), "a 400 says what is wrong"
        return
    document = json.loads(answer)
    assert (document["apiVersion"], document["kind"]) == (ADMISSION_API_VERSION, "AdmissionReview")
    response = document["response"]
    assert response["uid"] == request_uid(body)
    assert isinstance(response["allowed"], bool)
    if not response["allowed"]:
        assert isinstance(response["status"]["message"], str)
        assert response["status"]["message"], "a denial says why"
        assert response["status"]["code"] != RULE_CRASH_CODE, f"rules crashed: {response['status']}"
    assert all(isinstance(warning, str) for warning in response.get("warnings", []))


def assert_still_admits(webhook: Webhook) -> None:
    status, answer, _ = webhook.post(VALID)
    assert status == 200
    assert json.loads(answer)["response"]["allowed"] is True


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(body=BODIES)
@example(body=Body(b""))
@example(body=Body(b"{"))
@example(body=Body(b"null"))
@example(body=Body(VALID))
@example(body=Body(_of_size(MAX_BODY_BYTES)))
@example(body=Body(_of_size(MAX_BODY_BYTES + 1)))
def test_any_body_gets_a_well_formed_answer_and_the_server_keeps_admitting(webhook: Webhook, body: Body) -> None:
    assert_well_answered(body.data, *webhook.post(body.data))
    assert_still_admits(webhook)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif("'slow' not in config.getoption('markexpr')", reason="only when asked for: pytest -m slow")
@settings(
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(body=BODIES)
def test_any_body_at_length(webhook: Webhook, body: Body) -> None:
    """The same property over many more bodies (several minutes): `pytest -m slow tests/fuzz`."""
    assert_well_answered(body.data, *webhook.post(body.data))
    assert_still_admits(webhook)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Transfer-Encoding": "chunked"}, id="chunked"),
        pytest.param({"Content-Length": "-1"}, id="negative-length"),
        pytest.param({"Content-Length": "many"}, id="not-a-number"),
        pytest.param({"Content-Length": str(MAX_BODY_BYTES * 10)}, id="announces-far-too-much"),
    ],
)
def test_broken_framing_is_refused_with_a_client_error(webhook: Webhook, headers: dict[str, str]) -> None:
    connection = http.client.HTTPSConnection("127.0.0.1", webhook.port, context=webhook.client_context,
                                             timeout=CLIENT_TIMEOUT)
    try:
        connection.putrequest("POST", "/validate")
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        status = connection.getresponse().status
    finally:
        connection.close()
    assert status in (400, 411)
    assert_still_admits(webhook)


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(1, id="number"),
        pytest.param("nas-2", id="string"),
        pytest.param(True, id="boolean"),
        pytest.param(["name", "nas-2"], id="list"),
        pytest.param([["name", "nas-2"], ["namespace", NAMESPACE]], id="list-of-pairs"),
        pytest.param([], id="empty-list"),
        pytest.param("", id="empty-string"),
        pytest.param(0, id="zero"),
    ],
)
@pytest.mark.parametrize("kind", [pytest.param(node, id="node"), pytest.param(group, id="group")])
def test_a_metadata_that_is_not_an_object_is_denied_as_invalid(
    webhook: Webhook, kind: Callable[[], dict[str, Any]], metadata: Any
) -> None:
    document = review(kind(), operation="UPDATE", old=kind())
    document["request"]["object"]["metadata"] = metadata
    status, answer, _ = webhook.post(_encode(document))
    assert status == 200, answer
    verdict = json.loads(answer)["response"]
    assert (verdict["allowed"], verdict["status"]["code"]) == (False, 422)
    assert [cause["field"] for cause in verdict["status"]["details"]["causes"]] == ["metadata"]


@pytest.mark.parametrize(
    "metadata",
    [pytest.param("nas-2", id="string"), pytest.param(True, id="boolean"), pytest.param([], id="list")],
)
def test_an_old_object_whose_metadata_is_not_an_object_is_refused_with_400(webhook: Webhook, metadata: Any) -> None:
    # An API server only sends what it stored, and that always has object metadata: the review itself is broken.
    document = review(node(), operation="UPDATE", old=node())
    document["request"]["oldObject"]["metadata"] = metadata
    status, answer, content_type = webhook.post(_encode(document))
    assert (status, content_type.split(";")[0]) == (400, "text/plain")
    assert b"oldObject.metadata" in answer


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_nested(5_000, "["), id="arrays-5000-deep"),
        pytest.param(_nested(100_000, '{"a":'), id="objects-100000-deep"),
        pytest.param(_long_integer(5_000), id="integer-of-5000-digits"),
    ],
)
def test_json_the_parser_cannot_hold_is_refused_with_400(webhook: Webhook, body: bytes) -> None:
    status, answer, content_type = webhook.post(body)
    assert (status, content_type.split(";")[0]) == (400, "text/plain")
    assert answer.startswith(b"request body is ")  # says what is wrong with it
    assert_still_admits(webhook)
