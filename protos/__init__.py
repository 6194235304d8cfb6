"""Wire definitions: the externalgrpc superset CA speaks, a Kubernetes v1.Node subset, their generated code.

`externalgrpc.proto` declares both field layouts CA has used (before and after 1.35), so one server
answers every CA version; `k8s_node.proto` lets us serialize the template Node CA expects without the
Kubernetes Go types. The `*_pb2*` modules are generated and committed; change them only by running
`python protos/regenerate.py` (CI runs it with `--check`). Only `grpc_gateway` may import this package.
"""
