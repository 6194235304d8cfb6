"""Label, annotation, taint and condition names the operator reads or writes.

Kept in one place because they are part of the user-visible contract: Jobs are found by these labels
after a restart, machines are matched to groups by them, and docs/ lists them verbatim.
"""

from __future__ import annotations

from typing import Final

from schemas import API_GROUP

GROUP_LABEL: Final = f"{API_GROUP}/group"
"""On a Node CR: the name of its Group (same namespace). On a Kubernetes Node: the group it belongs to."""

MACHINE_LABEL: Final = f"{API_GROUP}/node"
"""On a Kubernetes Node and on power Jobs: the name of the Node CR (the machine)."""

OPERATION_LABEL: Final = f"{API_GROUP}/operation"
"""On power Jobs: `startup` or `shutdown`."""

ATTEMPT_LABEL: Final = f"{API_GROUP}/attempt"
"""On power Jobs: the attempt number of the operation, as a decimal string."""

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "homelab-autoscaler"

RESET_ANNOTATION: Final = f"{API_GROUP}/reset"
"""Set (any new value) on a Node CR by a person to clear quarantine and the failure count."""

CA_TO_BE_DELETED_TAINT: Final = "ToBeDeletedByClusterAutoscaler"
CA_DELETION_CANDIDATE_TAINT: Final = "DeletionCandidateOfClusterAutoscaler"
UNSCHEDULABLE_TAINT: Final = "node.kubernetes.io/unschedulable"

NODE_GROUP_ANNOTATION: Final = f"{API_GROUP}/node-group"
"""On the template node CA is given for scale-from-zero: the node group's id (`<namespace>/<name>`). CA renames
the template, so its price expander's PricingNodePrice finds the group through this annotation."""

CA_FAKE_NODE_REASON_ANNOTATION: Final = "k8s.io/cluster-autoscaler/fake-node-reason"
"""CA puts this on the stand-in nodes it builds for unregistered or failed instances."""

# Condition types on Node and Group CRs.
CONDITION_READY: Final = "Ready"
CONDITION_QUARANTINED: Final = "Quarantined"
CONDITION_OPERATION_FAILED: Final = "OperationFailed"
CONDITION_HEALTHY: Final = "Healthy"
CONDITION_INVALID_SPEC: Final = "InvalidSpec"
"""On a Group CR: True while its spec fails our schemas (written past the webhook); the message names the problems,
spelled as the webhook spells them. The operator keeps the last valid spec running, if it ever saw one."""
CONDITION_WRITE_FAILED: Final = "KubernetesWriteFailed"
"""On a Node CR: a change the operator made to Kubernetes for this machine (cordon, providerID, labels, ...) was
refused or kept failing; reason is the effect's name. Set False when the machine next changes state."""
CONDITION_POWER_READBACK_FAILING: Final = "PowerReadbackFailing"
"""True while the machine's power state cannot be read back; its reason is the failure (e.g. CredentialsRejected)."""

EXERCISE_TAINT: Final = f"{API_GROUP}/exercise"
"""NoSchedule taint on the Kubernetes Node of a machine being exercised: nothing is scheduled on a machine that
is about to be powered off again. Removed when Cluster Autoscaler takes the machine over."""
