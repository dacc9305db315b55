"""Where two answers differ: JSON values, key order, JWT claims and headers, text lines.

Why: the API server suite reports every place the stand-in and the real server
disagree, each as a :class:`~.report.Difference` with a path a reader can find in
``kubectl get -o json``; these functions find them, whatever the case.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..webhook.go_json import json_type
from .apiserver_masks import mask
from .report import Difference

__all__ = [
    "ABSENT",
    "compare_claims",
    "compare_jose_header",
    "compare_json",
    "compare_key_order",
    "compare_lines",
    "parse_warnings",
    "short",
]

ABSENT = "<absent>"


def short(value: Any, limit: int = 160) -> str:
    """``value`` as JSON (as it is, when a string), cut to ``limit`` characters."""
    if value is ABSENT:
        return ABSENT
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compare_json(case: str, standin: Any, real: Any, where: str = "") -> list[Difference]:
    """Every place two JSON values differ: a key on one side only, a list of another
    length, another JSON type or another value. ``where`` prefixes the paths."""
    if isinstance(standin, Mapping) and isinstance(real, Mapping):
        diffs: list[Difference] = []
        keys = list(real) + [k for k in standin if k not in real]
        for k in keys:
            path = f"{where}.{k}" if where else str(k)
            if k not in standin:
                diffs.append(Difference(case, path, ABSENT, short(real[k])))
            elif k not in real:
                diffs.append(Difference(case, path, short(standin[k]), ABSENT))
            else:
                diffs += compare_json(case, standin[k], real[k], path)
        return diffs
    if isinstance(standin, list) and isinstance(real, list):
        if len(standin) != len(real):
            return [
                Difference(
                    case,
                    f"{where or '(value)'} (length {len(standin)} vs {len(real)})",
                    short(standin),
                    short(real),
                )
            ]
        diffs = []
        for i, (a, b) in enumerate(zip(standin, real, strict=True)):
            diffs += compare_json(case, a, b, f"{where}[{i}]")
        return diffs
    if json_type(standin) != json_type(real):
        return [
            Difference(
                case,
                where or "(value)",
                f"{short(standin)} ({json_type(standin)})",
                f"{short(real)} ({json_type(real)})",
            )
        ]
    if standin != real:
        return [Difference(case, where or "(value)", short(standin), short(real))]
    return []


def compare_key_order(
    case: str, standin: Any, real: Any, paths: Iterable[str], what: str = "key order"
) -> list[Difference]:
    """The order of the keys both objects hold at each dotted path (``spec.containers.0``)."""
    diffs = []
    for path in paths:
        a, b = standin, real
        for part in path.split(".") if path else []:
            index: Any = int(part) if part.isdigit() else part
            try:
                a, b = a[index], b[index]
            except (KeyError, IndexError, TypeError):
                a = b = None
                break
        if not isinstance(a, Mapping) or not isinstance(b, Mapping):
            continue
        common_a = [k for k in a if k in b]
        common_b = [k for k in b if k in a]
        if common_a != common_b:
            diffs.append(
                Difference(
                    case, f"{what} of {path or '(top)'}", ",".join(common_a), ",".join(common_b)
                )
            )
    return diffs


def _relative_claims(claims: Mapping[str, Any], issuer: str) -> dict[str, Any]:
    """Claims with times made relative to ``iat`` and generated values masked."""
    out = dict(mask(dict(claims), issuer=issuer))
    iat = claims.get("iat")
    if isinstance(iat, int) and not isinstance(iat, bool):
        out["iat"] = "<iat>"
        for key in ("exp", "nbf"):
            if isinstance(claims.get(key), int):
                out[key] = f"iat{claims[key] - iat:+d}"
        kube = claims.get("kubernetes.io")
        if isinstance(kube, Mapping) and isinstance(kube.get("warnafter"), int):
            masked_kube = dict(out["kubernetes.io"])
            masked_kube["warnafter"] = f"iat{kube['warnafter'] - iat:+d}"
            out["kubernetes.io"] = masked_kube
    return out


def compare_claims(
    case: str,
    standin: Mapping[str, Any],
    real: Mapping[str, Any],
    *,
    standin_issuer: str = "",
    real_issuer: str = "",
) -> list[Difference]:
    """Compare two JWT claim sets: the set of claims, each claim's JSON type, and the
    values after masking, with ``exp``/``nbf``/``warnafter`` relative to ``iat`` and
    ``iss`` against each side's own issuer (``<issuer>`` when it is that issuer)."""
    diffs = []
    if sorted(standin) != sorted(real):
        diffs.append(
            Difference(case, "claim names", ",".join(sorted(standin)), ",".join(sorted(real)))
        )
    for key in sorted(set(standin) & set(real)):
        if json_type(standin[key]) != json_type(real[key]):
            diffs.append(
                Difference(
                    case, f"type of claim {key}", json_type(standin[key]), json_type(real[key])
                )
            )
    a = _relative_claims(standin, standin_issuer)
    b = _relative_claims(real, real_issuer)
    common = set(a) & set(b)
    diffs += compare_json(
        case,
        {k: v for k, v in a.items() if k in common},
        {k: v for k, v in b.items() if k in common},
        "claims",
    )
    return diffs


def compare_jose_header(
    case: str,
    standin: Mapping[str, Any],
    real: Mapping[str, Any],
    *,
    standin_kids: Sequence[str] = (),
    real_kids: Sequence[str] = (),
) -> list[Difference]:
    """Compare two JWS headers: names (order ignored), ``alg``, and the ``kid``'s
    format and whether it is one of that lab's JWKS key ids."""

    def shape(header: Mapping[str, Any], kids: Sequence[str]) -> dict[str, Any]:
        out = {k: mask(v, key=k) for k, v in sorted(header.items())}
        if "kid" in header:
            out["kid in the lab's JWKS"] = header["kid"] in kids
        return out

    return compare_json(case, shape(standin, standin_kids), shape(real, real_kids), "header")


def compare_lines(case: str, standin: str, real: str) -> list[Difference]:
    """Line-by-line differences of two (masked) texts: one per changed block of lines,
    numbered as in the real program's output."""
    a, b = standin.splitlines(), real.splitlines()
    diffs = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        where = f"line {j1 + 1}" if j2 - j1 <= 1 else f"lines {j1 + 1}-{j2}"
        diffs.append(
            Difference(
                case,
                where if j2 > j1 else f"after line {j1}",
                " / ".join(s.strip() for s in a[i1:i2]) or ABSENT,
                " / ".join(s.strip() for s in b[j1:j2]) or ABSENT,
            )
        )
    return diffs


_WARNING = re.compile(r'\d{3} [^ ]+ "((?:[^"\\]|\\.)*)"')


def parse_warnings(header: str | None) -> list[str]:
    """The texts of a ``Warning`` header (RFC 7234 ``299 - "text"`` values, comma-joined
    when a client folds several headers into one)."""
    return [re.sub(r"\\(.)", r"\1", m) for m in _WARNING.findall(header or "")]
