"""Comparing two AdmissionReview answers by meaning, for the webhook suite.

Why: upstream's patch carries containers re-marshalled from Go structs, so the two
programs' patches differ in form where they agree in meaning. :func:`compare_answers`
compares ``allowed``, the denial message, the uid, the patch's operations and the pods
the two patches produce, after :func:`normalise_pod` has removed what Go's
re-serialisation adds or drops.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import jsonpatch

from .. import constants as C
from .report import Difference

__all__ = ["compare_answers", "decode_patch", "normalise_pod"]


def normalise_pod(value: Any) -> Any:
    """A pod without what Go's re-serialisation of the containers changes and means nothing.

    Upstream's patch carries containers re-marshalled from Go structs: zero values of
    ``omitempty`` fields (``""``, ``false``, ``[]``) are dropped, ``null`` pointers and an
    empty ``resources`` appear, a volumeMount without ``mountPath`` gets ``""``. The API
    server reads both forms alike, so both sides lose them before the comparison.
    """
    if isinstance(value, list):
        return [normalise_pod(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for k, v in value.items():
        if v is None or v is False or v == "" or v == []:
            continue
        if k == "resources" and v == {}:
            continue
        out[k] = normalise_pod(v)
    return out


def _first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                return f"{path}/{k}", a.get(k, "<absent>"), b.get(k, "<absent>")
            found = _first_difference(a[k], b[k], f"{path}/{k}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = _first_difference(x, y, f"{path}/{i}")
            if found:
                return found
        if len(a) != len(b):
            return f"{path} (length)", len(a), len(b)
        return None
    if a != b or type(a) is not type(b):
        return path or "/", a, b
    return None


def _short(value: Any, limit: int = 160) -> str:
    text = (
        value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decode_patch(response: Mapping[str, Any]) -> tuple[list[dict[str, Any]] | None, str]:
    """The JSON Patch operations of an AdmissionResponse (``None`` without a patch), and
    the reason when its ``patch`` is not base64 of JSON (else ``""``)."""
    raw = response.get("patch")
    if raw is None:
        return None, ""
    try:
        ops = json.loads(base64.b64decode(raw))
    except ValueError as exc:
        return None, f"undecodable patch: {exc}"
    return ops, ""


def _token_expirations(pod: Mapping[str, Any], volume_name: str) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    found = []
    for vol in spec.get("volumes") or []:
        if isinstance(vol, dict) and vol.get("name") == volume_name:
            for src in (vol.get("projected") or {}).get("sources") or []:
                token = src.get("serviceAccountToken") if isinstance(src, dict) else None
                if isinstance(token, dict):
                    found.append(token)
    return found


def compare_answers(
    case: str,
    pod: Mapping[str, Any],
    standin: Mapping[str, Any],
    real: Mapping[str, Any],
    *,
    jitter_volume: str | None = None,
) -> list[Difference]:
    """The differences between two AdmissionReview answers for ``pod``, by meaning.

    ``standin`` / ``real`` are the decoded answers of the port and of upstream.
    ``jitter_volume`` names the projected volume whose ``expirationSeconds`` upstream
    drew at random: the real value must lie in [79200, 86400], and then counts as
    equal to the port's (which takes the floor without a random source).
    """
    diffs: list[Difference] = []

    def add(what: str, mine: Any, theirs: Any) -> None:
        diffs.append(Difference(case, what, _short(mine), _short(theirs)))

    mine = standin.get("response") or {}
    theirs = real.get("response") or {}
    if mine.get("uid") != theirs.get("uid"):
        add("uid", mine.get("uid"), theirs.get("uid"))
    my_msg = (mine.get("status") or {}).get("message")
    their_msg = (theirs.get("status") or {}).get("message")
    if mine.get("allowed") != theirs.get("allowed"):
        # One difference, not its consequences (message, patch, patchType).
        add(
            "allowed",
            f"{mine.get('allowed')} {my_msg or ''}",
            f"{theirs.get('allowed')} {their_msg or ''}",
        )
        return diffs
    if my_msg != their_msg:
        add("denial message", my_msg, their_msg)
    my_ops, my_err = decode_patch(mine)
    their_ops, their_err = decode_patch(theirs)
    if my_err or their_err:
        add("patch", my_err or "ok", their_err or "ok")
        return diffs
    if (my_ops is None) != (their_ops is None):
        add("patch present", my_ops is not None, their_ops is not None)
        return diffs
    if mine.get("patchType") != theirs.get("patchType"):
        add("patchType", mine.get("patchType"), theirs.get("patchType"))
    if my_ops is None or their_ops is None:
        return diffs
    my_shape = [(op.get("op"), op.get("path")) for op in my_ops]
    their_shape = [(op.get("op"), op.get("path")) for op in their_ops]
    if my_shape != their_shape:
        add("patch operations", my_shape, their_shape)
    try:
        my_pod = jsonpatch.apply_patch(dict(pod), my_ops)
        their_pod = jsonpatch.apply_patch(dict(pod), their_ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        add("patch applies", "see real", f"one patch does not apply: {exc}")
        return diffs
    if jitter_volume is not None:
        mine_tokens = _token_expirations(my_pod, jitter_volume)
        for i, token in enumerate(_token_expirations(their_pod, jitter_volume)):
            exp = token.get("expirationSeconds")
            low, high = C.TOKEN_EXPIRATION_JITTER_FLOOR_S, C.DEFAULT_TOKEN_EXPIRATION_S
            if not isinstance(exp, int) or not low <= exp <= high:
                add("jittered expirationSeconds", f"in [{low}, {high}]", exp)
            elif i < len(mine_tokens):
                token["expirationSeconds"] = mine_tokens[i].get("expirationSeconds")
    found = _first_difference(normalise_pod(my_pod), normalise_pod(their_pod))
    if found is not None:
        where, a, b = found
        add(f"patched pod {where}", a, b)
    return diffs
