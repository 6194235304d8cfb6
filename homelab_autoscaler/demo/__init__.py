"""The parts of `homelab-autoscaler demo`: a simulated homelab driven by a stand-in for Cluster Autoscaler.

`homelab` (the cast and every delay, pure), `session` (starting and stopping the fake API, the operator and the
simulated machines), `observation` (what is seen each round and what changed, pure), `readers` (CA's side over
gRPC and kubectl's side over HTTP), `scenario` (the steps and their checks, and the driver loop), `display` (the
live view and the line log) and `summary` (the closing numbers, pure). The command in
`homelab_autoscaler.commands.demo` only composes them.
"""
