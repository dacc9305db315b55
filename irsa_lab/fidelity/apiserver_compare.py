"""Comparing two observations of the API server suite, case by case.

Why: each kind of answer has its own view: a TokenRequest is compared as a response,
a JOSE header and a claim set; a discovery document by its keys, types and values; a
``Status`` with its wire form (compact JSON); a pod loosely where the kubelet's timing
shows; kubectl's output line by line. :func:`compare` picks the view by case name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..webhook.go_json import json_type
from .apiserver_clients import Exchange, Side
from .apiserver_diff import (
    ABSENT,
    compare_claims,
    compare_jose_header,
    compare_json,
    compare_key_order,
    compare_lines,
    parse_warnings,
    short,
)
from .apiserver_masks import mask, mask_text
from .report import Difference

__all__ = ["compare"]


def _decode_jws(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..jose import decode_unverified

    return decode_unverified(token)


def _kids(jwks: Exchange) -> list[str]:
    body = jwks.body if isinstance(jwks.body, dict) else {}
    return [str(k.get("kid")) for k in body.get("keys") or [] if isinstance(k, dict)]


def _headers(
    ex: Exchange, names: Sequence[str] = ("content-type", "cache-control")
) -> dict[str, str]:
    return {n: ex.headers.get(n, ABSENT) for n in names}


def _token_response(body: Any) -> Any:
    """A TokenRequest answer with ``status.expirationTimestamp`` made relative to the
    ``creationTimestamp`` (the rule: now + spec.expirationSeconds, never the JWT exp)."""
    from datetime import datetime

    if not isinstance(body, dict):
        return body
    out = json.loads(json.dumps(body))
    try:
        created = datetime.fromisoformat(
            out["metadata"]["creationTimestamp"].replace("Z", "+00:00")
        )
        expires = datetime.fromisoformat(
            out["status"]["expirationTimestamp"].replace("Z", "+00:00")
        )
        out["status"]["expirationTimestamp"] = (
            f"creationTimestamp{int((expires - created).total_seconds()):+d}s"
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    return out


def _status_view(ex: Exchange, issuer: str) -> dict[str, Any]:
    body = ex.body
    return {
        "code": ex.status,
        "headers": _headers(ex),
        # The real server writes compact JSON; so should the stand-in.
        "compact JSON": bool(ex.raw)
        and isinstance(body, dict)
        and ex.raw.strip() == json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        "body": mask(body, issuer=issuer),
    }


def _loose_status(status: Any) -> dict[str, Any]:
    """What is compared of a pod's status: its shape, not kubelet timing."""
    if not isinstance(status, dict):
        return {"status": json_type(status)}
    containers = status.get("containerStatuses") or []
    return {
        "fields": sorted(status),
        "phase": status.get("phase"),
        "qosClass": status.get("qosClass"),
        "condition types": [c.get("type") for c in status.get("conditions") or []],
        "condition status": [c.get("status") for c in status.get("conditions") or []],
        "containerStatuses fields": [sorted(c) for c in containers],
        "container states": [sorted(c.get("state") or {}) for c in containers],
        "hostIP": status.get("hostIP"),
        "podIP": status.get("podIP"),
    }


def _pod_view(ex: Exchange, issuer: str) -> dict[str, Any]:
    body = ex.body if isinstance(ex.body, dict) else {}
    return {
        "code": ex.status,
        "headers": _headers(ex),
        "kind": body.get("kind"),
        "apiVersion": body.get("apiVersion"),
        "metadata": mask(body.get("metadata"), issuer=issuer),
        "spec": mask(body.get("spec"), issuer=issuer),
        "status": _loose_status(body.get("status")),
    }


def _discovery_view(ex: Exchange, issuer: str, apiserver: str) -> dict[str, Any]:
    body = ex.body
    if isinstance(body, dict):
        values = {
            k: (
                "<apiserver>" + v[len(apiserver) :]
                if isinstance(v, str) and apiserver and v.startswith(apiserver)
                else v
            )
            for k, v in body.items()
        }
        values = mask(values, issuer=issuer)
        return {
            "code": ex.status,
            "headers": _headers(ex),
            "body": {
                "keys": list(body),
                "types": {k: json_type(v) for k, v in body.items()},
                "values": values,
            },
        }
    return {"code": ex.status, "headers": _headers(ex), "body": short(body)}


