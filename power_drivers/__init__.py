"""The operator's native power drivers: Wake-on-LAN, IPMI, Redfish and SSH, and the executor that runs them.

A Node with `spec.power` is switched by these drivers instead of Jobs. The actors never call a driver: they submit
a `PowerRequest` to the `PowerPort` (`actors.power_port`), which `executor.PowerExecutor` implements on its own
worker threads (bounded, one operation at a time per BMC or host, retries within each request's deadline) and
answers with a `PowerOutcome`. Each driver module wraps one maintained protocol library and turns its errors into
one `PowerDriverError` carrying a `PowerFailure`. Credentials come through a `secrets.SecretReader` at the time of
each try and go nowhere else: not into logs, messages or metrics. This package imports neither Kubernetes nor
Thespian; the Kubernetes Secret reader lives with the other Kubernetes adapters.
"""
