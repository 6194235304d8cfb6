"""PodDisruptionBudgets and the Eviction subresource: the disruption controller's arithmetic and the eviction
verdict, as pure functions.

Separate because these are the rules a drain lives or dies by, and they are easy to get subtly wrong: which pods
count as healthy, how a percentage rounds, when a budget is skipped, and which pods may be evicted without
asking a budget at all. The store sequences them under its lock (so an eviction and the budget it consumes are
one atomic step); this module only answers questions. Functions that stamp a time take ``timestamp`` (now, as
the API writes times) as an argument.

Rules kept as a real cluster (Kubernetes 1.32) has them:
- A budget selects pods in its own namespace with ``spec.selector``; an empty selector selects every pod, a
  missing one selects none. Neither ``minAvailable`` nor ``maxUnavailable`` set defaults ``minAvailable`` to 1.
- ``desiredHealthy`` is ``minAvailable`` (an integer, or a percentage of ``expectedPods`` rounded up), or
  ``expectedPods - maxUnavailable`` (a percentage rounded up), never below 0. ``disruptionsAllowed`` is
  ``currentHealthy - desiredHealthy``, never below 0, and 0 while the budget expects no pods.
- An eviction ignores budgets for a pod that is Pending, Succeeded, Failed or already terminating. Otherwise
  more than one selecting budget is a 500; an unready pod may go when the budget is healthy anyway (or always,
  with ``unhealthyPodEvictionPolicy: AlwaysAllow``); a ready pod needs ``disruptionsAllowed >= 1`` or gets 429.

Where the fake differs (no workload controllers, no kubelet): ``expectedPods`` is the number of selected pods,
not the scale of their controllers, and a Running pod without any ``Ready`` condition counts as ready, because
nothing in the fake would ever write one for it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from sim.fakeapi import errors
from sim.fakeapi.errors import ApiError, FieldCause
from sim.fakeapi.selectors import LabelOperator, LabelRequirement, labels_match

POLICY_GROUP = "policy"
EVICTION_API_VERSIONS = ("policy/v1", "policy/v1beta1")  # the real server accepts both bodies
DISRUPTION_ALLOWED = "DisruptionAllowed"
DISRUPTION_TARGET = "DisruptionTarget"
UNHEALTHY_POLICIES = ("AlwaysAllow", "IfHealthyBudget")
PHASES_WITHOUT_BUDGET_CHECK = ("Pending", "Succeeded", "Failed")

_PERCENT = re.compile(r"^([0-9]+)%$")
_OPERATORS: dict[str, LabelOperator] = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}


# ----------------------------------------------------------------------------------------------- selectors


def _requirements(selector: Mapping[str, Any]) -> tuple[LabelRequirement, ...] | None:
    """The label requirements of a ``LabelSelector``; None when it cannot be understood (it then selects nothing)."""
    requirements = [
        LabelRequirement(str(key), "=", (str(value),)) for key, value in (selector.get("matchLabels") or {}).items()
    ]
    for expression in selector.get("matchExpressions") or []:
        operator = _OPERATORS.get(str((expression or {}).get("operator")))
        if operator is None:
            return None
        values = tuple(str(value) for value in expression.get("values") or [])
        requirements.append(LabelRequirement(str(expression.get("key", "")), operator, values))
    return tuple(requirements)


def selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """Whether a policy/v1 ``LabelSelector`` selects an object with ``labels`` (``{}`` all, missing none)."""
    if not isinstance(selector, Mapping):
        return False
    requirements = _requirements(selector)
    return requirements is not None and labels_match(requirements, labels)


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def selects(budget: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """Whether ``budget`` selects ``pod`` (same namespace, matching selector)."""
    if (budget.get("metadata") or {}).get("namespace") != (pod.get("metadata") or {}).get("namespace"):
        return False
    return selector_matches((budget.get("spec") or {}).get("selector"), _labels(pod))


# ------------------------------------------------------------------------------------- defaults, validation


def default_budget(budget: dict[str, Any]) -> dict[str, Any]:
    """The budget with the real server's one default: ``minAvailable: 1`` when neither bound is set."""
    spec = budget.setdefault("spec", {})
    if spec.get("minAvailable") is None and spec.get("maxUnavailable") is None:
        spec["minAvailable"] = 1
    return budget


