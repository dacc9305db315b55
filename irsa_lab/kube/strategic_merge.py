"""Strategic merge patch, as the API server applies it to built-in kinds.

``kubectl apply``, ``kubectl set image`` and ``kubectl set env`` send
``application/strategic-merge-patch+json``: like a JSON merge patch, except that some
lists are merged item by item on a key (``containers`` on ``name``, ``volumeMounts``
on ``mountPath``), and the patch carries directives: ``$setElementOrder/<list>``
(the order the list ends in), ``$patch: delete|replace`` and
``$deleteFromPrimitiveList/<list>``, ``$retainKeys``. A plain merge patch would
replace a Deployment's containers with the patch's partial ones and store the
directives as fields; this module merges as the server does for the fields of the
kinds the lab serves (the ``patchMergeKey`` and ``patchStrategy`` tags of the
upstream types, by field name).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["MERGE_KEYS", "MERGED_PRIMITIVE_LISTS", "strategic_merge_patch"]

# Field name -> the key its items merge on (patchStrategy "merge", patchMergeKey).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "conditions": "type",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
}
# Lists of strings merged as sets (patchStrategy "merge" without a key).
MERGED_PRIMITIVE_LISTS = frozenset({"finalizers"})

_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with ``patch`` applied as a strategic merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    base: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    orders = {k[len(_ORDER) :]: v for k, v in patch.items() if k.startswith(_ORDER)}
    for key, value in patch.items():
        if key.startswith("$"):
            if key.startswith(_DELETE_PRIMITIVE):
                field = key[len(_DELETE_PRIMITIVE) :]
                drop = value if isinstance(value, list) else []
                if isinstance(base.get(field), list):
                    base[field] = [v for v in base[field] if v not in drop]
            continue
        if value is None:
            base.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS:
            base[key] = _merge_list(base.get(key), value, MERGE_KEYS[key])
        elif isinstance(value, list) and key in MERGED_PRIMITIVE_LISTS:
            found = base.get(key)
            old: list[Any] = found if isinstance(found, list) else []
            base[key] = [*old, *(v for v in value if v not in old)]
        elif isinstance(value, dict):
            merged = strategic_merge_patch(base.get(key), value)
            if isinstance(value, dict) and value.get("$patch") == "delete":
                base.pop(key, None)
            else:
                base[key] = merged
        else:
            base[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(base.get(field), list) and isinstance(order, list):
            base[field] = _ordered(base[field], order, MERGE_KEYS.get(field))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        base = {k: v for k, v in base.items() if k in retain}
    return base


def _merge_list(target: Any, patch: list[Any], key: str) -> list[Any]:
    out = [copy.deepcopy(v) for v in target] if isinstance(target, list) else []
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            out.append(copy.deepcopy(item))
            continue
        at = next(
            (i for i, old in enumerate(out) if isinstance(old, dict) and old.get(key) == item[key]),
            None,
        )
        if item.get("$patch") == "delete":
            if at is not None:
                del out[at]
            continue
        if at is None:
            out.append(strategic_merge_patch({}, item))
        else:
            out[at] = strategic_merge_patch(out[at], item)
    return out


def _ordered(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(v: Any) -> Any:
        return v.get(key) if key and isinstance(v, dict) else v

    wanted = [ident(o) for o in order]
    rank = {w: i for i, w in enumerate(wanted) if isinstance(w, str | int)}
    placed = sorted((i for i in items if ident(i) in rank), key=lambda v: rank[ident(v)])
    rest = [i for i in items if ident(i) not in rank]
    return placed + rest
