"""The Cluster Autoscaler's way in: the externalgrpc `CloudProvider` gRPC service and its helpers.

This is the only package that imports grpc and the generated protos. It answers CA's hot calls from the
read model's immutable snapshots and forwards size changes to the group actors, so it stays thin: pure
converters (`convert`) over plain values (`views`), an error-to-status table, the servicer and the
server factory (TLS included).
"""