def _bound_causes(value: Any, path: str) -> list[FieldCause]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int | str):
        return [FieldCause(path, "FieldValueInvalid", "must be an integer or percentage (e.g '5%')")]
    if isinstance(value, int):
        return [] if value >= 0 else [FieldCause(path, "FieldValueInvalid", "must be greater than or equal to 0")]
    match = _PERCENT.match(value)
    if match is None:
        return [FieldCause(path, "FieldValueInvalid", f"\"{value}\": must be an integer or percentage (e.g '5%')")]
    if int(match[1]) > 100:
        return [FieldCause(path, "FieldValueInvalid", f'"{value}": must not be greater than 100%')]
    return []


def _selector_causes(selector: Any, path: str) -> list[FieldCause]:
    if selector is None:
        return []
    if not isinstance(selector, Mapping):
        return [FieldCause(path, "FieldValueInvalid", "must be a label selector")]
    causes: list[FieldCause] = []
    for index, expression in enumerate(selector.get("matchExpressions") or []):
        where = f"{path}.matchExpressions[{index}]"
        expression = expression if isinstance(expression, Mapping) else {}
        operator = expression.get("operator")
        values = expression.get("values") or []
        if operator not in _OPERATORS:
            causes.append(
                FieldCause(f"{where}.operator", "FieldValueInvalid", f'"{operator}": not a valid selector operator')
            )
        elif operator in ("In", "NotIn") and not values:
            causes.append(
                FieldCause(
                    f"{where}.values", "FieldValueRequired", "must be specified when `operator` is 'In' or 'NotIn'"
                )
            )
        elif operator in ("Exists", "DoesNotExist") and values:
            causes.append(
                FieldCause(
                    f"{where}.values",
                    "FieldValueForbidden",
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )
            )
    return causes


def budget_causes(budget: Mapping[str, Any]) -> list[FieldCause]:
    """Field problems the real server rejects a PodDisruptionBudget spec for."""
    spec = budget.get("spec") or {}
    causes: list[FieldCause] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        causes.append(FieldCause("spec", "FieldValueInvalid", "minAvailable and maxUnavailable cannot be both set"))
    causes += _bound_causes(spec.get("minAvailable"), "spec.minAvailable")
    causes += _bound_causes(spec.get("maxUnavailable"), "spec.maxUnavailable")
    causes += _selector_causes(spec.get("selector"), "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in UNHEALTHY_POLICIES:
        causes.append(
            FieldCause(
                "spec.unhealthyPodEvictionPolicy",
                "FieldValueNotSupported",
                f'"{policy}": supported values: "AlwaysAllow", "IfHealthyBudget"',
            )
        )
    return causes


def initial_status() -> dict[str, Any]:
    """The status a budget is created with, before the controller first looks at it (zeros, as on a real server)."""
    return {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}


# ------------------------------------------------------------------------------------------ pod health


def _phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _conditions(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in (pod.get("status") or {}).get("conditions") or [] if isinstance(c, Mapping)]


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    """Running and Ready; a Running pod nobody reported readiness for counts as ready (there is no kubelet)."""
    if _phase(pod) != "Running":
        return False
    ready = [c for c in _conditions(pod) if c.get("type") == "Ready"]
    return not ready or ready[0].get("status") == "True"


def _terminating(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def pod_is_healthy(pod: Mapping[str, Any]) -> bool:
    """What a budget counts in ``currentHealthy``: ready and not being deleted."""
    return pod_is_ready(pod) and not _terminating(pod)


# ------------------------------------------------------------------------------------- the controller's part


def _scaled(value: int | str, total: int) -> int:
    """An IntOrString bound against ``total``: integers as they are, percentages of it rounded up."""
    if isinstance(value, int):
        return value
    match = _PERCENT.match(value)
    return math.ceil(int(match[1]) * total / 100) if match else 0


def _allowed_condition(
    previous: Iterable[Mapping[str, Any]], allowed: int, generation: int, timestamp: str
) -> dict[str, Any]:
    status, reason = ("True", "SufficientPods") if allowed > 0 else ("False", "InsufficientPods")
    earlier = next((c for c in previous if c.get("type") == DISRUPTION_ALLOWED), None)
    since = earlier.get("lastTransitionTime") if earlier and earlier.get("status") == status else None
    return {
        "type": DISRUPTION_ALLOWED,
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": since or timestamp,
        "reason": reason,
        "message": "",
    }


def budget_status(budget: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], timestamp: str) -> dict[str, Any]:
    """The status the disruption controller would write for ``budget`` given every pod of its namespace."""
    spec = budget.get("spec") or {}
    selected = [pod for pod in pods if selects(budget, pod)]
    expected = len(selected)
    healthy = sum(1 for pod in selected if pod_is_healthy(pod))
    if spec.get("maxUnavailable") is not None:
        desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
    else:
        desired = _scaled(spec.get("minAvailable", 1), expected)
    allowed = healthy - desired if expected > 0 and healthy > desired else 0
    generation = int((budget.get("metadata") or {}).get("generation") or 1)
    previous = (budget.get("status") or {}).get("conditions") or []
    others = [dict(c) for c in previous if isinstance(c, Mapping) and c.get("type") != DISRUPTION_ALLOWED]
    return {
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [*others, _allowed_condition(previous, allowed, generation, timestamp)],
    }


# ------------------------------------------------------------------------------------------------ evictions


def deletion_options_of(body: Any, namespace: str, name: str) -> dict[str, Any]:
    """Check an Eviction body against the URL and return its ``deleteOptions`` (400 for a malformed one)."""
    if not isinstance(body, Mapping):
        raise errors.bad_request("the body of the request must be an Eviction object")
    api_version = body.get("apiVersion") or EVICTION_API_VERSIONS[0]
    kind = body.get("kind") or "Eviction"
    if api_version not in EVICTION_API_VERSIONS or kind != "Eviction":
        raise errors.bad_request(
            f"the body of the request was of kind {api_version}, Kind={kind}; expected policy/v1, Kind=Eviction"
        )
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, Mapping) or metadata.get("name") != name:
        raise errors.bad_request("name in URL does not match name in Eviction object")
    if metadata.get("namespace") not in (None, "", namespace):
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    options = body.get("deleteOptions") or {}
    if not isinstance(options, Mapping):
        raise errors.bad_request("deleteOptions must be an object")
    return dict(options)


