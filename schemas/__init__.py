"""The data contract of Homelab Autoscaler: custom resources, settings and their validation rules.

Everything here is pure pydantic (no I/O, no Kubernetes client), so the state machines, the actors,
the admission webhook and the CRD generator all share one source of truth for field names, defaults
and rules. The Kubernetes wire form is camelCase; Python code uses snake_case attributes.
"""

API_GROUP = "infra.homecluster.dev"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