def compare(
    standin: Side, real: Side, mine: Mapping[str, Exchange], theirs: Mapping[str, Exchange]
) -> tuple[int, list[Difference]]:
    """Compare two observations of :func:`observe`; returns (cases compared, differences)."""
    si, ri = standin.issuer, real.issuer
    diffs: list[Difference] = []
    cases = 0

    def count(case: str, found: list[Difference]) -> None:
        nonlocal cases
        cases += 1
        diffs.extend(found)

    my_kids = _kids(mine["JWKS (API server path)"])
    their_kids = _kids(theirs["JWKS (API server path)"])

    for case in mine:
        a, b = mine[case], theirs[case]
        if case.startswith("TokenRequest") or case.startswith("kubectl create token"):
            if case.startswith("kubectl"):
                tok_a, tok_b = str(a.body).strip(), str(b.body).strip()
                count(case, compare_json(case, a.status, b.status, "exit code"))
            else:
                view_a = {
                    "code": a.status,
                    "headers": _headers(a),
                    "body": mask(_token_response(a.body), issuer=si),
                }
                view_b = {
                    "code": b.status,
                    "headers": _headers(b),
                    "body": mask(_token_response(b.body), issuer=ri),
                }
                count(f"{case}: response", compare_json(case, view_a, view_b))
                tok_a = (
                    str(((a.body or {}).get("status") or {}).get("token", ""))
                    if isinstance(a.body, dict)
                    else ""
                )
                tok_b = (
                    str(((b.body or {}).get("status") or {}).get("token", ""))
                    if isinstance(b.body, dict)
                    else ""
                )
            try:
                head_a, claims_a = _decode_jws(tok_a)
                head_b, claims_b = _decode_jws(tok_b)
            except ValueError as exc:
                count(
                    f"{case}: JWT",
                    [Difference(case, "JWT", short(tok_a), f"{short(tok_b)} ({exc})")],
                )
                continue
            count(
                f"{case}: JWT header",
                compare_jose_header(
                    case, head_a, head_b, standin_kids=my_kids, real_kids=their_kids
                ),
            )
            count(
                f"{case}: claims",
                compare_claims(case, claims_a, claims_b, standin_issuer=si, real_issuer=ri),
            )
        elif case.startswith(("discovery", "JWKS")):
            count(
                case,
                compare_json(
                    case,
                    _discovery_view(a, si, str(standin.endpoints["apiserver"])),
                    _discovery_view(b, ri, str(real.endpoints["apiserver"])),
                ),
            )
            if (
                case.startswith("discovery")
                and isinstance(a.body, dict)
                and isinstance(b.body, dict)
            ):
                # The API server's field order is part of the document's shape (§2.2).
                count(
                    f"{case}: field order",
                    compare_key_order(case, a.body, b.body, [""], "field order"),
                )
        elif case[:3].isdigit():
            count(case, compare_json(case, _status_view(a, si), _status_view(b, ri)))
        elif case.startswith("warning"):
            view_a = {"code": a.status, "warnings": parse_warnings(a.headers.get("warning"))}
            view_b = {"code": b.status, "warnings": parse_warnings(b.headers.get("warning"))}
            count(case, compare_json(case, view_a, view_b))
        elif case.startswith("pod"):
            count(case, compare_json(case, _pod_view(a, si), _pod_view(b, ri)))
            if isinstance(a.body, dict) and isinstance(b.body, dict):
                paths = ["", "metadata", "spec", "spec.containers.0", "status"]
                count(f"{case}: JSON key order", compare_key_order(case, a.body, b.body, paths))
        elif case.startswith("kubectl"):
            text_a = mask_text(str(a.body or ""), issuer=si)
            text_b = mask_text(str(b.body or ""), issuer=ri)
            found = compare_json(case, a.status, b.status, "exit code")
            if a.status == b.status == 0:
                found += compare_lines(case, text_a, text_b)
            else:
                found += compare_json(case, a.raw, b.raw, "stderr")
            count(case, found)
        else:  # objects read back: ServiceAccount, MutatingWebhookConfiguration
            view_a = {"code": a.status, "headers": _headers(a), "body": mask(a.body, issuer=si)}
            view_b = {"code": b.status, "headers": _headers(b), "body": mask(b.body, issuer=ri)}
            count(case, compare_json(case, view_a, view_b))
    return cases, diffs
