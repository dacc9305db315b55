"""Label selectors: which labels a requirement accepts (docs/reference/kubernetes.md §3.3).

One meaning for both spellings Kubernetes uses: the structured ``LabelSelector`` of a
webhook's ``namespaceSelector`` and ``objectSelector`` (``matchLabels`` and
``matchExpressions`` with ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``), and the
string syntax of a list's ``?labelSelector=`` (``=``, ``==``, ``!=``, ``in``,
``notin``, a bare key, ``!key``). :func:`requirement_matches` decides one requirement
in either spelling; :func:`selector_matches` a whole structured selector.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Literal

__all__ = ["OPERATORS", "Operator", "requirement_matches", "selector_matches"]

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]

OPERATORS: dict[str, Operator] = {
    # LabelSelector's matchExpressions
    "In": "In",
    "NotIn": "NotIn",
    "Exists": "Exists",
    "DoesNotExist": "DoesNotExist",
    # the string syntax of ?labelSelector=
    "=": "In",
    "==": "In",
    "in": "In",
    "!=": "NotIn",
    "notin": "NotIn",
    "exists": "Exists",
    "!": "DoesNotExist",
}
"""Each operator spelling, structured or string, to the structured operator it means."""


def requirement_matches(
    labels: Mapping[str, str], key: str, operator: str, values: Collection[str] = ()
) -> bool:
    """Whether ``labels`` satisfy one requirement, the operator in either spelling.

    ``NotIn`` (``!=``, ``notin``) holds for labels without the key, as in Kubernetes.
    An operator this table does not know constrains nothing: validation refuses such a
    selector before it is ever matched.
    """
    present = key in labels
    match OPERATORS.get(operator):
        case "In":
            return present and labels[key] in values
        case "NotIn":
            return not present or labels[key] not in values
        case "Exists":
            return present
        case "DoesNotExist":
            return not present
    return True


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A structured LabelSelector (matchLabels + matchExpressions) against labels; ``{}``
    (or none) matches everything."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    return all(
        requirement_matches(labels, expr.get("key"), expr.get("operator"), expr.get("values") or ())
        for expr in selector.get("matchExpressions") or []
    )