def skips_budgets(pod: Mapping[str, Any]) -> bool:
    """A pod that is not running (yet or any more) or already terminating is deleted without asking a budget."""
    return _phase(pod) in PHASES_WITHOUT_BUDGET_CHECK or _terminating(pod)


def eviction_refusal(pod: Mapping[str, Any], budgets: Iterable[Mapping[str, Any]]) -> ApiError | None:
    """Why the Eviction API refuses to evict ``pod`` now, or None when it may go (``budgets``: its namespace's)."""
    if skips_budgets(pod):
        return None
    selecting = [budget for budget in budgets if selects(budget, pod)]
    if len(selecting) > 1:
        return errors.several_disruption_budgets()
    if not selecting:
        return None
    budget = selecting[0]
    status = budget.get("status") or {}
    current, desired = int(status.get("currentHealthy") or 0), int(status.get("desiredHealthy") or 0)
    if not pod_is_ready(pod):
        # An unready pod adds nothing to the budget's health, so taking it away never makes things worse.
        if (budget.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
            return None
        if current >= desired > 0:
            return None
    if int(status.get("disruptionsAllowed") or 0) < 1:
        return errors.disruption_budget_refused(str(budget["metadata"]["name"]), desired, current)
    return None


def with_disruption_target(pod: Mapping[str, Any], timestamp: str) -> dict[str, Any]:
    """The pod carrying the ``DisruptionTarget`` condition the Eviction API sets before deleting it."""
    wanted = {
        "type": DISRUPTION_TARGET,
        "status": "True",
        "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
    }
    status = dict(pod.get("status") or {})
    conditions = [dict(c) for c in _conditions(pod)]
    for index, condition in enumerate(conditions):
        if condition.get("type") == DISRUPTION_TARGET:
            since = condition.get("lastTransitionTime") if condition.get("status") == "True" else None
            conditions[index] = {**condition, **wanted, "lastTransitionTime": since or timestamp}
            break
    else:
        conditions.append({**wanted, "lastTransitionTime": timestamp})
    status["conditions"] = conditions
    return {**pod, "status": status}
