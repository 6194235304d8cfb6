"""Typing stub for externalgrpc_pb2_grpc, written by protos/regenerate.py. DO NOT EDIT."""

from typing import Any

import grpc

from protos import externalgrpc_pb2

class CloudProviderStub:
    def __init__(self, channel: grpc.Channel) -> None: ...
    NodeGroups: Any
    NodeGroupForNode: Any
    PricingNodePrice: Any
    PricingPodPrice: Any
    GPULabel: Any
    GetAvailableGPUTypes: Any
    Cleanup: Any
    Refresh: Any
    NodeGroupTargetSize: Any
    NodeGroupIncreaseSize: Any
    NodeGroupDeleteNodes: Any
    NodeGroupDecreaseTargetSize: Any
    NodeGroupNodes: Any
    NodeGroupTemplateNodeInfo: Any
    NodeGroupGetOptions: Any

class CloudProviderServicer:
    def NodeGroups(
        self, request: externalgrpc_pb2.NodeGroupsRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.NodeGroupsResponse: ...
    def NodeGroupForNode(
        self, request: externalgrpc_pb2.NodeGroupForNodeRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.NodeGroupForNodeResponse: ...
    def PricingNodePrice(
        self, request: externalgrpc_pb2.PricingNodePriceRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.PricingNodePriceResponse: ...
    def PricingPodPrice(
        self, request: externalgrpc_pb2.PricingPodPriceRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.PricingPodPriceResponse: ...
    def GPULabel(
        self, request: externalgrpc_pb2.GPULabelRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.GPULabelResponse: ...
    def GetAvailableGPUTypes(
        self, request: externalgrpc_pb2.GetAvailableGPUTypesRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.GetAvailableGPUTypesResponse: ...
    def Cleanup(
        self, request: externalgrpc_pb2.CleanupRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.CleanupResponse: ...
    def Refresh(
        self, request: externalgrpc_pb2.RefreshRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.RefreshResponse: ...
    def NodeGroupTargetSize(
        self, request: externalgrpc_pb2.NodeGroupTargetSizeRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.NodeGroupTargetSizeResponse: ...
    def NodeGroupIncreaseSize(
        self, request: externalgrpc_pb2.NodeGroupIncreaseSizeRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.NodeGroupIncreaseSizeResponse: ...
    def NodeGroupDeleteNodes(
        self, request: externalgrpc_pb2.NodeGroupDeleteNodesRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.NodeGroupDeleteNodesResponse: ...
    def NodeGroupDecreaseTargetSize(
        self, request: externalgrpc_pb2.NodeGroupDecreaseTargetSizeRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.NodeGroupDecreaseTargetSizeResponse: ...
    def NodeGroupNodes(
        self, request: externalgrpc_pb2.NodeGroupNodesRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.NodeGroupNodesResponse: ...
    def NodeGroupTemplateNodeInfo(
        self, request: externalgrpc_pb2.NodeGroupTemplateNodeInfoRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.NodeGroupTemplateNodeInfoResponse: ...
    def NodeGroupGetOptions(
        self, request: externalgrpc_pb2.NodeGroupAutoscalingOptionsRequest, context: grpc.ServicerContext
    ) -> externalgrpc_pb2.NodeGroupAutoscalingOptionsResponse: ...

def add_CloudProviderServicer_to_server(servicer: CloudProviderServicer, server: grpc.Server) -> None: ...
