"""The externalgrpc `CloudProvider` servicer: Cluster Autoscaler's 15 calls, answered.

Every RPC is the same three steps: read the request, ask the read model (hot calls) or the mutation port
(size changes), convert the answer. The rules of the wire live in `convert`, the status codes in `errors`,
the actors behind `mutations`; what is left here is which of those each call uses, plus what every call
shares (metrics, logging, and the catch-all that turns a bug of ours into INTERNAL instead of grpcio's bare
UNKNOWN), added by one decorator.

The hot calls (NodeGroups, NodeGroupForNode, NodeGroupTargetSize, NodeGroupNodes, NodeGroupGetOptions) never
wait for an actor or the API server: they read immutable snapshots, so one unreachable BMC cannot abort a CA
loop. They log at DEBUG only; each size change is logged at INFO with its outcome.

Until the first inventory is applied (`ReadModel.inventory_applied`), every call that reads the inventory answers
UNAVAILABLE instead of an empty or partial answer: an empty NodeGroups reads to CA as "no groups", an empty
GPULabel is cached by CA for the life of its process, and "not autoscaled" from NodeGroupForNode is taken at its
word. Refresh answers UNAVAILABLE too although it reads nothing: it opens every CA loop, and its error is what
makes CA skip the whole loop and retry ten seconds later, instead of going on with the empty list its client
substitutes for a failed NodeGroups.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2

from actors.messages import NodeIdentity
from actors.read_model import GroupSnapshot, ReadModel
from grpc_gateway import convert, errors, metrics
from grpc_gateway.errors import InvalidRequest, NotOffered, NotReady, UnknownGroup
from grpc_gateway.mutations import MutationError, MutationPort
from protos import externalgrpc_pb2 as externalgrpc
from protos import externalgrpc_pb2_grpc as externalgrpc_grpc

LOGGER = logging.getLogger(__name__)

_Servicer = TypeVar("_Servicer", bound="CloudProviderServicer")
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

OPTIONS_STARTUP_TIME_WARNING = (
    "node group %s overrides autoscaling options, so they are returned to Cluster Autoscaler; CA 1.35 and newer "
    "then set max-node-startup-time to 0 for this group, because the wire has no field for it (upstream issue "
    "#10245). Newly booted machines may be judged not started at once; see docs/architecture/gateway.md"
)


def _rpc(
    handler: Callable[[_Servicer, _Request, Any], _Response],
) -> Callable[[_Servicer, _Request, Any], _Response]:
    """Count and time the call, and answer any exception through the error table (INTERNAL for bugs)."""
    method = handler.__name__

    @functools.wraps(handler)
    def serve(self: _Servicer, request: _Request, context: Any) -> _Response:
        started = time.perf_counter()
        try:
            response = handler(self, request, context)
        except Exception as error:
            status = errors.to_status(error)
            if errors.is_internal(status):
                LOGGER.error("%s failed on %r", method, request, exc_info=error)
            else:
                LOGGER.debug("%s answered %s: %s", method, status.code.name, status.message)
            metrics.record(method, status.code, time.perf_counter() - started)
            errors.abort(context, status)
        metrics.record(method, grpc.StatusCode.OK, time.perf_counter() - started)
        return response

    return serve


class _GroupAnswers:
    """The answers that depend on nothing but one group snapshot, each built at most once per snapshot.

    CA asks for the same group's membership, options and template thousands of times per loop while the
    snapshot rarely changes, so the servicer keeps one of these per group and replaces it when a new snapshot
    (a new version) is published. The response messages are shared between gRPC threads: grpcio only
    serializes a response, never changes it, and protobuf serializes under the GIL. A race between two threads
    builds an answer twice; both copies are equal.
    """

    _OPTION_VARIANTS = 8
    """CA sends the same defaults every call; this only bounds memory against a client that does not."""

    def __init__(self, snapshot: GroupSnapshot) -> None:
        self.snapshot = snapshot
        self.for_node = externalgrpc.NodeGroupForNodeResponse(
            nodeGroup=convert.to_pb_node_group(convert.node_group_view(snapshot))
        )
        self._nodes: externalgrpc.NodeGroupNodesResponse | None = None
        self._template: externalgrpc.NodeGroupTemplateNodeInfoResponse | None = None
        self._options: dict[tuple[bool, bytes], externalgrpc.NodeGroupAutoscalingOptionsResponse] = {}

    def nodes(self) -> externalgrpc.NodeGroupNodesResponse:
        if self._nodes is None:
            instances = [convert.to_pb_instance(view) for view in self.snapshot.instances]
            self._nodes = externalgrpc.NodeGroupNodesResponse(instances=instances)
        return self._nodes

    def template(self) -> externalgrpc.NodeGroupTemplateNodeInfoResponse | None:
        if self._template is None:
            template = convert.template_node(self.snapshot)
            if template is None:
                return None
            self._template = convert.template_response_from_bytes(convert.node_bytes(template))
        return self._template

    def options(
        self, request: externalgrpc.NodeGroupAutoscalingOptionsRequest
    ) -> externalgrpc.NodeGroupAutoscalingOptionsResponse:
        has_defaults = request.HasField("defaults")
        key = (has_defaults, request.defaults.SerializeToString(deterministic=True) if has_defaults else b"")
        response = self._options.get(key)
        if response is None:
            snapshot = self.snapshot
            response = convert.options_response(
                request, snapshot.autoscaling_options, snapshot.learned_provision_seconds
            )
            if len(self._options) >= self._OPTION_VARIANTS:
                self._options.clear()
            self._options[key] = response
        return response


class CloudProviderServicer(externalgrpc_grpc.CloudProviderServicer):
    """Answers Cluster Autoscaler from `read_model` and changes sizes through `mutations`.

    `price_per_kwh` (currency per kilowatt-hour) prices machines that declare only a power draw; without it
    such machines are not priced (PricingNodePrice answers UNIMPLEMENTED).
    """

    def __init__(
        self, read_model: ReadModel, mutations: MutationPort, *, price_per_kwh: Decimal | None = None
    ) -> None:
        self._read_model = read_model
        self._mutations = mutations
        self._price_per_kwh = price_per_kwh
        # Shared by gRPC threads without a lock: single dict get/set operations are atomic in CPython, and a
        # race only costs building one answer twice.
        self._answers: dict[str, _GroupAnswers] = {}
        self._options_warned: set[str] = set()
        self._options_warned_lock = threading.Lock()

    # --- hot calls: read model only ------------------------------------------------------------------------

    @_rpc
    def NodeGroups(
        self, request: externalgrpc.NodeGroupsRequest, context: Any
    ) -> externalgrpc.NodeGroupsResponse:
        groups = self._inventory().groups()
        self._forget_answers_except({group.id for group in groups})
        LOGGER.debug("NodeGroups: %d groups", len(groups))
        return externalgrpc.NodeGroupsResponse(
            nodeGroups=[convert.to_pb_node_group(convert.node_group_view(group)) for group in groups]
        )

    @_rpc
    def NodeGroupForNode(
        self, request: externalgrpc.NodeGroupForNodeRequest, context: Any
    ) -> externalgrpc.NodeGroupForNodeResponse:
        node = request.node
        inventory = self._inventory()
        # A Node without a providerID is not one of our instances yet: the operator stamps it once the Group's labels
        # and taints are on it. Claimed earlier by name, CA counts it as a registered member while its instance is
        # still unregistered, finds no room on it for the pods it was booted for, and scales up again.
        found = inventory.machine_for(node.providerID, node.name) if node.providerID else None
        if found is None:
            # Control plane, unmanaged hosts, machines in maintenance, a machine being exercised (CA must neither
            # count it nor scale it down): "not autoscaled" is an answer, not an error.
            LOGGER.debug("NodeGroupForNode: %r (providerID %r) is in no group", node.name, node.providerID)
            return externalgrpc.NodeGroupForNodeResponse(nodeGroup=externalgrpc.NodeGroup(id=""))
        group, _machine = found
        return self._answers_for(group).for_node

    @_rpc
    def NodeGroupTargetSize(
        self, request: externalgrpc.NodeGroupTargetSizeRequest, context: Any
    ) -> externalgrpc.NodeGroupTargetSizeResponse:
        return externalgrpc.NodeGroupTargetSizeResponse(targetSize=self._group(request.id).target_size)

    @_rpc
    def NodeGroupNodes(
        self, request: externalgrpc.NodeGroupNodesRequest, context: Any
    ) -> externalgrpc.NodeGroupNodesResponse:
        return self._answers_for(self._group(request.id)).nodes()

    @_rpc
    def NodeGroupGetOptions(
        self, request: externalgrpc.NodeGroupAutoscalingOptionsRequest, context: Any
    ) -> externalgrpc.NodeGroupAutoscalingOptionsResponse:
        group = self._group(request.id)
        response = self._answers_for(group).options(request)
        if response.HasField("nodeGroupAutoscalingOptions"):
            self._warn_about_startup_time_once(group.id)
        return response

    @_rpc
    def NodeGroupTemplateNodeInfo(
        self, request: externalgrpc.NodeGroupTemplateNodeInfoRequest, context: Any
    ) -> externalgrpc.NodeGroupTemplateNodeInfoResponse:
        group = self._group(request.id)
        response = self._answers_for(group).template()
        if response is None:
            # Never OK with empty bytes: CA would dereference a nil template. UNIMPLEMENTED skips the group.
            raise NotOffered(
                f"node group {group.id!r} has no template yet: no member has been seen Ready and the Group "
                "sets no spec.template, so it cannot scale from zero"
            )
        return response

    # --- size changes: through the group actors ------------------------------------------------------------

    @_rpc
    def NodeGroupIncreaseSize(
        self, request: externalgrpc.NodeGroupIncreaseSizeRequest, context: Any
    ) -> externalgrpc.NodeGroupIncreaseSizeResponse:
        group_id, delta = request.id, request.delta
        self._mutate(
            "IncreaseSize",
            group_id,
            f"delta {delta}",
            lambda: self._mutations.increase_size(group_id, delta),
            problem=f"delta must be positive to increase node group {group_id!r}, got {delta}" if delta <= 0 else "",
        )
        return externalgrpc.NodeGroupIncreaseSizeResponse()

    @_rpc
    def NodeGroupDeleteNodes(
        self, request: externalgrpc.NodeGroupDeleteNodesRequest, context: Any
    ) -> externalgrpc.NodeGroupDeleteNodesResponse:
        group_id = request.id
        references = [convert.node_from_pb(node) for node in request.nodes]
        nodes = tuple(NodeIdentity(name=node.name, provider_id=node.provider_id) for node in references)
        described = "nodes " + ", ".join(
            f"{node.provider_id} (stand-in)" if node.is_stand_in else node.name or node.provider_id
            for node in references
        )
        self._mutate(
            "DeleteNodes",
            group_id,
            described,
            lambda: self._mutations.delete_nodes(group_id, nodes),
            problem="" if nodes else f"no nodes given to delete from node group {group_id!r}",
        )
        return externalgrpc.NodeGroupDeleteNodesResponse()

    @_rpc
    def NodeGroupDecreaseTargetSize(
        self, request: externalgrpc.NodeGroupDecreaseTargetSizeRequest, context: Any
    ) -> externalgrpc.NodeGroupDecreaseTargetSizeResponse:
        group_id, delta = request.id, request.delta
        self._mutate(
            "DecreaseTargetSize",
            group_id,
            f"delta {delta}",
            lambda: self._mutations.decrease_target_size(group_id, delta),
            problem=f"delta must be negative to decrease node group {group_id!r}, got {delta}" if delta >= 0 else "",
        )
        return externalgrpc.NodeGroupDecreaseTargetSizeResponse()

    # --- optional and cheap calls --------------------------------------------------------------------------

    @_rpc
    def PricingNodePrice(
        self, request: externalgrpc.PricingNodePriceRequest, context: Any
    ) -> externalgrpc.PricingNodePriceResponse:
        node = request.node
        start, end = convert.pricing_window(request)
        if start is None or end is None:
            raise InvalidRequest(f"pricing node {node.name!r} needs both a start and an end timestamp")
        if end < start:
            raise InvalidRequest(
                f"pricing node {node.name!r}: end {end.isoformat()} is before start {start.isoformat()}"
            )
        group_id = convert.template_group_id(node)
        if group_id:
            return self._template_price(group_id, node.name, start, end)
        found = self._inventory().machine_for(node.providerID, node.name)
        if found is None:
            raise NotOffered(f"node {node.name!r} (providerID {node.providerID!r}) is no machine of ours to price")
        _group, machine = found
        price = convert.node_price(machine, start, end, self._price_per_kwh)
        if price is None:
            raise NotOffered(
                f"machine {machine.namespace}/{machine.name} has no hourly price"
                + ("" if self._price_per_kwh is not None else ", and no price per kWh is configured")
            )
        return externalgrpc.PricingNodePriceResponse(price=float(price))

    def _template_price(
        self, group_id: str, node_name: str, start: datetime, end: datetime
    ) -> externalgrpc.PricingNodePriceResponse:
        """The price of one more member of the group: CA's price expander asking about a scale-up option."""
        hourly = convert.next_machine_price(self._group(group_id), self._price_per_kwh)
        if hourly is None:
            raise NotOffered(
                f"template node {node_name!r}: no powered-off machine of node group {group_id!r} is priced"
            )
        return externalgrpc.PricingNodePriceResponse(price=float(hourly * convert.hours(start, end)))

    @_rpc
    def PricingPodPrice(
        self, request: externalgrpc.PricingPodPriceRequest, context: Any
    ) -> externalgrpc.PricingPodPriceResponse:
        """The pod's share, by its CPU and memory requests, of the homelab's cheapest priced machine.

        A powered-on machine costs the same whether it runs one pod or twenty, so this is a yardstick rather than a
        bill: CA's price expander divides each scale-up option's node cost by the cost of the pods it would place,
        and skips an option whose pods it cannot price. The same pods get the same price for every option, so the
        group whose next machine costs least wins, which is what a user of `--expander=price` wants.
        """
        start, end = convert.pricing_window(request)
        if start is None or end is None:
            raise InvalidRequest("pricing a pod needs both a start and an end timestamp")
        if end < start:
            raise InvalidRequest(f"pricing a pod: end {end.isoformat()} is before start {start.isoformat()}")
        requests = convert.pod_requests(convert.pod_bytes(request))
        reference = convert.reference_machine(self._inventory().groups(), self._price_per_kwh)
        if reference is None:
            raise NotOffered(
                "pod pricing needs a priced machine whose group has a template or a member seen Ready"
                + ("" if self._price_per_kwh is not None else "; no machine has an hourly price or a price per kWh")
            )
        return externalgrpc.PricingPodPriceResponse(price=float(convert.pod_price(requests, reference, start, end)))

    @_rpc
    def GPULabel(self, request: externalgrpc.GPULabelRequest, context: Any) -> externalgrpc.GPULabelResponse:
        """The first group's GPU label (groups ordered by id), or "" when no group sets one.

        CA caches the first successful answer for the life of its process, "" included: a label set on a Group
        later only takes effect when CA restarts.
        """
        label = next((group.gpu_label for group in self._inventory().groups() if group.gpu_label), "")
        return externalgrpc.GPULabelResponse(label=label)

    @_rpc
    def GetAvailableGPUTypes(
        self, request: externalgrpc.GetAvailableGPUTypesRequest, context: Any
    ) -> externalgrpc.GetAvailableGPUTypesResponse:
        """Every GPU type any group offers (CA reads the keys only, and caches the first answer forever)."""
        types = sorted({gpu_type for group in self._inventory().groups() for gpu_type in group.gpu_types})
        return externalgrpc.GetAvailableGPUTypesResponse(gpuTypes={gpu_type: any_pb2.Any() for gpu_type in types})

    @_rpc
    def Refresh(self, request: externalgrpc.RefreshRequest, context: Any) -> externalgrpc.RefreshResponse:
        """Start of a CA loop. Nothing to do once the inventory is applied: the read model is always current.

        Before that, UNAVAILABLE: CA aborts this loop and retries on the next one (see the module docstring).
        """
        self._inventory()
        return externalgrpc.RefreshResponse()

    @_rpc
    def Cleanup(self, request: externalgrpc.CleanupRequest, context: Any) -> externalgrpc.CleanupResponse:
        """CA is shutting down. Nothing to release: our machines keep their state for the next CA."""
        LOGGER.info("Cluster Autoscaler called Cleanup (it is shutting down)")
        return externalgrpc.CleanupResponse()

    # --- helpers -------------------------------------------------------------------------------------------

    def _inventory(self) -> ReadModel:
        """The read model, or NotReady (UNAVAILABLE) while it holds no complete inventory."""
        if not self._read_model.inventory_applied:
            raise NotReady()
        return self._read_model

    def _group(self, group_id: str) -> GroupSnapshot:
        group = self._inventory().group(group_id)
        if group is None:
            raise UnknownGroup(group_id, (known.id for known in self._read_model.groups()))
        return group

    def _mutate(
        self, action: str, group_id: str, described: str, change: Callable[[], None], *, problem: str
    ) -> None:
        """Make one size change, logging what CA asked for and how it ended; `problem` refuses it up front."""
        if problem:
            LOGGER.info("%s of node group %s (%s) refused: %s", action, group_id, described, problem)
            raise InvalidRequest(problem)
        started = time.perf_counter()
        try:
            change()
        except MutationError as error:
            LOGGER.info(
                "%s of node group %s (%s) not done: %s: %s",
                action, group_id, described, type(error).__name__, error,
            )
            raise
        LOGGER.info(
            "%s of node group %s (%s) done in %.1f ms",
            action, group_id, described, (time.perf_counter() - started) * 1000,
        )

    def _answers_for(self, group: GroupSnapshot) -> _GroupAnswers:
        answers = self._answers.get(group.id)
        if answers is None or answers.snapshot is not group:
            answers = self._answers[group.id] = _GroupAnswers(group)
        return answers

    def _forget_answers_except(self, group_ids: set[str]) -> None:
        # list() copies the keys in one C call, so a gRPC thread adding an entry meanwhile cannot break the loop.
        for group_id in list(self._answers):
            if group_id not in group_ids:
                self._answers.pop(group_id, None)

    def _warn_about_startup_time_once(self, group_id: str) -> None:
        if group_id in self._options_warned:
            return
        with self._options_warned_lock:
            if group_id in self._options_warned:
                return
            self._options_warned.add(group_id)
        LOGGER.warning(OPTIONS_STARTUP_TIME_WARNING, group_id)
