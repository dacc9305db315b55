"""Masking the generated values of an API server's answers, for the API server suite.

Why: uids, ``jti``, times, key ids, resourceVersions, generated names, local ports and
CA bundles differ run to run and lab to lab. They are replaced by placeholders that
name their format, so that presence, JSON type and format are still compared.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["mask", "mask_text"]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
_JWT = re.compile(r"^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_DIGITS = re.compile(r"^\d+$")
_GENERATED_NAME = re.compile(r"\bkube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}\b")
_CONTAINER_ID = re.compile(r"irsa-lab://[0-9a-f]{64}")
_LOCAL_URL = re.compile(r"https://127\.0\.0\.1:\d+")


def _b64url_len(text: str) -> int | None:
    try:
        return len(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        return None


def _mask_string(key: str, value: str, issuer: str) -> str:
    if issuer and value.startswith(issuer):
        value = "<issuer>" + value[len(issuer) :]
    if _UUID.match(value):
        return "<uuid>"
    if _TIME.match(value):
        return "<time>"
    if _JWT.match(value):
        return "<jwt>"
    if key == "resourceVersion" and _DIGITS.match(value):
        return "<resourceVersion>"
    if key == "kid" and len(value) == 43 and _B64URL.match(value):
        return "<kid: 43 base64url chars>"
    if key == "n" and _B64URL.match(value):
        return f"<modulus: {_b64url_len(value)} bytes>"
    if key == "caBundle":
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value
        kind = "PEM" if decoded.startswith(b"-----BEGIN CERTIFICATE-----") else "not PEM"
        return f"<caBundle: base64 of {kind}>"
    value = _GENERATED_NAME.sub("kube-api-access-<5 chars>", value)
    value = _CONTAINER_ID.sub("irsa-lab://<64 hex>", value)
    return _LOCAL_URL.sub("https://127.0.0.1:<port>", value)


def _managed_field(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return repr(entry)
    parts = [str(entry.get("manager")), str(entry.get("operation"))]
    if entry.get("subresource"):
        parts.append(str(entry["subresource"]))
    return "/".join(parts)


def mask(value: Any, *, issuer: str = "", key: str = "") -> Any:
    """A copy of ``value`` with generated values replaced by placeholders.

    Why: uids, ``jti``, times, the key id, resourceVersions, the 5 random characters
    of ``kube-api-access-``, local ports and CA bundles differ run to run and lab to
    lab. Each placeholder names the format it replaced (``<uuid>``, ``<time>``,
    ``<kid: 43 base64url chars>``...), so a value of the wrong format or type stays
    visible. ``issuer`` (the lab's own) becomes ``<issuer>``; ``managedFields`` is
    reduced to ``manager/operation[/subresource]`` entries.
    """
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "managedFields" and isinstance(v, list):
                out[k] = [_managed_field(e) for e in v]
            else:
                out[k] = mask(v, issuer=issuer, key=str(k))
        return out
    if isinstance(value, list):
        return [mask(v, issuer=issuer, key=key) for v in value]
    if isinstance(value, str):
        return _mask_string(key, value, issuer)
    return value


_TEXT_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<time>"),
    (re.compile(r'(resourceVersion: )"\d+"'), r'\1"<resourceVersion>"'),
    (re.compile(r"(Resource Version:\s+)\d+"), r"\1<resourceVersion>"),
    (re.compile(r"(Ca Bundle:\s+)[A-Za-z0-9+/=]+"), r"\1<caBundle>"),
    (_GENERATED_NAME, "kube-api-access-<5 chars>"),
    (_CONTAINER_ID, "irsa-lab://<64 hex>"),
    (_LOCAL_URL, "https://127.0.0.1:<port>"),
)


def mask_text(text: str, *, issuer: str = "") -> str:
    """:func:`mask` for text (kubectl output): the same placeholders, found by pattern."""
    if issuer:
        text = text.replace(issuer, "<issuer>")
    for pattern, placeholder in _TEXT_MASKS:
        text = pattern.sub(placeholder, text)
    return text
